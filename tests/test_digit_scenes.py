"""scripts/digit_scenes.py: exact boxes and masks, both layouts agree, held-out pools stay apart, seeds repeat."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import load_script


@pytest.fixture(scope="module")
def ds(digit_scenes):
    return digit_scenes


def _check_boxes_against_mask(boxes: np.ndarray, labels: np.ndarray, mask: np.ndarray, margin: int) -> None:
    height, width = mask.shape
    covered = np.zeros(mask.shape, bool)
    for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
        assert 20 <= y1 - y0 <= 80
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        # the window around the box holds this digit's ink only, and that ink fills the box edge to edge
        wx0, wy0 = max(round(x0) - margin, 0), max(round(y0) - margin, 0)
        window = mask[wy0 : round(y1) + margin, wx0 : round(x1) + margin]
        assert set(np.unique(window).tolist()) <= {0, 1 + label}
        rows, cols = np.flatnonzero(window.any(1)) + wy0, np.flatnonzero(window.any(0)) + wx0
        assert abs(rows[0] - y0) <= 1 and abs(rows[-1] + 1 - y1) <= 1
        assert abs(cols[0] - x0) <= 1 and abs(cols[-1] + 1 - x1) <= 1
        covered[round(y0) : round(y1), round(x0) : round(x1)] = True
    assert not (mask.astype(bool) & ~covered).any()  # no ink outside the boxes


def _intersect(a, b, margin: float = 0.0) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def test_boxes_are_tight_to_the_ink_and_never_overlap(ds):
    pools = ds.load_pools("train")
    digits = 0
    for i in range(40):
        rng = np.random.default_rng([7, i])
        width, height = (int(v) for v in rng.integers(160, 641, 2))
        scene = ds.make_scene(rng, pools, width, height)
        assert scene.image.shape == (height, width, 3) and scene.image.dtype == np.uint8
        assert scene.mask.shape == (height, width) and scene.mask.dtype == np.uint8
        assert scene.boxes.dtype == np.float32 and scene.boxes.shape == (len(scene.labels), 4)
        assert scene.labels.dtype == np.int64 and set(scene.labels.tolist()) <= set(range(10))
        _check_boxes_against_mask(scene.boxes, scene.labels, scene.mask, ds.MARGIN // 2)
        for a in range(len(scene.boxes)):
            for b in range(a):
                assert not _intersect(scene.boxes[a], scene.boxes[b], margin=ds.MARGIN - 1)
        digits += len(scene.labels)
    assert digits >= 80


def test_digits_contrast_with_the_background_under_them(ds):
    pools = ds.load_pools("heldout")
    luma = np.array([0.299, 0.587, 0.114])
    for i in range(10):
        scene = ds.make_scene(np.random.default_rng([8, i]), pools, 256, 256)
        grey = scene.image @ luma
        for (x0, y0, x1, y1), label in zip(scene.boxes.astype(int).tolist(), scene.labels.tolist()):
            ink = scene.mask[y0:y1, x0:x1] == 1 + label
            box = grey[y0:y1, x0:x1]
            assert abs(np.median(box[ink]) - np.median(box[~ink])) > 40


def test_written_layouts_agree_with_each_other_and_the_masks(ds, tmp_path):
    counts = {"train": 6, "val": 2, "heldout": 2}
    ds.write_dataset(tmp_path, counts, None, seed=3, masks=True)
    assert (tmp_path / "data.yaml").read_text() == (
        "path: .\ntrain: images/train\nval: images/val\nheldout: images/heldout\n"
        "names: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']\n"
    )
    for split, count in counts.items():
        coco = json.loads((tmp_path / "annotations" / f"instances_{split}.json").read_text())
        assert [c["name"] for c in coco["categories"]] == [str(d) for d in range(10)]
        assert [c["id"] for c in coco["categories"]] == list(range(1, 11))
        assert len(coco["images"]) == count
        for entry in coco["images"]:
            path = tmp_path / "images" / split / entry["file_name"]
            with Image.open(path) as image:
                assert image.format == "JPEG" and image.size == (entry["width"], entry["height"])
            width, height = entry["width"], entry["height"]
            anns = [a for a in coco["annotations"] if a["image_id"] == entry["id"]]
            coco_boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
            coco_labels = np.array([a["category_id"] - 1 for a in anns], np.int64)
            assert all(a["iscrowd"] == 0 and a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3]) for a in anns)

            rows = np.loadtxt(tmp_path / "labels" / split / f"{path.stem}.txt", ndmin=2).reshape(-1, 5)
            cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
            yolo_boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
            assert (rows[:, 1:] >= 0).all() and (rows[:, 1:] <= 1).all()
            np.testing.assert_array_equal(rows[:, 0].astype(np.int64), coco_labels)
            np.testing.assert_allclose(yolo_boxes, coco_boxes, atol=0.01)

            with Image.open(tmp_path / "masks" / split / f"{path.stem}.png") as image:
                assert image.mode == "P" and image.getpalette()[3:6] != [0, 0, 0]
                mask = np.asarray(image)
            assert mask.shape == (height, width) and mask.max() <= 10
            _check_boxes_against_mask(coco_boxes, coco_labels, mask, ds.MARGIN // 2)


def test_square_size_and_formats(ds, tmp_path):
    ds.write_dataset(tmp_path, {"val": 3}, 96, seed=1, formats=("coco",))
    coco = json.loads((tmp_path / "annotations" / "instances_val.json").read_text())
    assert {(e["width"], e["height"]) for e in coco["images"]} == {(96, 96)}
    assert not (tmp_path / "labels").exists() and not (tmp_path / "data.yaml").exists()
    with pytest.raises(ValueError):
        ds.write_dataset(tmp_path, {"val": 1}, 96, seed=1, formats=("voc",))


def test_heldout_pools_share_nothing_with_training(ds):
    train, val, heldout = ds.load_pools("train"), ds.load_pools("val"), ds.load_pools("heldout")
    assert val is train and ds.load_pools("heldout") is heldout
    assert len(heldout.digits) == 1000 and len(train.digits) == 4000
    assert np.bincount(heldout.labels, minlength=10).tolist() == [100] * 10
    seen = {d.tobytes() for d in train.digits}
    assert not any(d.tobytes() in seen for d in heldout.digits)
    assert not set(train.background_names) & set(heldout.background_names)
    seen = {np.asarray(b).tobytes() for b in train.backgrounds}
    assert not any(np.asarray(b).tobytes() in seen for b in heldout.backgrounds)
    # the same held-out digits as the folder dataset the classifier is scored on
    images, labels = ds._mnist()
    held = load_script("make_mnist_folder").split_indices(labels)["heldout"]
    np.testing.assert_array_equal(heldout.digits, images[held])
    np.testing.assert_array_equal(heldout.labels, labels[held])


def test_a_seed_gives_the_same_scenes_and_files(ds, tmp_path):
    pools = ds.load_pools("heldout")
    a = ds.make_scene(np.random.default_rng(5), pools, 200, 150)
    b = ds.make_scene(np.random.default_rng(5), pools, 200, 150)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = ds.make_scene(np.random.default_rng(6), pools, 200, 150)
    assert not np.array_equal(a.image, c.image)

    ds.write_dataset(tmp_path / "one", {"train": 3, "val": 1}, 128, seed=9, masks=True)
    ds.write_dataset(tmp_path / "two", {"val": 1, "train": 3}, 128, seed=9, masks=True)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) == 1 + 2 + 4 * 3  # data.yaml, two json, and image, label, mask for each scene
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_distractors_are_background_away_from_the_digits_and_all_marks_only_outside_heldout(ds, tmp_path):
    pools = ds.load_pools("train")
    marks = 0
    for seed in range(6):
        plain = ds.make_scene(np.random.default_rng(seed), pools, 320, 240)
        marked = ds.make_scene(np.random.default_rng(seed), pools, 320, 240, distractors=8)
        # the same digits, boxes and mask: the marks are drawn after them and never labelled
        np.testing.assert_array_equal(plain.mask, marked.mask)
        np.testing.assert_array_equal(plain.boxes, marked.boxes)
        _check_boxes_against_mask(marked.boxes, marked.labels, marked.mask, margin=4)
        changed = np.abs(marked.image.astype(int) - plain.image.astype(int)).max(2) > 40
        marks += changed.sum()
        for x0, y0, x1, y1 in marked.boxes.astype(int).tolist():  # none touches a digit's box
            assert not changed[y0:y1, x0:x1].any()
    assert marks > 1000  # the marks are there, with the contrast digits have
    ds.write_dataset(tmp_path / "with", {"train": 2, "heldout": 2}, 160, seed=3, formats=("seg",), distractors=6,
                     text=4, printed=12)
    ds.write_dataset(tmp_path / "without", {"train": 2, "heldout": 2}, 160, seed=3, formats=("seg",))
    for split, same in (("heldout", True), ("train", False)):
        pair = [(tmp_path / d / split / "images" / "000000.jpg").read_bytes() for d in ("with", "without")]
        assert (pair[0] == pair[1]) is same, split


def test_soft_digits_keep_their_masks_and_soften_only_their_edges(ds):
    pools = ds.load_pools("heldout")
    softened = 0
    for seed in range(4):
        crisp = ds.make_scene(np.random.default_rng(seed), pools, 320, 240)
        soft = ds.make_scene(np.random.default_rng(seed), pools, 320, 240, soft=1.0)
        np.testing.assert_array_equal(crisp.mask, soft.mask)  # the ink, and so the labels, stay
        np.testing.assert_array_equal(crisp.boxes, soft.boxes)
        diff = np.abs(soft.image.astype(int) - crisp.image.astype(int)).max(2)
        ink = crisp.mask > 0
        # the change sits on the digits' edges (an upscaled stroke's soft tail reaches a few px
        # past its ink box): background far from every digit is untouched
        near = np.zeros_like(ink)
        for x0, y0, x1, y1 in crisp.boxes.astype(int).tolist():
            near[max(0, y0 - 8) : y1 + 8, max(0, x0 - 8) : x1 + 8] = True
        assert diff[~near].max() <= 2  # JPEG-free scenes: only rounding elsewhere
        softened += (diff[near & ~ink] > 10).sum()
    assert softened > 200


def test_soft_marks_get_soft_edges_like_soft_digits(ds):
    # a model must not learn "soft edges = digit": with --soft, marks are softened as often as digits
    for seed in range(3):
        crisp = ds._draw_distractor(np.random.default_rng(seed), 200, 200)
        soft = ds._draw_distractor(np.random.default_rng(seed), 200, 200, blur=0.6)
        partial = [((a > 0.05) & (a < 0.95)).sum() for a in (crisp, soft)]
        assert partial[1] > 1.8 * partial[0]
        ink = [(a >= 0.5).sum() for a in (crisp, soft)]
        assert abs(ink[1] - ink[0]) < 0.35 * ink[0]  # the same mark, not a smear
    pools = ds.load_pools("train")
    plain = ds.make_scene(np.random.default_rng(5), pools, 320, 240, distractors=6)
    soft = ds.make_scene(np.random.default_rng(5), pools, 320, 240, distractors=6, soft=1.0)
    np.testing.assert_array_equal(plain.mask, soft.mask)


def test_plain_ink_is_near_black_or_near_white_even_where_the_texture_is_as_dark(ds):
    rng = np.random.default_rng(0)
    busy = np.r_[np.full(50, 20.0), np.full(50, 230.0)].astype(np.float32)  # no ink stands out from 90% of it
    assert ds._ink_colour(rng, busy) is None
    for under, dark in ((busy + 15, True), (busy - 15, False), (np.full(10, 140.0), True), (np.full(10, 90.0), False)):
        luma = float(ds._plain_ink(rng, under) @ ds.LUMA)
        assert (luma <= 60) if dark else (luma >= 195), (under.mean(), luma)
    pools = ds.load_pools("train")
    for seed in range(3):
        scene = ds.make_scene(np.random.default_rng(seed), pools, 320, 240, distractors=6, plain=1.0)
        _check_boxes_against_mask(scene.boxes, scene.labels, scene.mask, ds.MARGIN // 2)
        luma = scene.image @ ds.LUMA
        for x0, y0, x1, y1 in scene.boxes.astype(int).tolist():
            ink = luma[y0:y1, x0:x1][scene.mask[y0:y1, x0:x1] > 0]
            assert not 100 < np.median(ink) < 160  # blended at 0.85..1 over the texture, with noise


def test_text_lines_are_background_kept_clear_of_digits_and_change_nothing_else(ds):
    pools = ds.load_pools("train")
    for seed in range(3):
        plain = ds.make_scene(np.random.default_rng(seed), pools, 320, 240, distractors=6)
        text = ds.make_scene(np.random.default_rng(seed), pools, 320, 240, distractors=6, text=4)
        np.testing.assert_array_equal(plain.mask, text.mask)  # the digits, their ink and labels stay
        diff = np.abs(text.image.astype(int) - plain.image.astype(int)).max(2)
        for x0, y0, x1, y1 in plain.boxes.astype(int).tolist():
            assert diff[y0:y1, x0:x1].max() <= 2  # no text over a digit (rounding only)
    lines = [ds._draw_text_line(np.random.default_rng(seed), 320, 240) for seed in range(20)]
    inked = [np.flatnonzero((a >= 0.5).any(1)) for a in lines if (a >= 0.5).any()]
    assert len(inked) >= 15
    assert all(rows[-1] - rows[0] + 1 <= 30 for rows in inked)  # small print: one line, at most 24 px type
    assert np.mean([(a >= 0.5).any(0).sum() for a in lines]) > 40  # words, not a letter


def test_printed_text_runs_under_the_digits_and_leaves_the_masks_alone(ds):
    pools = ds.load_pools("train")
    crossed = 0
    for seed in range(6):
        plain = ds.make_scene(np.random.default_rng(seed), pools, 320, 240, distractors=6, soft=0.5)
        printed = ds.make_scene(np.random.default_rng(seed), pools, 320, 240, distractors=6, soft=0.5, printed=12)
        np.testing.assert_array_equal(plain.mask, printed.mask)  # the print is background
        np.testing.assert_array_equal(plain.boxes, printed.boxes)
        diff = np.abs(printed.image.astype(int) - plain.image.astype(int)).max(2)
        for x0, y0, x1, y1 in plain.boxes.astype(int).tolist():
            off_ink = plain.mask[y0:y1, x0:x1] == 0
            crossed += int((diff[y0:y1, x0:x1][off_ink] > 60).sum() > 20)  # print inside a digit's box
    assert crossed >= 3
