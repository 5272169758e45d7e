"""detect: boxes back in original pixels, the row and CSV schema, --classes, pictures, COCO
results, training on YOLO and COCO datasets, val's COCOeval and ONNX parity."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import visiontool
from visiontool import pipeline
from visiontool.cli.app import app
from visiontool.errors import UsageError
from visiontool.modelinfo import ModelInfo
from visiontool.preprocess import Preprocess
from visiontool.tasks.detect import CSV_COLUMNS, Detect, wanted_classes

runner = CliRunner()
LABELS = ["zero", "one", "two"]
# The white object's box in the upright picture, which is 200 wide and 120 tall.
UPRIGHT = (200, 120)
OBJECT = (30.0, 20.0, 110.0, 70.0)


def _scene(path, orientation: int) -> None:
    """A dark 200x120 picture (as seen upright) with a white rectangle at OBJECT, stored
    rotated with an EXIF orientation tag that turns it upright again."""
    upright = Image.new("RGB", UPRIGHT, (20, 30, 40))
    x1, y1, x2, y2 = (int(v) for v in OBJECT)
    upright.paste((255, 255, 255), (x1, y1, x2, y2))
    stored = {1: upright, 6: upright.transpose(Image.Transpose.ROTATE_90), 8: upright.transpose(Image.Transpose.ROTATE_270),
              3: upright.transpose(Image.Transpose.ROTATE_180)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif, quality=95)


class WhiteFinder:
    """A stand-in detector: the box around the bright pixels of each input, in input pixels,
    in the (boxes, scores, labels) form of torchvision's detectors behind their adapter."""

    def __call__(self, batch):
        images = batch if isinstance(batch, list) else list(batch)
        boxes, scores, labels = [], [], []
        for x in images:
            ys, xs = np.nonzero(np.asarray(x).mean(axis=0) > 0.5 * np.asarray(x).max())
            boxes.append([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]])
            scores.append([0.9])
            labels.append([1])
        return [np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(labels, np.int64)]


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("fit,tolerance", [("none", 0.01), ("letterbox", 200 / 64)])
def test_boxes_come_back_in_the_upright_original_pixels(tmp_path, orientation, fit, tolerance):
    path = tmp_path / f"scene{orientation}.jpg"
    _scene(path, orientation)
    pp = Preprocess(crop=64, resize=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fit=fit)
    info = ModelInfo("finder", "detect", LABELS, pp)
    task = Detect(conf=0.5)
    task.check_model(info, "finder")
    (row,) = pipeline.run([str(path)], pp, WhiteFinder(), lambda out, b: task.postprocess(out, b, info), workers=1)
    assert (row["width"], row["height"]) == UPRIGHT
    (found,) = row["detections"]
    assert found["label"] == "one" and found["index"] == 1 and found["score"] == 0.9
    # JPEG blurs the edge by a pixel; a 64 px letterbox is 200/64 original pixels per input pixel.
    assert np.abs(np.asarray(found["box"]) - OBJECT).max() <= tolerance + 1.0


def test_csv_has_one_line_per_detection_and_one_for_an_empty_image():
    task = Detect()
    rows = [
        {"path": "a.jpg", "width": 64, "height": 48, "detections": [
            {"box": [1.0, 2.0, 3.0, 4.0], "label": "cat", "index": 17, "score": 0.9},
            {"box": [5.0, 6.0, 7.0, 8.0], "label": "dog", "index": 18, "score": 0.5}], "error": None},
        {"path": "b.jpg", "width": 10, "height": 10, "detections": [], "error": None},
        {"path": "c.jpg", "error": "truncated or corrupt image data"},
    ]
    lines = [line for row in rows for line in task.csv_rows(row)]
    assert task.csv_columns() == CSV_COLUMNS == ["path", "width", "height", "det", "x1", "y1", "x2", "y2",
                                                  "label", "index", "score", "error"]
    assert [list(line) for line in lines] == [CSV_COLUMNS] * 4
    assert [(l["path"], l["det"], l["x1"], l["label"], l["score"]) for l in lines] == [
        ("a.jpg", 0, 1.0, "cat", 0.9), ("a.jpg", 1, 5.0, "dog", 0.5), ("b.jpg", "", "", "", ""), ("c.jpg", "", "", "", "")]
    assert lines[3]["error"] == "truncated or corrupt image data"


def test_classes_by_name_or_index_and_a_wrong_one_named():
    labels = ["__background__", "person", "bicycle", "car"]
    assert wanted_classes(["person,3"], labels) == {1, 3}
    assert wanted_classes(None, labels) is None
    with pytest.raises(UsageError, match="--classes plane: not a class of this model .its classes: person, bicycle, car"):
        wanted_classes(["plane"], labels)


def test_option_errors_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="--save-crops writes into --save-dir"):
        Detect(save_crops=True)
    with pytest.raises(UsageError, match="out.txt: the file name must end in .json"):
        Detect(coco_json=tmp_path / "out.txt")


