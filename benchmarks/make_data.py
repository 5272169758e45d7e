"""Write the benchmark datasets, deterministically, from the photos scikit-image ships.

    python benchmarks/make_data.py OUT [--seed 0] [--only jpegs640,textures6,small64]

OUT/jpegs640/    400 JPEG photos, 640x480, quality 90 (crops, rescales, flips and colour
                 shifts of scikit-image's sample photos): the classify throughput folder.
OUT/textures6/   6-class texture dataset, train/<class>/ 150 each, val/<class>/ 50 each,
                 64x64 PNG. Train and val crops come from disjoint bands of each source
                 image, so validation measures generalisation, not memory of pixels.
OUT/small64/     the 64x64 folder dataset of the training comparison: the same images as
                 textures6 (a symlink to it).

Prints one JSON object describing what was written; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from skimage import data as skdata

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "coins", "moon",
          "hubble_deep_field", "immunohistochemistry", "clock", "page", "brick", "grass"]

# class name -> scikit-image image; all are turned to grey so colour is no shortcut.
TEXTURES = {
    "brick": "brick",
    "grass": "grass",
    "blobs": "binary_blobs",
    "moon": "moon",
    "tissue": "immunohistochemistry",
    "stars": "hubble_deep_field",
}
TRAIN_PER_CLASS, VAL_PER_CLASS = 150, 50
TILE = 64
# Fraction of each source image's rows that feed training; the rest feeds validation.
TRAIN_BAND = 0.7


def load(name: str) -> np.ndarray:
    """A scikit-image sample as float32 in [0, 1], HxWx3 for photos or HxW for grey."""
    if name == "binary_blobs":  # generated, so seeded here; softened so edges are not 1 px steps
        blobs = skdata.binary_blobs(length=512, blob_size_fraction=0.06, volume_fraction=0.45, rng=7)
        img = np.asarray(Image.fromarray(blobs.astype(np.uint8) * 200 + 30).filter(
            ImageFilter.GaussianBlur(1.5)))
        return img.astype(np.float32) / 255.0
    img = getattr(skdata, name)()
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img.astype(np.float32) / 255.0


def to_rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def to_grey(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else img @ np.array([0.299, 0.587, 0.114], np.float32)


def to_pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))


def make_photo(rng: np.random.Generator, src: np.ndarray) -> Image.Image:
    """One 640x480 photo: a random 4:3 crop, rescaled, maybe flipped, colour shifted."""
    h, w = src.shape[:2]
    full_w = min(w, h * 4 / 3)
    cw = full_w * rng.uniform(0.45, 1.0)
    ch = cw * 3 / 4
    x0 = rng.uniform(0, w - cw)
    y0 = rng.uniform(0, h - ch)
    img = to_rgb(src)
    crop = to_pil(img).resize((640, 480), Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
    out = np.asarray(crop, np.float32) / 255.0
    if rng.random() < 0.5:
        out = out[:, ::-1]
    gain = rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    out = out * gain + rng.uniform(-0.08, 0.08)
    return to_pil(out)


def write_jpegs(out: Path, rng: np.random.Generator, count: int = 400) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    sources = [load(n) for n in PHOTOS]
    for i in range(count):
        k = int(rng.integers(len(sources)))
        make_photo(rng, sources[k]).save(out / f"photo_{i:04d}.jpg", quality=90)
    return {"path": str(out), "images": count, "size": [640, 480], "sources": PHOTOS}


def texture_crop(rng: np.random.Generator, band: np.ndarray) -> np.ndarray:
    """A TILExTILE grey patch from `band`: random scale, rotation, flips, tone and noise."""
    h, w = band.shape
    # Quarter turns plus a tilt: orientation varies without every crop being a new angle.
    angle = 90.0 * int(rng.integers(4)) + rng.uniform(-25.0, 25.0)
    # The side of the square that still holds the rotated crop.
    cover = abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle)))
    # Same scale range for both splits (the smallest band, 154 rows, still holds 80*sqrt(2)).
    side = rng.uniform(40.0, 80.0)
    big = min(side * cover, h, w)
    x0 = rng.uniform(0, w - big)
    y0 = rng.uniform(0, h - big)
    patch = to_pil(band).crop((int(x0), int(y0), int(x0 + big), int(y0 + big)))
    patch = patch.rotate(angle, resample=Image.BILINEAR)
    c = patch.size[0] / 2
    patch = patch.crop((int(c - side / 2), int(c - side / 2), int(c + side / 2), int(c + side / 2)))
    patch = patch.resize((TILE, TILE), Image.BILINEAR)
    if rng.random() < 0.5:
        patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
    img = np.asarray(patch, np.float32) / 255.0
    # Tone: contrast around the mean, brightness, gamma; then sensor-like noise.
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.7, 1.3) + mean + rng.uniform(-0.12, 0.12)
    img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)
    img = img + rng.normal(0, rng.uniform(0.0, 0.05), img.shape).astype(np.float32)
    # A mild colour tint so the three channels are not identical copies.
    tint = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    return np.clip(img[..., None] * tint, 0, 1)


def write_textures(out: Path, rng: np.random.Generator) -> dict:
    for cls, name in TEXTURES.items():
        grey = to_grey(load(name))
        cut = int(grey.shape[0] * TRAIN_BAND)
        bands = {"train": (grey[:cut], TRAIN_PER_CLASS), "val": (grey[cut:], VAL_PER_CLASS)}
        for split, (band, count) in bands.items():
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                to_pil(texture_crop(rng, band)).save(folder / f"{cls}_{i:03d}.png")
    return {"path": str(out), "classes": list(TEXTURES), "train_per_class": TRAIN_PER_CLASS,
            "val_per_class": VAL_PER_CLASS, "size": [TILE, TILE],
            "split": f"train from the top {TRAIN_BAND:.0%} of each source's rows, val from the rest"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="jpegs640,textures6,small64")
    args = ap.parse_args()
    wanted = set(args.only.split(","))
    report: dict = {"seed": args.seed}
    if "jpegs640" in wanted:
        print("writing jpegs640", file=sys.stderr)
        report["jpegs640"] = write_jpegs(args.out / "jpegs640", np.random.default_rng(args.seed))
    if "textures6" in wanted:
        print("writing textures6", file=sys.stderr)
        report["textures6"] = write_textures(args.out / "textures6",
                                             np.random.default_rng(args.seed + 1))
    if "small64" in wanted:
        link = args.out / "small64"
        if not link.exists():
            os.symlink("textures6", link)
        report["small64"] = {"path": str(link), "same_as": "textures6"}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
