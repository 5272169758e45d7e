"""A training folder as people really hand them over: nested folders, unicode and spaces in class
names, gray, RGBA and 16-bit images side by side, 1-pixel and 10,000-pixel-wide pictures, and
broken files, which are skipped, counted and named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from visiontool.cli.app import app
from visiontool.train import data

CLASSES = ["café au lait", "dog"]  # sorted, as train orders them


def _class_folder(folder, shade: int, rng) -> None:
    (folder / "nested" / "deeper").mkdir(parents=True)
    for i in range(3):
        noise = rng.integers(0, 40, (32, 32), dtype=np.uint8)
        Image.fromarray(noise + shade).save(folder / f"gray{i}.png")
        Image.fromarray(np.dstack([noise + shade] * 3 + [np.full((32, 32), 200, np.uint8)])).save(folder / f"rgba{i}.png")
        Image.fromarray((noise.astype(np.uint16) + shade) * 257).save(folder / "nested" / f"deep16_{i}.png")
    Image.new("L", (1, 1), shade).save(folder / "nested" / "deeper" / "one_pixel.png")
    Image.new("L", (10_000, 8), shade).save(folder / "strip.png")  # 10,000 pixels wide


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed") / "data"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name, shade in zip(CLASSES, (20, 200)):
            _class_folder(root / split / name, shade, rng)
    (root / "train" / "dog" / "empty.jpg").write_bytes(b"")
    good = (root / "train" / "dog" / "gray0.png").read_bytes()
    (root / "train" / "dog" / "nested" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "train" / "dog" / "notes.txt").write_text("not an image, not named like one: ignored\n")
    return root


def test_nested_folders_count_and_every_file_is_found(dataset):
    images, bad = data.scan_classes(dataset / "train")
    assert sorted(images) == CLASSES
    assert len(images["café au lait"]) == 11  # 3 gray, 3 RGBA, 3 16-bit in nested/, 1 pixel, 1 strip
    assert len(images["dog"]) == 12  # and the truncated one, found by content; decoding skips it
    assert [(p.name, why) for p, why in bad] == [("empty.jpg", "empty file (0 bytes)")]


def test_the_mixed_folder_trains_and_the_skipped_files_are_named(dataset, tmp_path, one_thread):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(dataset), "--model", "lenet5", "--epochs", "1", "--batch-size", "4",
                                      "--image-size", "32", "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.stderr.splitlines() if "unreadable" in line)
    assert warning == (f"warning: skipped 2 unreadable images: {dataset / 'train' / 'dog' / 'empty.jpg'}: empty file "
                       f"(0 bytes); {dataset / 'train' / 'dog' / 'nested' / 'cut.png'}: truncated or corrupt image data")
    rows = CliRunner().invoke(app, ["classify", str(dataset / "val"), "-r", "-m", str(run / "best.safetensors"), "-q"])
    assert rows.exit_code == 0
    labels = {json.loads(line)["top"][0]["label"] for line in rows.stdout.splitlines()}
    assert labels <= set(CLASSES) and len(rows.stdout.splitlines()) == 22


def test_skipped_files_are_named_up_to_a_limit():
    from pathlib import Path

    note = data.skipped_note([(Path(f"b{i}.jpg"), "not an image") for i in range(8)])
    assert note == ("skipped 8 unreadable images: b0.jpg: not an image; b1.jpg: not an image; b2.jpg: not an image; "
                    "b3.jpg: not an image; b4.jpg: not an image; and 3 more")
