"""detect: boxes back in original pixels, the row and CSV schema, --classes, pictures, COCO
results, training on YOLO and COCO datasets, val's COCOeval and ONNX parity."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

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
