"""Write the content images a style is trained on: crops of the sample photos that scikit-image,
matplotlib and scikit-learn ship, plus whole held-out photos that training never sees.

    python scripts/style_content.py content/ --crops 2000 --size 256

Output:
  OUT/train/<photo>_<k>.jpg   square crops, SIZE px, JPEG quality 92: random places and sizes
                              (from 0.6 x SIZE px, or a quarter of the photo's shorter side, up to
                              the whole shorter side), half of them flipped left to right
  OUT/val/<photo>.jpg         the held-out photos, whole, shorter side SIZE px

`visiontool train --task stylize OUT` trains on train/ and shows val/ in its contact sheets and
validation losses. The held-out photos (HELDOUT_PHOTOS) are the ones digit scenes hold out too:
no crop of them is ever in train/. Every crop is drawn from its own generator seeded with
(seed, photo, index), so a seed gives the same files on every run.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# (library, name): photos of things and scenes; scikit-image's textures, text pages and
# synthetic patterns are left out (little for a style to work on).
TRAIN_PHOTOS = (
    ("skimage", "astronaut"), ("skimage", "chelsea"), ("skimage", "camera"), ("skimage", "coins"),
    ("skimage", "clock"), ("skimage", "moon"), ("skimage", "hubble_deep_field"),
    ("skimage", "immunohistochemistry"), ("skimage", "retina"), ("skimage", "motorcycle_left"),
    ("skimage", "motorcycle_right"), ("skimage", "brick"), ("skimage", "grass"),
    ("sklearn", "china.jpg"),
)  # fmt: skip
HELDOUT_PHOTOS = (
    ("skimage", "rocket"), ("skimage", "coffee"), ("matplotlib", "grace_hopper.jpg"), ("sklearn", "flower.jpg"),
)  # fmt: skip


@functools.cache
def _digit_scenes():
    spec = importlib.util.spec_from_file_location("_digit_scenes", Path(__file__).with_name("digit_scenes.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_photo(library: str, name: str) -> Image.Image:
    """One sample photo as RGB, at most 1024 px on its long side (a crop never needs more),
    loaded as the digit scenes load their backgrounds."""
    return _digit_scenes().sample_photo(library, name, Image.Resampling.LANCZOS)


def stem(name: str) -> str:
    return Path(name).stem


def crop(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """A random square crop, scaled to size x size, flipped half of the time."""
    w, h = photo.size
    short = min(w, h)
    side = rng.uniform(min(short, max(0.6 * size, 0.25 * short)), short)
    x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
    out = photo.resize((size, size), Image.Resampling.LANCZOS, box=(x0, y0, x0 + side, y0 + side))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return out


def write_content(out: Path, crops: int, size: int, seed: int) -> tuple[int, int]:
    """Write `crops` training crops (shared evenly by the training photos) and the held-out
    photos under `out`; returns (crops written, held-out photos written)."""
    train, val = Path(out) / "train", Path(out) / "val"
    for folder in (train, val):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.jpg"):
            old.unlink()
    for p, source in enumerate(TRAIN_PHOTOS):
        photo = load_photo(*source)
        share = crops // len(TRAIN_PHOTOS) + (p < crops % len(TRAIN_PHOTOS))
        for k in range(share):
            rng = np.random.default_rng([seed, p, k])
            crop(photo, rng, size).save(train / f"{stem(source[1])}_{k:04d}.jpg", quality=92)
    for source in HELDOUT_PHOTOS:
        photo = load_photo(*source)
        w, h = photo.size
        scale = size / min(w, h)
        photo.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS).save(
            val / f"{stem(source[1])}.jpg", quality=92)
    return crops, len(HELDOUT_PHOTOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--crops", type=int, default=2000, help="training crops in all (default 2000)")
    parser.add_argument("--size", type=int, default=256, help="side of the crops, shorter side of the held-out photos (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.crops < 1 or args.size < 16:
        parser.error("--crops must be at least 1 and --size at least 16")
    n, held = write_content(args.out, args.crops, args.size, args.seed)
    print(f"wrote {n} training crops and {held} held-out photos under {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
