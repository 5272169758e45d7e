"""Folder datasets for `train`: layout checks with exact messages, the seeded split, and the
decoded cache matching the preprocessing `classify` uses."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from train_shapes import make_dataset, make_split, shape_image

from visiontool.errors import DatasetError
from visiontool.preprocess import Preprocess
from visiontool.train import data


def _error(root: Path) -> str:
    with pytest.raises(DatasetError) as info:
        data.scan_dataset(root, 0.2, seed=0)
    return str(info.value)


def test_missing_and_badly_laid_out_folders(tmp_path):
    assert _error(tmp_path / "nope") == f"dataset folder not found: {tmp_path / 'nope'}"
    (tmp_path / "d" / "cats").mkdir(parents=True)
    assert _error(tmp_path / "d") == f"no images found in {tmp_path / 'd'}"  # a folder of class folders
    (tmp_path / "f" / "val").mkdir(parents=True)
    assert _error(tmp_path / "f") == (
        f"no train/ folder in {tmp_path / 'f'} next to val/ (expected {tmp_path / 'f'}/train/<class>/<image>)"
    )
    train = tmp_path / "e" / "train"
    train.mkdir(parents=True)
    assert _error(tmp_path / "e") == f"no class folders in {train} (expected {train}/<class>/<image>)"
    (train / "a").mkdir()
    (train / "b").mkdir()
    (train / "b" / "notes.txt").write_text("not an image")
    assert _error(tmp_path / "e") == f"no images found in {train}"


def test_one_class_and_an_empty_class_are_refused(tmp_path):
    root = make_dataset(tmp_path / "one", 3, val_per_class=0, classes=("disc",))
    assert _error(root) == (
        f"only one class in {root / 'train'} ('disc'): a classifier needs at least 2 class folders"
    )
    root = make_dataset(tmp_path / "empty", 3, val_per_class=0)
    (root / "train" / "zebra").mkdir()
    assert _error(root) == f"class folders without images in {root / 'train'}: zebra"


def test_class_mismatch_names_the_classes(tmp_path):
    root = make_dataset(tmp_path / "d", 3, val_per_class=0, classes=("disc", "square"))
    make_split(root / "valid", 2, 1, classes=("disc", "triangle"))
    assert _error(root) == (
        "class folders differ between train/ and valid/: only in train/: square; only in valid/: triangle"
    )


def test_val_folder_variants_and_content_sniffing(tmp_path):
    root = make_dataset(tmp_path / "d", 4, val_per_class=0)
    make_split(root / "validation", 2, 1)
    # an image with a misleading name counts; a text file is ignored; a fake .jpg is reported
    shape_image("disc", np.random.default_rng(5)).save(root / "train" / "disc" / "photo.dat", format="PNG")
    (root / "train" / "disc" / "README.txt").write_text("hello")
    (root / "train" / "square" / "broken.jpg").write_text("not really a jpeg")
    ds = data.scan_dataset(root, 0.2, seed=0)
    assert ds.classes == ["disc", "square", "triangle"]
    assert ds.val_source == "validation/"
    assert len(ds.train.files) == 13 and len(ds.val.files) == 6
    assert root / "train" / "disc" / "photo.dat" in ds.train.files
    assert [(p.name, why) for p, why in ds.unreadable] == [("broken.jpg", "not an image")]


def test_seeded_split_is_stratified_disjoint_and_repeatable(tmp_path):
    labels = [0] * 50 + [1] * 20 + [2] * 5 + [3] * 1
    train, val = data.stratified_split(labels, 0.2, seed=3)
    assert sorted(train + val) == list(range(len(labels)))
    counts = np.bincount(np.asarray(labels)[val], minlength=4).tolist()
    assert counts == [10, 4, 1, 0]  # 20% of each class; a single image stays in train
    assert data.stratified_split(labels, 0.2, seed=3) == (train, val)
    assert data.stratified_split(labels, 0.2, seed=4)[1] != val

    root = make_dataset(tmp_path / "d", 10, val_per_class=0)
    ds = data.scan_dataset(root, 0.3, seed=0)
    assert len(ds.val.files) == 9 and len(ds.train.files) == 21
    assert ds.val_source == "30% of train/ (seed 0)"
    assert not set(ds.val.files) & set(ds.train.files)


def test_cache_holds_exactly_the_pixels_classify_normalizes(tmp_path):
    img = shape_image("square", np.random.default_rng(1), size=45)
    path = tmp_path / "x.jpg"
    img.resize((70, 45)).save(path, quality=90)
    pp = Preprocess(crop=32, resize=37)
    pixels = data.decode_uint8(path, pp)
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 32, 32)

    from visiontool.imageio import decode

    expected = pp(decode(path, pp.mode, draft=pp.draft))
    mean = np.asarray(pp.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(pp.std, dtype=np.float32)[:, None, None]
    np.testing.assert_allclose((pixels / np.float32(255) - mean) / std, expected, atol=1e-5)

    gray = Preprocess(crop=32, resize=32, mean=(0.5,), std=(0.5,), channels=1)
    assert data.decode_uint8(path, gray).shape == (1, 32, 32)


def test_unreadable_images_are_skipped_and_reported(tmp_path):
    folder = make_split(tmp_path / "s", 3, 0, classes=("disc", "square"))
    good = folder / "disc" / "disc_000.png"
    truncated = folder / "square" / "cut.png"
    truncated.write_bytes(good.read_bytes()[:60])
    images, bad = data.scan_classes(folder)
    split = data.flatten(folder, images, sorted(images))
    cache = data.decode_split(split, Preprocess(crop=16, resize=16), workers=2)
    assert cache.images.shape == (6, 3, 16, 16)
    assert cache.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert [(p.name, reason) for p, reason in cache.skipped] == [("cut.png", "truncated or corrupt image data")]
    assert not bad


def test_memory_check_refuses_a_cache_that_cannot_fit():
    with pytest.raises(DatasetError, match=re.escape("use a smaller --image-size")):
        data.check_memory(10**9, Preprocess(crop=224, resize=256))