def test_mask_rcnn_masks_become_coco_rle_in_original_pixels(tmp_path):
    from pycocotools import mask as coco_mask

    path = tmp_path / "scene.jpg"
    _scene(path, 1)

    class WithMasks(WhiteFinder):
        def __call__(self, batch):
            boxes, scores, labels = super().__call__(batch)
            x = np.asarray(batch[0] if isinstance(batch, list) else batch[0])
            masks = (x.mean(axis=0) > 0.5 * x.max()).astype(np.float32)[None, None]
            # a second, weaker detection first in the model's order: rows sort by score
            return [np.concatenate([boxes, boxes], 1), np.asarray([[0.3, 0.9]], np.float32),
                    np.asarray([[2, 1]]), np.concatenate([np.zeros_like(masks), masks], 1)]

    pp = Preprocess(crop=0, resize=0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fit="none")
    info = ModelInfo("finder", "detect", LABELS, pp)
    task = Detect(conf=0.5)
    task.check_model(info, "finder")
    (row,) = pipeline.run([str(path)], pp, WithMasks(), lambda out, b: task.postprocess(out, b, info), workers=1)
    (found,) = row["detections"]
    mask = coco_mask.decode({"size": found["mask"]["size"], "counts": found["mask"]["counts"].encode()})
    assert mask.shape == (UPRIGHT[1], UPRIGHT[0])
    ys, xs = np.nonzero(mask)
    assert np.abs(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) - OBJECT).max() <= 1


