"""Folder datasets: find the splits, check them, and decode every image once into memory.

Layout: DATA/train/<class>/<image> and, optionally, DATA/val/<class>/<image> (also `valid/` or
`validation/`), or DATA/<class>/<image>. Without a val folder a stratified, seeded share of
each class is held out.
Images are recognised by content. Each image is decoded and resized once into a uint8 tensor
cache, so an epoch costs only augmentation and compute, never decoding.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from visiontool.errors import DatasetError
from visiontool.preprocess import Preprocess

VAL_FOLDERS = ("val", "valid", "validation")
# Files with these endings are meant to be images: when they are not readable they are
# counted as skipped instead of being silently ignored like README.txt would be.
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
# Refuse a cache bigger than this share of the free memory, with advice instead of swapping.
_MAX_MEMORY_SHARE = 0.6


@dataclass
class Split:
    """The files of one split and their class indices."""

    folder: Path  # where the files came from (for messages)
    files: list[Path]
    labels: list[int]


@dataclass
class FolderDataset:
    classes: list[str]  # sorted class folder names; index = label
    train: Split
    val: Split
    val_source: str  # "val/" folder name, or a description of the held-out split
    unreadable: list[tuple[Path, str]]  # files skipped while scanning (path, reason)


def find_splits(root: Path) -> tuple[Path, Path | None]:
    """Return (train folder, val folder or None): DATA/train and DATA/val, or DATA itself as a
    folder of class folders; DatasetError when the layout is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    val = next((root / name for name in VAL_FOLDERS if (root / name).is_dir()), None)
    if (root / "train").is_dir():
        return root / "train", val
    if val is not None:
        raise DatasetError(f"no train/ folder in {root} next to {val.name}/ (expected {root}/train/<class>/<image>)")
    beside = next((root.parent / name for name in VAL_FOLDERS if (root.parent / name).is_dir()), None)
    if root.resolve().name == "train" and beside is not None:
        # Its own val/ folder would be left out and the training images split instead.
        raise DatasetError(f"{root} is the train/ folder of a dataset with {beside.name}/: pass {root.parent} as DATA")
    return root, None  # a plain folder of class folders


def scan_classes(folder: Path) -> tuple[dict[str, list[Path]], list[tuple[Path, str]]]:
    """Images per class folder (recursively, by content, hidden entries skipped, sorted).

    Returns the images per class and the files that carry an image suffix but are not images.
    """
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"no class folders in {folder} (expected {folder}/<class>/<image>)")
    images: dict[str, list[Path]] = {}
    bad: list[tuple[Path, str]] = []
    for class_dir in class_dirs:
        images[class_dir.name], not_images = walk_images(class_dir)
        bad += not_images
    return images, bad


