"""segment: masks back in the upright original pixels, the row and CSV schema, palette PNG masks,
overlays, error rows, the registry's segmentation models and ONNX parity without torch."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from visiontool import checkpoint, pipeline
from visiontool.cli.app import app
from visiontool.modelinfo import ModelInfo
from visiontool.models import registry
from visiontool.models.unet import ARCH, UNet
from visiontool.preprocess import Preprocess
from visiontool.tasks.segment import CSV_COLUMNS, MIN_PIXEL_AGREEMENT, Segment

runner = CliRunner()
LABELS = ["background", "cat", "dog"]
UPRIGHT = (200, 120)  # the test scene as seen upright: width, height
OBJECT = (30, 20, 110, 70)  # its white rectangle: x1, y1, x2, y2


TINY_PREPROCESS = Preprocess(crop=48, resize=48, fit="shorter")  # any fit works: this one resizes
TINY_WIDTHS = (4, 8)  # a UNet of a few hundred parameters


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random-weights UNet checkpoint (task "segment") and a few small images: two
    JPEGs of different shapes, one stored rotated with an EXIF orientation, and a broken file."""
    root = tmp_path_factory.mktemp("segment")
    torch.manual_seed(0)
    ckpt = root / "tiny.safetensors"
    checkpoint.save(ckpt, UNet(len(LABELS), widths=TINY_WIDTHS).state_dict(), {
        "arch": ARCH, "task": "segment", "num_classes": len(LABELS), "labels": LABELS,
        "preprocess": TINY_PREPROCESS.to_dict(), "arch_kwargs": {"widths": list(TINY_WIDTHS)}})
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in (("a.jpg", (64, 48)), ("b.png", (40, 56))):
        coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC).save(images / name)
    _scene(images / "c.jpg", 6)
    (images / "d.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    return ckpt, images


def _scene(path, orientation: int) -> None:
    """A dark 200x120 picture (as seen upright) with a white rectangle at OBJECT, stored
    rotated with an EXIF orientation tag that turns it upright again."""
    upright = Image.new("RGB", UPRIGHT, (20, 30, 40))
    upright.paste((255, 255, 255), OBJECT)
    stored = {1: upright, 6: upright.transpose(Image.Transpose.ROTATE_90),
              8: upright.transpose(Image.Transpose.ROTATE_270)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif, quality=95)


def _white_logits(batch):
    """A stand-in segmenter: class 1 where the input is bright, class 0 elsewhere."""
    x = np.stack(batch) if isinstance(batch, list) else np.asarray(batch)
    bright = x.mean(axis=1) > 0.5 * x.max()
    return [np.stack([~bright, bright], axis=1).astype(np.float32)]


def _mask(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"
        return np.asarray(image)


@pytest.mark.parametrize("orientation", [1, 6, 8])
@pytest.mark.parametrize("fit", ["shorter", "letterbox", "none", "crop"])
def test_masks_come_back_in_the_upright_original_pixels(tmp_path, orientation, fit):
    path = tmp_path / f"scene{orientation}.jpg"
    _scene(path, orientation)
    prep = Preprocess(crop=64, resize=64, fit=fit)
    info = ModelInfo("stand-in", "segment", ["background", "white"], prep)
    task = Segment(tmp_path / "out")
    task.check_model(info, "stand-in")
    rows = list(pipeline.run([str(path)], prep, _white_logits, lambda out, b: task.postprocess(out, b, info),
                             workers=0))
    row = rows[0]
    assert (row["width"], row["height"]) == UPRIGHT
    mask = _mask(row["mask"])
    assert mask.shape == UPRIGHT[::-1]
    truth = np.zeros(UPRIGHT[::-1], bool)
    x1, y1, x2, y2 = OBJECT
    truth[y1:y2, x1:x2] = True
    if fit == "crop":  # the centre crop sees x 40..160 of the image only
        truth, mask = truth[:, 45:155], mask[:, 45:155]
    iou = (truth & (mask == 1)).sum() / (truth | (mask == 1)).sum()
    assert iou > 0.9, iou
    share = round((mask == 1).mean(), 6) if fit != "crop" else None
    white = [c for c in row["classes"] if c["index"] == 1][0]
    assert white["label"] == "white" and (share is None or abs(white["fraction"] - share) < 1e-6)


def test_rows_masks_overlays_and_error_rows(tiny, tmp_path):
    ckpt, images = tiny
    rows_file, save = tmp_path / "rows.jsonl", tmp_path / "pictures"
    result = runner.invoke(app, ["segment", str(images), "-m", str(ckpt), "--save-dir", str(save),
                                 "-o", str(rows_file), "--workers", "0", "--alpha", "0.7"])
    assert result.exit_code == 3, result.output  # one broken file: done, but some inputs skipped
    rows = {r["path"].rsplit("/", 1)[1]: r for r in map(json.loads, rows_file.read_text().splitlines())}
    assert sorted(rows) == ["a.jpg", "b.png", "c.jpg", "d.jpg"]
    broken = rows.pop("d.jpg")
    assert broken == {"path": broken["path"], "width": None, "height": None, "mask": None, "classes": None,
                      "error": broken["error"]} and broken["error"]
    sizes = {"a.jpg": (64, 48), "b.png": (40, 56), "c.jpg": UPRIGHT}
    for name, row in rows.items():
        assert set(row) == {"path", "width", "height", "mask", "classes", "error", "overlay"}
        assert (row["width"], row["height"]) == sizes[name] and row["error"] is None
        mask = _mask(row["mask"])  # palette PNG of the class indices at the original size
        assert mask.shape == sizes[name][::-1] and mask.max() < len(LABELS)
        counts = np.bincount(mask.ravel(), minlength=len(LABELS))
        found = [(c["index"], c["label"], c["fraction"]) for c in row["classes"]]
        expected = sorted(((i, LABELS[i], round(int(n) / mask.size, 6)) for i, n in enumerate(counts) if n),
                          key=lambda t: -t[2])
        assert found == expected
        with Image.open(row["overlay"]) as overlay:
            assert overlay.size == sizes[name]
            assert overlay.format == ("JPEG" if name.endswith(".jpg") else "PNG")
    assert {p.name for p in save.iterdir()} == {"a_mask.png", "a_overlay.jpg", "b_mask.png", "b_overlay.png",
                                                "c_mask.png", "c_overlay.jpg"}
    # A random network still paints more than one class on these pictures: the check above is not empty.
    assert len({c["index"] for r in rows.values() for c in r["classes"]}) >= 2


def test_csv_and_the_default_mask_folder(tiny, tmp_path):
    ckpt, images = tiny
    out = tmp_path / "res.csv"
    result = runner.invoke(app, ["segment", str(images / "a.jpg"), str(images / "d.jpg"), "-m", str(ckpt),
                                 "-o", str(out), "--workers", "0", "--classes", "cat"])
    assert result.exit_code == 3, result.output
    folder = tmp_path / "res-masks"
    assert f"masks go to {folder}/" in result.stderr
    with open(out, newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert list(lines[0]) == CSV_COLUMNS and len(lines) == 2
    good, bad = lines
    assert good["mask"] == str(folder / "a_mask.png") and bad["mask"] == "" and bad["error"]
    pairs = [p.split(":") for p in good["classes"].split(";")]
    assert {label for label, _ in pairs} <= {"background", "cat"}  # --classes cat: the rest is background
    assert abs(sum(float(f) for _, f in pairs) - 1.0) < 1e-5
    assert set(np.unique(_mask(folder / "a_mask.png"))) <= {0, 1}
    assert [p.name for p in folder.iterdir()] == ["a_mask.png"]  # no overlays without --save-dir


@pytest.mark.parametrize("reading", [{}, {"scales": [0.5, 1.0, 1.5], "guided_filter": 4}])
def test_onnx_masks_agree_with_pytorch_without_importing_torch(tiny, tmp_path, reading):
    """With scales, the exported graph runs the model at each of them; with a guided filter, it
    filters the class probabilities (models/segmentation.py)."""
    ckpt, images = tiny
    if reading:
        tensors, meta = checkpoint.load(ckpt)
        ckpt = checkpoint.save(tmp_path / "read.safetensors", tensors, {**meta, **reading})
    onnx_file = tmp_path / "tiny.onnx"
    result = runner.invoke(app, ["export", str(ckpt), "-o", str(onnx_file), "--json"])
    assert result.exit_code == 0, result.output
    import onnxruntime

    from visiontool.backends.onnx_backend import read_info

    extra = read_info(onnxruntime.InferenceSession(str(onnx_file))).extra
    assert {k: extra[k] for k in ("scales", "guided_filter") if k in extra} == reading
    import visiontool

    paths = [str(images / n) for n in ("a.jpg", "b.png", "c.jpg")]
    torch_rows = list(visiontool.segment(paths, model=str(ckpt), save_dir=tmp_path / "torch", workers=0))
    check = json.loads(result.stdout)["verification"]
    assert check["passed"] and check["top1_agreement"] >= MIN_PIXEL_AGREEMENT
    assert "99.5%" in check["criterion"]
    code = ("import json, sys, visiontool; rows = list(visiontool.segment(sys.argv[3:], model=sys.argv[1], "
            "save_dir=sys.argv[2])); print(json.dumps([rows, 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code, str(onnx_file), str(tmp_path / "onnx"), *paths],
                         capture_output=True, text=True, check=True)
    onnx_rows, torch_imported = json.loads(out.stdout)
    assert not torch_imported
    for a, b in zip(torch_rows, onnx_rows):
        same = (_mask(a["mask"]) == _mask(b["mask"])).mean()
        assert same >= MIN_PIXEL_AGREEMENT, (a["path"], same)


def test_an_image_too_small_for_the_model_is_that_image_s_error_not_the_run_s(tiny, tmp_path):
    """A model that reads images at their own size, at 0.25x of them here: a 1-pixel image would
    scale to nothing."""
    ckpt, images = tiny
    tensors, meta = checkpoint.load(ckpt)
    as_is = {**meta["preprocess"], "fit": "none"}  # as `train --task segment` writes
    ckpt = checkpoint.save(tmp_path / "quarter.safetensors", tensors, {**meta, "preprocess": as_is, "scales": [0.25, 1.0]})
    Image.new("RGB", (1, 1), "white").save(tmp_path / "dot.png")
    Image.new("RGB", (4, 30), "white").save(tmp_path / "sliver.png")
    paths = [str(tmp_path / "dot.png"), str(images / "a.jpg"), str(tmp_path / "sliver.png")]
    result = runner.invoke(app, ["segment", *paths, "--model", str(ckpt), "--save-dir", str(tmp_path / "out")])
    assert result.exit_code == 3, result.output  # done, but an input skipped
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["error"] == ("image too small: 1 x 1 pixels; this model reads images at their own size and "
                                "needs at least 4 pixels a side")
    assert rows[1]["error"] is None and _mask(rows[1]["mask"]).shape == (48, 64)
    assert rows[2]["error"] is None and _mask(rows[2]["mask"]).shape == (30, 4)


def test_export_verification_fails_below_the_pixel_rule():
    rng = np.random.default_rng(0)
    want = rng.normal(size=(2, 3, 20, 20)).astype(np.float32)
    got = want.copy()
    flip = want.argmax(1) == 0
    flip[:, 3:] = False  # about 1/3 of the pixels of 3 rows in 20: 5% of them change class
    got[:, 0][flip] = -10
    judged = Segment().compare([([want], [got], True)], None, "fp32", None)
    assert not judged["passed"] and 0.9 < judged["top1_agreement"] < MIN_PIXEL_AGREEMENT
    assert Segment().compare([([want], [want.copy()], True)], None, "fp32", None)["passed"]


def test_registry_lists_torchvision_segmenters_with_their_preprocessing():
    from torchvision.models import get_model_weights

    result = runner.invoke(app, ["models", "--task", "segment", "--json"])
    assert result.exit_code == 0, result.output
    names = {r["name"] for r in json.loads(result.stdout)}
    assert {"fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
            "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "unet"} <= names
    spec = registry.get_spec("lraspp_mobilenet_v3_large")
    assert spec.task == "segment" and spec.labels[:2] == ("__background__", "aeroplane") and len(spec.labels) == 21
    assert spec.preprocess.fit == "shorter" and spec.preprocess.resize == 520
    # The same numbers as torchvision's own SemanticSegmentation transform on a PIL image.
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 70, 3), dtype=np.uint8))
    transform = get_model_weights("lraspp_mobilenet_v3_large").DEFAULT.transforms()
    ours = spec.preprocess.at_size(40)
    theirs = transform.__class__(resize_size=40)(image).numpy()
    assert np.array_equal(ours(image), theirs)


def test_weights_none_gives_logits_at_input_resolution_for_any_shape():
    from visiontool.models.loader import load_model

    loaded = load_model("lraspp_mobilenet_v3_large", "none")
    assert loaded.info.task == "segment" and loaded.info.weights_source == "random init"
    with torch.inference_mode():
        assert loaded.module(torch.rand(2, 3, 40, 56)).shape == (2, 21, 40, 56)
    # Images of different sizes in one batch: each its own logits, at its own size.
    from visiontool.backends.torch_backend import TorchBackend

    images = [np.random.rand(3, 40, 56).astype(np.float32), np.random.rand(3, 48, 40).astype(np.float32)]
    (logits,) = TorchBackend(loaded.module, "cpu")(images)
    assert [x.shape for x in logits] == [(21, 40, 56), (21, 48, 40)]


def test_class_map_is_numpys_argmax_ties_included():
    from visiontool.tasks.segment import class_map

    rng = np.random.default_rng(2)
    logits = rng.integers(0, 4, (5, 30, 40)).astype(np.float32)  # many ties: the lower class wins
    assert np.array_equal(class_map(logits), logits.argmax(0).astype(np.uint8))


def test_table_and_headline_name_the_classes_found():
    from rich.console import Console

    info = ModelInfo("unet", "segment", LABELS, TINY_PREPROCESS, "random init", {"name": "tiny"})
    found = [{"label": "background", "index": 0, "fraction": 0.7}, {"label": "dog", "index": 2, "fraction": 0.3}]
    rows = [{"path": "a.jpg", "width": 64, "height": 48, "mask": "out/a_mask.png", "classes": found, "error": None},
            {"path": "b.jpg", "width": None, "height": None, "mask": None, "classes": None, "error": "not an image"}]
    console = Console(width=120, record=True)
    console.print(Segment().table(rows, info))
    text = console.export_text()
    assert "background 70.0%, dog 30.0%" in text and "out/a_mask.png" in text and "not an image" in text
    assert Segment().headline(rows[0]) == "dog"  # the largest class besides the background
    assert Segment().headline({"classes": found[:1]}) == "background"


def test_a_resumed_run_gives_the_rows_and_mask_names_of_an_uninterrupted_one(tiny, tmp_path):
    ckpt, images = tiny
    folder = tmp_path / "in"
    for sub in ("x", "y"):  # two inputs with one stem: the second mask takes another name
        (folder / sub).mkdir(parents=True)
        (folder / sub / "a.jpg").write_bytes((images / "a.jpg").read_bytes())
    rows_file, save = tmp_path / "rows.jsonl", tmp_path / "masks"
    args = ["segment", str(folder), "-r", "-m", str(ckpt), "--save-dir", str(save), "-o", str(rows_file),
            "--workers", "0", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    whole = rows_file.read_text()
    first, second = (json.loads(line) for line in whole.splitlines())
    assert first["mask"] != second["mask"]
    masks = {p.name: p.read_bytes() for p in save.iterdir()}
    # As a run killed after its first row leaves it: that row in the partial file, its pictures.
    rows_file.unlink()
    (tmp_path / "rows.jsonl.partial").write_text(whole.splitlines(keepends=True)[0])
    for name in ("mask", "overlay"):
        Path(second[name]).unlink()
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert rows_file.read_text() == whole
    assert {p.name: p.read_bytes() for p in save.iterdir()} == masks