def test_annotated_image_has_the_box_drawn_where_it_is(tmp_path):
    from visiontool.render import class_colors

    path = tmp_path / "scene.png"
    upright = Image.new("RGB", UPRIGHT, (20, 30, 40))
    upright.paste((255, 255, 255), tuple(int(v) for v in OBJECT))
    upright.save(path)
    pp = Preprocess(crop=0, resize=0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fit="none")
    info = ModelInfo("finder", "detect", LABELS, pp)
    task = Detect(conf=0.5, save_dir=tmp_path / "out", save_crops=True)
    task.check_model(info, "finder")

    def post(outputs, batch):
        rows = task.postprocess(outputs, batch, info)
        for p, row, image in zip(batch.paths, rows, batch.originals):
            task.save(p, row, image)
        return rows

    (row,) = pipeline.run([str(path)], pp, WhiteFinder(), post, workers=1, keep_images=True)
    drawn = np.asarray(Image.open(tmp_path / "out" / "scene.png").convert("RGB")).astype(int)
    colour = class_colors(2)[1]
    x1, y1, x2, y2 = (int(v) for v in OBJECT)
    # The left and bottom edges carry the class colour; the middle of the object and the
    # background far from it are untouched.
    assert np.abs(drawn[(y1 + y2) // 2, x1] - colour).max() <= 2
    assert np.abs(drawn[y2 - 1, (x1 + x2) // 2] - colour).max() <= 2
    assert drawn[(y1 + y2) // 2, (x1 + x2) // 2].tolist() == [255, 255, 255]
    assert drawn[UPRIGHT[1] - 5, UPRIGHT[0] - 5].tolist() == [20, 30, 40]
    crop = Image.open(tmp_path / "out" / "crops" / "one" / "scene_0.jpg")
    assert crop.size == (x2 - x1, y2 - y1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digit_scenes):
    """A GridDet trained for two epochs on 24 small scenes (YOLO layout), plus its data."""
    root = tmp_path_factory.mktemp("detect")
    data = root / "scenes"
    digit_scenes.write_dataset(data, {"train": 24, "val": 8}, size=128, seed=3)
    result = runner.invoke(app, ["train", "--task", "detect", str(data), "--epochs", "2", "--image-size", "128",
                                 "--batch-size", "8", "--no-flip", "--out", str(root / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return data, root / "run"


def test_training_writes_a_detection_run_folder(trained):
    data, run = trained
    with open(run / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_loss", "train_box", "train_cls", "val_map50", "val_map", "lr", "seconds"]
    assert len(rows) == 2 and float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    for name in ("best.safetensors", "last.safetensors", "curves.png", "pr_curves.png", "val_predictions.png"):
        assert (run / name).stat().st_size > 0
    from visiontool import checkpoint

    meta = checkpoint.read_meta(run / "best.safetensors")
    assert meta["task"] == "detect" and meta["labels"] == [str(d) for d in range(10)]
    assert meta["preprocess"]["fit"] == "letterbox" and meta["preprocess"]["crop"] == 128


def test_val_reports_cocoeval_of_the_best_epoch(trained):
    data, run = trained
    result = runner.invoke(app, ["val", str(run / "best.safetensors"), str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    best = max(float(r["val_map"]) for r in csv.DictReader(open(run / "results.csv")))
    assert report["images"] == 8 and abs(report["map"] - best) < 1e-6
    assert {c["label"] for c in report["per_class"]} <= {str(d) for d in range(10)}
    assert len(report["cocoeval"]) == 12
    # The checkpoint records its epoch's best-F1 threshold, which detect then uses by default.
    from visiontool import checkpoint

    conf = checkpoint.read_meta(run / "best.safetensors")["conf"]
    assert conf == pytest.approx(report["best_f1"]["conf"], abs=1e-4) and 0 < conf < 1
    images = sorted(str(p) for p in (data / "images" / "val").iterdir())
    default = list(visiontool.detect(images, model=str(run / "best.safetensors")))
    explicit = list(visiontool.detect(images, model=str(run / "best.safetensors"), conf=conf))
    assert default == explicit and all(d["score"] >= conf for r in default for d in r["detections"])


def test_coco_layout_trains_too(tmp_path, digit_scenes):
    data = tmp_path / "coco"
    digit_scenes.write_dataset(data, {"train": 8, "val": 4}, size=96, seed=4, formats=("coco",))
    result = runner.invoke(app, ["train", "--task", "detect", str(data), "--epochs", "1", "--image-size", "96",
                                 "--batch-size", "4", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    scored = runner.invoke(app, ["val", str(tmp_path / "run" / "best.safetensors"), str(data), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["data"] == f"{data} (instances_val.json)"


def test_onnx_export_gives_the_same_boxes_without_torch(trained, tmp_path):
    import subprocess
    import sys

    data, run = trained
    onnx_file = tmp_path / "det.onnx"
    result = runner.invoke(app, ["export", str(run / "best.safetensors"), "-o", str(onnx_file), "--json"])
    assert result.exit_code == 0, result.output
    check = json.loads(result.stdout)["verification"]
    assert check["passed"] and check["top1_agreement"] == 1.0
    images = sorted(str(p) for p in (data / "images" / "val").iterdir())
    code = ("import json, sys, visiontool; rows = list(visiontool.detect(sys.argv[2:], model=sys.argv[1], conf=0.01));"
            "print(json.dumps([rows, 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code, str(onnx_file), *images], capture_output=True, text=True, check=True)
    onnx_rows, torch_imported = json.loads(out.stdout)
    assert not torch_imported
    import visiontool

    torch_rows = list(visiontool.detect(images, model=str(run / "best.safetensors"), conf=0.01))
    assert sum(len(r["detections"]) for r in torch_rows) > 0
    for a, b in zip(torch_rows, onnx_rows):
        assert [d["label"] for d in a["detections"]] == [d["label"] for d in b["detections"]]
        for d, e in zip(a["detections"], b["detections"]):
            assert np.abs(np.subtract(d["box"], e["box"])).max() <= 1.0 and abs(d["score"] - e["score"]) <= 1e-3


def test_an_interrupted_detection_run_resumes(trained, tmp_path):
    import shutil

    data, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = runner.invoke(app, ["train", "--resume", str(copy), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(copy / "results.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and (copy / "pr_curves.png").is_file()


def test_coco_results_use_the_datasets_ids_and_a_failed_run_leaves_nothing(tmp_path):
    from visiontool.tasks.detect import CocoResults

    folder = tmp_path / "images" / "val"
    folder.mkdir(parents=True)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(
        {"images": [{"id": 42, "file_name": "a.jpg", "width": 10, "height": 10}],
         "categories": [{"id": 7, "name": "one"}], "annotations": []}))
    found = [{"box": [1.0, 2.0, 4.0, 8.0], "label": "one", "index": 1, "score": 0.5}]
    results = CocoResults(tmp_path / "out.json")
    results.add(str(folder / "a.jpg"), found)
    results.add(str(tmp_path / "elsewhere.jpg"), found)
    results.close(ok=True)
    assert json.loads((tmp_path / "out.json").read_text()) == [
        {"image_id": 42, "category_id": 7, "bbox": [1.0, 2.0, 3.0, 6.0], "score": 0.5},
        {"image_id": 2, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 6.0], "score": 0.5}]
    failed = CocoResults(tmp_path / "failed.json")
    failed.close(ok=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations", "images", "out.json"]


def test_a_torchvision_detector_trains_from_scratch_and_its_checkpoint_detects(tmp_path, digit_scenes):
    data = tmp_path / "scenes"
    digit_scenes.write_dataset(data, {"train": 4, "val": 2}, size=96, seed=5)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", "detect", str(data), "--model", "fasterrcnn_mobilenet_v3_large_320_fpn",
                                 "--epochs", "1", "--image-size", "96", "--batch-size", "4", "--output", str(run), "-q"])
    assert result.exit_code == 0, result.output
    with open(run / "results.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["train_loss"]) > 0 and 0.0 <= float(row["val_map50"]) <= 1.0
    from visiontool import checkpoint

    meta = checkpoint.read_meta(run / "best.safetensors")
    assert meta["arch"] == "fasterrcnn_mobilenet_v3_large_320_fpn"
    assert meta["labels"] == ["__background__", *(str(d) for d in range(10))]
    assert meta["arch_kwargs"] == {"min_size": 96, "max_size": 96}
    images = sorted(str(p) for p in (data / "images" / "val").iterdir())
    rows = list(visiontool.detect(images, model=str(run / "best.safetensors"), conf=0.0, max_det=5))
    assert [r["error"] for r in rows] == [None] * 2
    assert all(d["label"] in meta["labels"][1:] and len(d["box"]) == 4 for r in rows for d in r["detections"])