def walk_images(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Images under a folder (recursively, by content, hidden entries skipped, sorted) and the
    files that carry an image suffix but are not images."""
    from visiontool.imageio import looks_like_image

    found, bad = [], []
    for dirpath, dirnames, filenames in os.walk(folder):  # no followlinks: no loops
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if looks_like_image(path):
                found.append(path)
            elif path.suffix.lower() in _IMAGE_SUFFIXES:
                bad.append((path, "empty file (0 bytes)" if path.stat().st_size == 0 else "not an image"))
    return found, bad


NAMED_SKIPPED = 5  # unreadable files a warning names before "and N more"


def skipped_note(skipped: Sequence[tuple[Path, str]]) -> str:
    """The warning for files a dataset skipped: how many, and the first few with their reasons."""
    n = len(skipped)
    named = "; ".join(f"{p}: {reason}" for p, reason in skipped[:NAMED_SKIPPED])
    more = f"; and {n - NAMED_SKIPPED} more" if n > NAMED_SKIPPED else ""
    return f"skipped {n} unreadable image{'s' * (n > 1)}: {named}{more}"


def _check_classes(folder: Path, images: dict[str, list[Path]]) -> None:
    if not any(images.values()):
        raise DatasetError(f"no images found in {folder}")
    if len(images) == 1:
        (name,) = images
        raise DatasetError(f"only one class in {folder} ({name!r}): a classifier needs at least 2 class folders")
    empty = [name for name, files in images.items() if not files]
    if empty:
        raise DatasetError(f"class folders without images in {folder}: {', '.join(empty)}")


def flatten(folder: Path, images: dict[str, list[Path]], classes: list[str]) -> Split:
    """One Split from images per class; labels are positions in `classes`."""
    files, labels = [], []
    for index, name in enumerate(classes):
        files += images[name]
        labels += [index] * len(images[name])
    return Split(folder, files, labels)


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val): about `fraction` of each class held out, at least one image of
    every class with 2 or more, and the same split for the same seed."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train_idx, val_idx = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n_val = 0 if len(members) < 2 else min(len(members) - 1, max(1, round(len(members) * fraction)))
        val_idx += members[:n_val].tolist()
        train_idx += members[n_val:].tolist()
    return sorted(train_idx), sorted(val_idx)


def scan_dataset(root: str | Path, val_fraction: float, seed: int) -> FolderDataset:
    """Find and check the splits of a folder dataset (no decoding yet)."""
    train_dir, val_dir = find_splits(Path(root))
    train_images, bad = scan_classes(train_dir)
    _check_classes(train_dir, train_images)
    classes = sorted(train_images)
    if val_dir is not None:
        val_images, val_bad = scan_classes(val_dir)
        bad += val_bad
        only_train = sorted(set(train_images) - set(val_images))
        only_val = sorted(set(val_images) - set(train_images))
        if only_train or only_val:
            parts = []
            if only_train:
                parts.append(f"only in train/: {', '.join(only_train)}")
            if only_val:
                parts.append(f"only in {val_dir.name}/: {', '.join(only_val)}")
            raise DatasetError(f"class folders differ between train/ and {val_dir.name}/: {'; '.join(parts)}")
        if not any(val_images.values()):
            raise DatasetError(f"no images found in {val_dir}")
        return FolderDataset(
            classes, flatten(train_dir, train_images, classes), flatten(val_dir, val_images, classes),
            f"{val_dir.name}/", bad,
        )
    everything = flatten(train_dir, train_images, classes)
    train_idx, val_idx = stratified_split(everything.labels, val_fraction, seed)
    if not val_idx:
        raise DatasetError(f"too few images in {train_dir} to hold out a validation split (add a val/ folder)")

    def pick(idx: list[int]) -> Split:
        return Split(train_dir, [everything.files[i] for i in idx], [everything.labels[i] for i in idx])

    return FolderDataset(classes, pick(train_idx), pick(val_idx),
                         f"{val_fraction:.0%} of {train_dir.resolve().name}/ (seed {seed})", bad)


def train_cache_preprocess(eval_pp: Preprocess) -> Preprocess:
    """Training images are cached as squares of the eval resize side: random crops then have the
    same margin to move in that the eval center crop leaves out."""
    return replace(eval_pp, crop=eval_pp.resize, mean=(0.0,) * eval_pp.channels, std=(1.0,) * eval_pp.channels)


def _geometry_only(pp: Preprocess) -> Preprocess:
    return replace(pp, mean=(0.0,) * pp.channels, std=(1.0,) * pp.channels)


def decode_uint8(path: Path, pp: Preprocess) -> np.ndarray:
    """One image as uint8 CHW exactly as `pp` resizes and crops it (before normalization).

    Decoding takes the same reduced-size JPEG shortcut as `classify`, so a checkpoint's
    validation images are the very pixels `classify` will feed it.
    """
    from visiontool.imageio import decode

    img = decode(path, pp.mode, draft=pp.draft)
    # Preprocess with mean 0 and std 1 gives pixel/255 in float32; *255 and rounding recovers
    # the exact uint8 pixels, so the one resize/crop implementation is shared with inference.
    unit = _geometry_only(pp)(img)
    return np.rint(unit * 255.0).astype(np.uint8)


@dataclass
class ImageCache:
    """Decoded images of one split, held in memory."""

    images: "torch.Tensor"  # uint8 (N, C, H, W)  # noqa: F821
    labels: "torch.Tensor"  # int64 (N,)  # noqa: F821
    skipped: list[tuple[Path, str]]  # files that failed to decode (path, reason)
    kept: list[int]  # positions in the split of the images held, in order


def check_memory(n_images: int, pp: Preprocess) -> None:
    need = n_images * pp.channels * pp.crop * pp.crop
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > _MAX_MEMORY_SHARE * free:
        raise DatasetError(
            f"{n_images} images at {pp.crop}x{pp.crop} need {need / 2**30:.1f} GiB in memory, "
            f"{free / 2**30:.1f} GiB are free: use a smaller --image-size"
        )


def decode_split(
    split: Split,
    pp: Preprocess,
    workers: int,
    advance: Callable[[int], None] | None = None,
) -> ImageCache:
    """Decode all files of a split with `workers` threads (Pillow releases the GIL while it
    decodes and resizes); unreadable files are skipped and reported, not fatal."""
    import torch

    from visiontool.imageio import DecodeError

    check_memory(len(split.files), pp)
    out = np.empty((len(split.files), pp.channels, pp.crop, pp.crop), dtype=np.uint8)
    ok = np.zeros(len(split.files), dtype=bool)
    skipped: list[tuple[Path, str]] = []

    def work(i: int) -> tuple[int, str | None]:
        try:
            out[i] = decode_uint8(split.files[i], pp)
            return i, None
        except DecodeError as err:
            return i, str(err)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, error in pool.map(work, range(len(split.files))):
            if error is None:
                ok[i] = True
            else:
                skipped.append((split.files[i], error))
            if advance is not None:
                advance(1)
    labels = np.asarray(split.labels, dtype=np.int64)
    kept = np.flatnonzero(ok)
    images = out if ok.all() else out[ok]
    return ImageCache(torch.from_numpy(images), torch.from_numpy(labels[ok]), skipped, kept.tolist())
