"""A semantic segmentation dataset: images and class-index masks, checked and decoded once.

Layout:

    DATA/classes.txt                   optional: one class name per line, line k = mask value k
    DATA/train/images/<stem>.jpg|png   any image format
    DATA/train/masks/<stem>.png        one mask per image, same stem, same size
    DATA/val/images, DATA/val/masks    optional (also valid/, validation/); without it,
                                       --val-fraction of train is held out (seeded)

`val` also takes one split folder of images/ and masks/ (classes.txt in it or beside it).

A mask holds one class index per pixel: an 8-bit grey ("L") or palette ("P") PNG whose pixel
values are the indices (a palette PNG shows colours but stores indices), 255 = ignore (not
scored, no loss). Without classes.txt the classes are named by their indices 0..max.

What makes a dataset unusable is a DatasetError naming the file: an image without a mask, a
mask of another size than its image, a mask that is RGB rather than indices, a value out of
range. An image that cannot be decoded is skipped with a warning, as in the other tasks.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from visiontool.errors import DatasetError
from visiontool.train.data import VAL_FOLDERS, walk_images

IGNORE = 255  # mask value that is neither scored nor learned
MASK_MODES = ("L", "P")  # 8-bit class indices, plain or with a palette
CLASSES_FILE = "classes.txt"


@dataclass
class Pair:
    image: Path
    mask: Path


@dataclass
class SegmentationDataset:
    root: Path
    classes: list[str]  # index = mask value
    train: list[Pair]
    val: list[Pair]
    val_source: str  # "val/", or how the validation pairs were held out
    named: bool  # class names came from classes.txt (else they are the indices)
    held_out: bool = False  # val is a seeded share of train/ (there is no val/ folder)


@dataclass
class Decoded:
    """The decoded pairs of one split: uint8 HxWx3 images and HxW masks, in split order."""

    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)  # the pairs kept
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # unreadable images (path, reason)


def scan_segmentation(root: str | os.PathLike, val_fraction: float = 0.2, seed: int = 0) -> SegmentationDataset:
    """The pairs of each split; nothing decoded yet."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if (root / "images").is_dir() and not (root / "train").is_dir():
        # one split on its own (what `val` scores): its classes.txt, or its dataset's
        classes = _read_classes(root / CLASSES_FILE) if (root / CLASSES_FILE).is_file() else _read_classes(root.parent / CLASSES_FILE)
        return SegmentationDataset(root, classes or [], [], _pairs(root), str(root), named=classes is not None)
    train_dir = root / "train"
    if not (train_dir / "images").is_dir():
        raise DatasetError(f"no train/images/ folder in {root} (expected {root}/train/images/ and {root}/train/masks/)")
    train = _pairs(train_dir)
    val_dir = next((root / n for n in VAL_FOLDERS if (root / n / "images").is_dir()), None)
    if val_dir is not None:
        val, val_source = _pairs(val_dir), f"{val_dir.name}/"
    else:
        order = np.random.default_rng(seed).permutation(len(train))
        n_val = max(1, round(val_fraction * len(train))) if len(train) > 1 else 0
        held = set(order[:n_val].tolist())
        val = [p for i, p in enumerate(train) if i in held]
        train = [p for i, p in enumerate(train) if i not in held]
        val_source = f"{val_fraction:.0%} of train/ held out (seed {seed})"
    classes = _read_classes(root / CLASSES_FILE)
    return SegmentationDataset(root, classes or [], train, val, val_source, named=classes is not None,
                               held_out=val_dir is None)


def _pairs(split_dir: Path) -> list[Pair]:
    images, _ = walk_images(split_dir / "images")
    if not images:
        raise DatasetError(f"no images in {split_dir / 'images'}")
    masks_dir = split_dir / "masks"
    if not masks_dir.is_dir():
        raise DatasetError(f"no masks/ folder next to {split_dir / 'images'} (one mask PNG per image, same stem)")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
    pairs = []
    for image in images:
        mask = masks.get(image.stem)
        if mask is None:
            raise DatasetError(f"{image}: no mask {masks_dir / (image.stem + '.png')}")
        pairs.append(Pair(image, mask))
    return pairs


def _read_classes(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{path} is empty: one class name per line (line k names mask value k)")
    if len(names) > IGNORE:
        raise DatasetError(f"{path}: {len(names)} classes; masks hold at most {IGNORE} (values 0..{IGNORE - 1}, {IGNORE} = ignore)")
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: a class name appears twice")
    return names


def read_mask(path: Path) -> np.ndarray:
    """The class indices of a mask file, (H, W) uint8; DatasetError for anything else."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in MASK_MODES:
                raise DatasetError(f"{path}: the mask is {im.mode}, not class indices: save it as an 8-bit grey "
                                   f"or palette PNG whose pixel values are the class indices ({IGNORE} = ignore)")
            return np.array(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read the mask ({err})") from None


def decode(pairs: list[Pair], workers: int, advance: Callable[[int], None] | None = None) -> Decoded:
    """Every pair of a split in memory; the image upright as `decode` gives it, the mask checked
    against it. Unreadable images are skipped; bad masks end the run with their file named."""
    from visiontool.imageio import DecodeError
    from visiontool.imageio import decode as decode_image

    def work(pair: Pair):
        try:
            try:
                image = np.array(decode_image(pair.image, "RGB"))
            except DecodeError as err:
                return None, None, str(err)
            mask = read_mask(pair.mask)
            if mask.shape != image.shape[:2]:
                raise DatasetError(f"{pair.mask}: the mask is {mask.shape[1]}x{mask.shape[0]}, its image "
                                   f"{pair.image.name} is {image.shape[1]}x{image.shape[0]}")
            return image, mask, None
        finally:
            if advance is not None:
                advance(1)

    out = Decoded()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for pair, (image, mask, error) in zip(pairs, pool.map(work, pairs)):
            if error is not None:
                out.skipped.append((pair.image, error))
                continue
            out.images.append(image)
            out.masks.append(mask)
            out.pairs.append(pair)
    return out


def settle_classes(ds: SegmentationDataset, splits: list[Decoded]) -> list[str]:
    """The class names: classes.txt's, checked against every mask, or the indices 0..max."""
    top, where = -1, None
    for split in splits:
        for mask, pair in zip(split.masks, split.pairs):
            values = mask[mask != IGNORE]
            if values.size and int(values.max()) > top:
                top, where = int(values.max()), pair.mask
    if ds.named:
        if top >= len(ds.classes):
            raise DatasetError(f"{where}: class index {top} is out of range: {ds.root / CLASSES_FILE} names "
                               f"{len(ds.classes)} classes (0..{len(ds.classes) - 1}; {IGNORE} = ignore)")
        return list(ds.classes)
    if top < 1:
        raise DatasetError(f"the masks in {ds.root} hold fewer than two classes")
    return [str(i) for i in range(top + 1)]
