"""Detection datasets: YOLO and COCO layouts read to the same boxes, EXIF orientation handled
from headers alone, and each usual mistake refused in one line naming the file (and line)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from visiontool.errors import DatasetError
from visiontool.imageio import decode
from visiontool.train.data import VAL_FOLDERS
from visiontool.train.detect_data import label_path, scan_detection

CLASSES = ["cat", "dog"]
COCO_IDS = [3, 7]  # deliberately not 0..n-1: results must carry the dataset's own ids

# name -> (stored width, stored height, EXIF orientation, upright boxes [class, x1, y1, x2, y2])
TRAIN = {
    "a.jpg": (64, 48, 1, [(0, 8, 8, 32, 40), (1, 40, 10, 60, 30)]),
    "b.png": (50, 50, 1, [(1, 0, 0, 25, 25)]),
    # Stored 40 wide and 60 high, shown turned clockwise: upright it is 60x40.
    "c.jpg": (40, 60, 6, [(0, 10, 5, 50, 35)]),
    "d.png": (32, 32, 1, []),  # no objects: no label file / no annotations
}
VAL = {"e.png": (40, 40, 1, [(1, 4, 4, 20, 36)])}


def _upright(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _write_image(path: Path, width: int, height: int, orientation: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (width, height), (20, 20, 20))
    if orientation == 6:
        # The upright box (10, 5)-(50, 35) of c.jpg, drawn in stored pixels: upright (X, Y)
        # shows stored (Y, height - X).
        ImageDraw.Draw(img).rectangle((5, 10, 34, 49), fill=(255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes()) if path.suffix == ".jpg" else img.save(path)


def _yolo_line(label: int, box, width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
    return f"{label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def make_yolo(root: Path, yaml_text: str | None = None, images="images/{split}", labels="labels/{split}") -> Path:
    for split, files in (("train", TRAIN), ("val", VAL)):
        for name, (w, h, orientation, objects) in files.items():
            _write_image(root / images.format(split=split) / name, w, h, orientation)
            if objects:
                uw, uh = _upright(w, h, orientation)
                text = "\n".join(_yolo_line(c, box, uw, uh) for c, *box in objects) + "\n"
                label_file = root / labels.format(split=split) / Path(name).with_suffix(".txt")
                label_file.parent.mkdir(parents=True, exist_ok=True)
                label_file.write_text(text)
    if yaml_text is None:
        yaml_text = "names: [cat, dog]\ntrain: images/train\nval: images/val\n"
    (root / "data.yaml").write_text(yaml_text)
    return root


def _coco_json(files: dict, first_id: int, stored_frame: bool = False) -> dict:
    images, annotations = [], []
    for n, (name, (w, h, orientation, objects)) in enumerate(files.items()):
        image_id = first_id + n
        uw, uh = _upright(w, h, orientation)
        images.append({"id": image_id, "file_name": name, "width": w if stored_frame else uw,
                       "height": h if stored_frame else uh})
        for c, x1, y1, x2, y2 in objects:
            if stored_frame and orientation == 6:
                x1, y1, x2, y2 = y1, h - x2, y2, h - x1  # the same box in stored pixels
            annotations.append({"id": len(annotations) + 100, "image_id": image_id, "category_id": COCO_IDS[c],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": cid, "name": name} for cid, name in zip(COCO_IDS, CLASSES)][::-1]  # any order in the file
    return {"images": images, "annotations": annotations, "categories": categories}


def make_coco(root: Path, stored_frame: bool = False) -> Path:
    for split, files, first_id in (("train2017", TRAIN, 10), ("val2017", VAL, 50)):
        for name, (w, h, orientation, _) in files.items():
            _write_image(root / "images" / split / name, w, h, orientation)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        data = _coco_json(files, first_id, stored_frame)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root


def _boxes(samples) -> dict[str, tuple]:
    return {s.path.name: (s.width, s.height, s.boxes, s.labels) for s in samples}


def _expected(files: dict) -> dict[str, tuple]:
    out = {}
    for name, (w, h, orientation, objects) in files.items():
        boxes = np.asarray([box for _, *box in objects], dtype=np.float32).reshape(-1, 4)
        out[name] = (*_upright(w, h, orientation), boxes, np.asarray([c for c, *_ in objects], dtype=np.int64))
    return out


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, (w, h, boxes, labels) in want.items():
        gw, gh, gboxes, glabels = got[name]
        assert (gw, gh) == (w, h), name
        assert gboxes.dtype == np.float32 and gboxes.shape == boxes.shape, name
        np.testing.assert_allclose(gboxes, boxes, atol=1e-3, err_msg=name)
        assert glabels.dtype == np.int64
        np.testing.assert_array_equal(glabels, labels)


def test_yolo_and_coco_read_to_the_same_boxes(tmp_path):
    yolo = scan_detection(make_yolo(tmp_path / "yolo"))
    coco = scan_detection(make_coco(tmp_path / "coco"))
    for ds, fmt in ((yolo, "yolo"), (coco, "coco")):
        assert ds.format == fmt
        assert ds.classes == CLASSES
        _assert_same(_boxes(ds.train), _expected(TRAIN))
        _assert_same(_boxes(ds.val), _expected(VAL))
    assert yolo.val_source == "images/val" and coco.val_source == "instances_val2017.json"

    assert yolo.category_ids == [0, 1] and coco.category_ids == COCO_IDS
    assert coco.index_of == {3: 0, 7: 1}
    by_name = {s.path.name: s for s in coco.train + coco.val}
    assert [by_name[n].image_id for n in ("a.jpg", "b.png", "c.jpg", "d.png", "e.png")] == [10, 11, 12, 13, 50]
    np.testing.assert_array_equal(by_name["a.jpg"].category_ids, [3, 7])
    assert all(s.category_ids is None for s in yolo.train)
    assert len({s.image_id for s in yolo.train + yolo.val}) == 5

    d_yolo, d_coco = tmp_path / "yolo/images/train/d.png", tmp_path / "coco/images/train2017/d.png"
    assert yolo.notes == [f"images without a label file (no objects): 1 (first: {d_yolo})"]
    assert coco.notes == [f"images without annotations (no objects): 1 (first: {d_coco})"]


def test_exif_rotated_boxes_frame_the_object_decode_shows(tmp_path):
    ds = scan_detection(make_yolo(tmp_path / "yolo"))
    (sample,) = [s for s in ds.train if s.path.name == "c.jpg"]
    img = np.asarray(decode(sample.path))
    assert img.shape[:2] == (sample.height, sample.width) == (40, 60)
    ys, xs = np.nonzero(img[..., 0] > 128)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], sample.boxes[0], atol=1.5)


def test_coco_boxes_drawn_on_the_stored_pixels_are_turned_upright(tmp_path):
    ds = scan_detection(make_coco(tmp_path / "coco", stored_frame=True))
    _assert_same(_boxes(ds.train), _expected(TRAIN))


@pytest.mark.parametrize("val_name", VAL_FOLDERS)
def test_roboflow_layout_and_val_folder_names(tmp_path, val_name):
    root = tmp_path / "rf"
    # Roboflow writes split entries relative to a folder above the dataset.
    yaml_text = "names: {0: cat, 1: dog}\ntrain: ../train/images\n"
    make_yolo(root, yaml_text, images="{split}/images", labels="{split}/labels")
    (root / "val").rename(root / val_name)
    ds = scan_detection(root)
    assert ds.val_source == f"{val_name}/images/"
    _assert_same(_boxes(ds.train), _expected(TRAIN))
    _assert_same(_boxes(ds.val), _expected(VAL))


def test_without_val_a_seeded_share_is_held_out(tmp_path):
    root = make_yolo(tmp_path / "d", "names: [cat, dog]\ntrain: images/train\n")
    (root / "images/val").rename(root / "images/later")  # no val entry and no val folder
    first = scan_detection(root, val_fraction=0.25, seed=3)
    again = scan_detection(root, val_fraction=0.25, seed=3)
    assert len(first.train) == 3 and len(first.val) == 1
    assert [s.path for s in first.val] == [s.path for s in again.val]
    assert first.val_source == "25% of images/train (seed 3)"


def test_yaml_file_path_list_file_and_sparse_ids(tmp_path):
    root = make_yolo(tmp_path / "d")
    (root / "train.txt").write_text("./images/train/a.jpg\nimages/train/b.png\n")
    for split, name in (("train", "a.jpg"), ("train", "b.png"), ("val", "e.png")):  # dog is id 5 here
        w, h, _, objects = {**TRAIN, **VAL}[name]
        lines = [_yolo_line(5 if c == 1 else 0, box, w, h) for c, *box in objects]
        (root / "labels" / split / Path(name).with_suffix(".txt")).write_text("\n".join(lines))
    (root / "my.yaml").write_text("path: .\nnames: {0: cat, 5: dog}\ntrain: train.txt\nval: images/val\n")
    ds = scan_detection(root / "my.yaml")
    assert ds.category_ids == [0, 5]
    assert [s.path.name for s in ds.train] == ["a.jpg", "b.png"]
    np.testing.assert_array_equal(ds.train[0].labels, [0, 1])


def _error(root: Path, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        scan_detection(root, **kwargs)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message
    return message


def test_yolo_label_mistakes_name_the_file_and_line(tmp_path):
    root = make_yolo(tmp_path / "d")
    label = root / "labels/train/a.txt"
    good = label.read_text()

    label.write_text(good + "0 0.9 0.5 0.5 0.2\n")
    assert _error(root) == (
        f"{label} line 3: box x 41.6..73.6, y 19.2..28.8 reaches outside the 64x48 image"
    )
    label.write_text(good + "0 300 200 50 40\n")
    assert _error(root).endswith("YOLO coordinates are normalized to 0-1, this line has 300")

    label.write_text(good + "2 0.5 0.5 0.2 0.2\n")
    assert _error(root) == f"{label} line 3: class id 2 out of range 0-1 (2 names in {root / 'data.yaml'})"

    label.write_text(good + "\n0 0.5 0.5 0.2\n")
    assert _error(root) == (
        f"{label} line 4: expected 'class cx cy w h' (class id, then box center and size normalized to 0-1), "
        "got '0 0.5 0.5 0.2'"
    )
    label.write_text("cat 0.5 0.5 0.2 0.2\n")
    assert "line 1: expected 'class cx cy w h'" in _error(root)
    label.write_text("0.5 0.5 0.5 0.2 0.2\n")
    assert _error(root).startswith(f"{label} line 1: class id must be a whole number, got '0.5'")


def test_small_overshoot_is_clipped_and_polygons_give_their_box(tmp_path):
    root = make_yolo(tmp_path / "d")
    (root / "labels/train/a.txt").write_text("0 0.5 0.5 1.03 1.0\n1 0.25 0.25 0.75 0.25 0.5 0.75\n")
    ds = scan_detection(root)
    (a,) = [s for s in ds.train if s.path.name == "a.jpg"]
    np.testing.assert_allclose(a.boxes, [[0, 0, 64, 48], [16, 12, 48, 36]], atol=1e-4)
    assert "boxes slightly over the image border, clipped: 1" in ds.notes


def test_yaml_and_folder_mistakes(tmp_path):
    root = make_yolo(tmp_path / "d", "train: images/train\nval: images/val\n")
    assert _error(root) == (
        f"{root / 'data.yaml'}: no 'names' (the class names, e.g. names: [cat, dog] or names: {{0: cat, 1: dog}})"
    )
    (root / "data.yaml").write_text("names: [cat, dog]\ntrain: images/train\nval: images/nope\n")
    assert _error(root) == f"{root / 'data.yaml'}: val folder not found: {root / 'images/nope'} (val: images/nope)"
    (root / "data.yaml").write_text("names: [cat, dog\n")
    assert _error(root).startswith(f"{root / 'data.yaml'} line 2: not valid YAML")

    root = make_yolo(tmp_path / "nolabels")
    for f in sorted((root / "labels").rglob("*.txt")):
        f.unlink()
    assert _error(root) == (
        f"no label files found for the images in {root / 'images/train'}: looked in {root / 'labels/train'} "
        "(each image's .txt, the last images/ folder of its path replaced by labels/)"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _error(empty).startswith(f"no detection dataset in {empty}: expected a YOLO data.yaml")
    assert _error(tmp_path / "missing") == f"dataset folder not found: {tmp_path / 'missing'}"


def test_coco_mistakes_name_the_file(tmp_path):
    root = make_coco(tmp_path / "c")
    ann_file = root / "annotations/instances_train2017.json"
    good = json.loads(ann_file.read_text())

    def edit(change) -> str:
        data = json.loads(json.dumps(good))
        change(data)
        ann_file.write_text(json.dumps(data))
        return _error(root)

    assert edit(lambda d: d["annotations"][0].update(image_id=99)) == (
        f"{ann_file}: annotation 100: image_id 99 is not in the file's images"
    )
    assert edit(lambda d: d["images"][1].update(file_name="gone.png")) == (
        f"{ann_file}: image 11 (gone.png) not found in {root / 'images/train2017'}"
    )
    assert edit(lambda d: d["annotations"][0].update(bbox=[30, 8, 50, 32])) == (
        f"{ann_file}: annotation 100 (image a.jpg): box x 30.0..80.0, y 8.0..40.0 reaches outside the 64x48 image"
    )
    assert edit(lambda d: d["annotations"][0].update(category_id=1)) == (
        f"{ann_file}: annotation 100: category_id 1 is not one of the categories (ids 3, 7)"
    )
    assert edit(lambda d: d["annotations"][0].update(bbox=[1, 2, 3])) == (
        f"{ann_file}: annotation 100: expected 'bbox': [x, y, width, height] in pixels, got [1, 2, 3]"
    )
    assert edit(lambda d: d["images"][0].update(width=100)) == (
        f"{ann_file}: image 10 (a.jpg) is 64x48, the annotations say 100x48"
    )


def test_coco_crowd_regions_are_not_targets(tmp_path):
    root = make_coco(tmp_path / "c")
    ann_file = root / "annotations/instances_train2017.json"
    data = json.loads(ann_file.read_text())
    data["annotations"][0]["iscrowd"] = 1
    ann_file.write_text(json.dumps(data))
    ds = scan_detection(root)
    (a,) = [s for s in ds.train if s.path.name == "a.jpg"]
    np.testing.assert_allclose(a.boxes, [[40, 10, 60, 30]])
    np.testing.assert_allclose(a.crowd_boxes, [[8, 8, 32, 40]])
    np.testing.assert_array_equal(a.crowd_labels, [0])
    assert "crowd regions (iscrowd 1), not training targets; evaluation ignores detections in them: 1" in ds.notes


def test_coco_without_val_json_holds_out_a_share(tmp_path):
    root = make_coco(tmp_path / "c")
    (root / "annotations/instances_val2017.json").unlink()
    ds = scan_detection(root, val_fraction=0.25, seed=0)
    assert len(ds.train) == 3 and len(ds.val) == 1
    assert ds.val_source == "25% of instances_train2017.json (seed 0)"


def test_unreadable_images_are_skipped_and_named(tmp_path):
    root = make_yolo(tmp_path / "d")
    broken = root / "images/train/broken.jpg"
    broken.write_bytes(b"not an image at all")
    truncated = root / "images/train/truncated.png"
    truncated.write_bytes((root / "images/train/b.png").read_bytes()[:12])  # signature, no header chunk
    ds = scan_detection(root)
    assert sorted(s.path.name for s in ds.train) == ["a.jpg", "b.png", "c.jpg", "d.png"]
    assert sorted(p.name for p, _ in ds.unreadable) == ["broken.jpg", "truncated.png"]
    (note,) = [n for n in ds.notes if n.startswith("skipped")]
    assert note.startswith("skipped 2 unreadable images (") and "broken.jpg: not an image" in note


def test_label_path_follows_the_images_to_labels_rule():
    assert label_path(Path("/d/images/train/x/a.jpg")) == Path("/d/labels/train/x/a.txt")
    assert label_path(Path("/images/d/images/a.b.png")) == Path("/images/d/labels/a.b.txt")
    assert label_path(Path("/d/train/a.jpg")) == Path("/d/train/a.txt")
