"""`visiontool stylize`: pictures the input's size, rows, error rows, ONNX parity without torch,
and the optimize method lowering its loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from visiontool import checkpoint, style_loss
from visiontool.cli.app import app
from visiontool.models.registry import STYLENET_PREPROCESS
from visiontool.models.stylenet import StyleNet
from visiontool.style_optimize import optimize
from visiontool.tasks.stylize import Stylize, preserve_color

runner = CliRunner()
SIZES = [(40, 30), (40, 30), (33, 21), (24, 52)]  # two alike (one batch), two odd ones


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny style network's checkpoint, its verified ONNX export, and a folder of images (one broken)."""
    from visiontool.export import ExportOptions, export

    root = tmp_path_factory.mktemp("stylize")
    torch.manual_seed(0)
    net = StyleNet(width=4, blocks=1)
    ckpt = checkpoint.save(root / "tiny.safetensors", net.state_dict(),
                           {"arch": "stylenet", "task": "stylize", "num_classes": 3, "labels": [],
                            "preprocess": STYLENET_PREPROCESS.to_dict(), "arch_kwargs": {"width": 4, "blocks": 1}})
    result = export(ExportOptions(model=str(ckpt), output=str(root / "tiny.onnx")))
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i, (w, h) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root, ckpt, result, images


def _run(args, out_dir):
    result = runner.invoke(app, ["stylize", *args, "--save-dir", str(out_dir), "-q"])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return result, rows


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float32)


def test_fast_paints_each_image_at_its_size_and_reports_the_broken_one(setup, tmp_path):
    root, ckpt, _, images = setup
    result, rows = _run([str(images), "--style", str(ckpt)], tmp_path / "a")
    assert result.exit_code == 3, result.output  # done, but one input was skipped
    assert [list(r) for r in rows] == [["path", "output", "width", "height", "error"]] * 5
    broken = next(r for r in rows if r["path"].endswith("broken.png"))
    assert broken["error"] and broken["output"] is None and broken["width"] is None
    good = [r for r in rows if r is not broken]
    for r, (w, h) in zip(good, SIZES):
        assert (r["width"], r["height"], r["error"]) == (w, h, None)
        assert Image.open(r["output"]).size == (w, h) and r["output"].endswith(os.path.basename(r["path"]))
    # Deterministic: the same pictures again, whatever the batch size.
    _, again = _run([str(images), "--style", str(ckpt), "--batch-size", "1"], tmp_path / "b")
    for a, b in zip(good, [r for r in again if not r["error"]]):
        assert np.array_equal(_pixels(a["output"]), _pixels(b["output"]))


def test_size_sets_the_shorter_side_and_strength_zero_gives_the_input(setup, tmp_path):
    _, ckpt, _, images = setup
    result, rows = _run([str(images / "im2.png"), str(images / "im3.png"), "--style", str(ckpt),
                         "--size", "16", "--strength", "0"], tmp_path)
    assert result.exit_code == 0, result.output
    assert [(r["width"], r["height"]) for r in rows] == [(25, 16), (16, 34)]  # rounded down, as torchvision
    original = np.asarray(Image.open(images / "im2.png").resize((25, 16), Image.Resampling.BILINEAR), np.float32)
    assert np.abs(_pixels(rows[0]["output"]) - original).max() <= 1


def test_onnx_export_matches_pytorch_and_runs_without_torch(setup, tmp_path):
    root, ckpt, exported, images = setup
    assert exported.verification.passed and exported.verification.max_abs_diff < 1 / 255
    _, torch_rows = _run([str(images), "--style", str(ckpt)], tmp_path / "torch")
    code = ("import sys; from visiontool.cli.app import main; sys.argv = ['visiontool', *sys.argv[1:]]\n"
            "try: main()\nexcept SystemExit as e: code = e.code or 0\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, "stylize", str(images), "--style", str(root / "tiny.onnx"),
                           "--save-dir", str(tmp_path / "onnx"), "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "NO-TORCH" in done.stderr, done.stderr
    onnx_rows = [json.loads(line) for line in done.stdout.splitlines()]
    for a, b in zip(torch_rows, onnx_rows):
        if a["error"]:
            continue
        diff = np.abs(_pixels(a["output"]) - _pixels(b["output"]))
        assert (diff <= 1).mean() >= 0.99, (a["path"], (diff <= 1).mean())


def test_verification_rule_is_99_percent_of_pixels_within_one_level():
    task = Stylize()
    base = np.random.default_rng(0).random((1, 3, 10, 10)).astype(np.float32)
    near, off = base.copy(), base.copy()
    near.reshape(-1)[:3] += 2 / 255  # 1 % of the 300 values
    off.reshape(-1)[:4] += 2 / 255  # more than 1 %
    assert task.compare([([base], [near], True)], None, "fp32", None)["passed"]
    assert not task.compare([([base], [off], True)], None, "fp32", None)["passed"]


def test_preserve_color_keeps_chroma_and_takes_luminance():
    rng = np.random.default_rng(0)
    content, painted = rng.uniform(0.3, 0.7, (2, 3, 6, 6)).astype(np.float32)
    out = preserve_color(painted, content)
    luma = lambda x: np.tensordot([0.299, 0.587, 0.114], x, axes=1)
    assert np.allclose(luma(out), luma(painted), atol=1e-6)
    assert np.allclose(out - luma(out), content - luma(content), atol=1e-6)  # same colour differences


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_optimize_lowers_its_loss_and_stays_in_range(solver, one_thread):
    torch.manual_seed(0)
    content = torch.rand(1, 3, 24, 32)
    style = torch.rand(1, 3, 20, 20).pow(2)  # darker, and of another texture
    loss = style_loss.Perceptual(style_loss.loss_network("random"), style, 1.0, 100.0, 0.1)
    before = float(loss(content, content).total)
    out = optimize(content, loss, 8, solver)
    after = loss(out, content)
    assert out.shape == content.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert float(after.total) < 0.7 * before and float(after.style) < float(loss(content, content).style)


def test_optimize_from_the_command_line(setup, tmp_path):
    _, _, _, images = setup
    style = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 80, (20, 20, 3), dtype=np.uint8)).save(style)
    result, rows = _run([str(images / "im2.png"), "--style", str(style), "--steps", "3", "--loss-net", "random"],
                        tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert rows[0]["width"] == 33 and Image.open(rows[0]["output"]).size == (33, 21)


@pytest.mark.parametrize("args, message", [
    (["--method", "fast", "--style", "STYLE"], "is an image: --method fast needs a style network"),
    (["--method", "optimize", "--style", "CKPT"], "--method optimize needs a style image"),
    (["--style", "missing.jpg"], "--style missing.jpg: no such file"),
    (["--style", "lenet5"], "is a classify model"),
    ([], "give the style as --style"),
])
def test_usage_errors(setup, tmp_path, args, message):
    _, ckpt, _, images = setup
    style = tmp_path / "style.png"
    Image.new("RGB", (8, 8)).save(style)
    args = [{"STYLE": str(style), "CKPT": str(ckpt)}.get(a, a) for a in args]
    result = runner.invoke(app, ["stylize", str(images / "im0.png"), *args, "--save-dir", str(tmp_path)])
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_library_call_takes_the_task_and_run_options(setup, tmp_path):
    import visiontool

    _, ckpt, _, images = setup
    rows = list(visiontool.stylize([str(images / "im0.png")], style=str(ckpt), save_dir=tmp_path, size=10,
                                   preserve_color=True, batch_size=2))
    assert rows == [{"path": str(images / "im0.png"), "output": str(tmp_path / "im0.png"), "width": 13,
                     "height": 10, "error": None}]
