#!/usr/bin/env bash
# Rebuild a shipped style, weights/NAME.safetensors, with visiontool itself, then measure it on
# the held-out photos. Needs the test extra (scikit-image, scikit-learn, matplotlib) for the
# content photos and for SSIM.
#
#   bash weights/rebuild_style.sh NAME [WORK_DIR]        (NAME: glass or swirls)
#   RECIPE=gpu bash weights/rebuild_style.sh NAME        (the larger recipe, for a GPU)
#
# The style image is samples/styles/NAME.jpg (drawn by scripts/style_images.py). Prints the
# measured effect (scripts/style_effect.py) and the sha256 that weights/README.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1
work=${2:-$(mktemp -d)}
case "${RECIPE:-cpu}" in
  cpu)  # small pictures, a narrow network: 55 minutes on a 2-core CPU busy with five other jobs
    crops=240 size=96 width=16 epochs=2 batch=2 lr=0.003 warmup=0.2 ;;
  gpu)  # Johnson et al.'s scale: 256 px, the full-width network, 8 epochs of 4,000 crops
    crops=4000 size=256 width=32 epochs=8 batch=4 lr=0.001 warmup=0.2 ;;
  *) echo "RECIPE must be cpu or gpu" >&2; exit 2 ;;
esac
python scripts/style_content.py "$work/content" --crops "$crops" --size "$size" --seed 0
visiontool train --task stylize "$work/content" --style-image "samples/styles/$name.jpg" \
    --image-size "$size" --width "$width" --epochs "$epochs" --batch-size "$batch" --lr "$lr" \
    --warmup-epochs "$warmup" --loss-net random --seed 0 --output "$work/run" --quiet
cp "$work/run/best.safetensors" "weights/$name.safetensors"
python scripts/style_effect.py "$name" --size 256 > "$work/effect.json"
cat "$work/effect.json"
sha256sum "weights/$name.safetensors"
