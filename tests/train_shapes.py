"""Tiny generated folder datasets for the train/val tests: coloured shapes on noise.

Each class is a shape in its own colour (red squares, green discs, blue triangles, ...), at a
random place and size on a noisy background, so a small CNN separates them in a few epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("disc", "square", "triangle")
_COLOURS = {"disc": (40, 200, 60), "square": (220, 40, 40), "triangle": (40, 60, 220)}


def shape_image(kind: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    noise = rng.integers(90, 170, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(noise, "RGB")
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.25, 0.4) * size
    cx, cy = rng.uniform(r, size - r, 2)
    box = (cx - r, cy - r, cx + r, cy + r)
    colour = _COLOURS[kind]
    if kind == "disc":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return img


def make_split(folder: Path, per_class: int, seed: int, classes=CLASSES, size: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    for kind in classes:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape_image(kind, rng, size).save(folder / kind / f"{kind}_{i:03d}.png")
    return folder


def make_dataset(root: Path, train_per_class: int = 24, val_per_class: int = 8, seed: int = 0,
                 classes=CLASSES, size: int = 32) -> Path:
    """root/train/<class>/*.png and, when val_per_class, root/val/<class>/*.png."""
    make_split(root / "train", train_per_class, seed, classes, size)
    if val_per_class:
        make_split(root / "val", val_per_class, seed + 1, classes, size)
    return root
