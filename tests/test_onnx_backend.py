"""The onnx backend: an exported file alone reproduces PyTorch's rows, without importing torch;
`--backend onnx` exports a registry model or checkpoint to the cache once, announced."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from test_export import LABELS, write_checkpoint, write_images
from visiontool.cli.app import app

runner = CliRunner()

# Runs the CLI in a fresh interpreter, then fails if torch or torchvision was imported.
NO_TORCH = """
import sys
from visiontool.cli.app import main
sys.argv = ["visiontool", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code or 0
else:
    code = 0
loaded = sorted(m for m in ("torch", "torchvision", "cv2") if m in sys.modules)
print("IMPORTED:" + ",".join(loaded), file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint, images, and the checkpoint's ONNX copy made by `--backend onnx` on first use."""
    root = tmp_path_factory.mktemp("onnx_backend")
    ckpt = write_checkpoint(root / "shapes.safetensors", seed=3)
    images = write_images(root / "images", 5, seed=7)
    env = {"VISIONTOOL_CACHE": str(root / "cache")}
    first = runner.invoke(app, ["classify", str(images), "--model", str(ckpt), "--backend", "onnx", "-q"], env=env)
    assert first.exit_code == 0, first.output
    cached = list((root / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1, cached
    return ckpt, images, cached[0], first, env


def _rows(args, env=None) -> list[dict]:
    result = runner.invoke(app, ["classify", *args, "--top-k", "4", "-q"], env=env)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _run_no_torch(args, env=None):
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def _same_rows(a: list[dict], b: list[dict]) -> None:
    assert [r["path"] for r in a] == [r["path"] for r in b] and len(a) == 5
    for x, y in zip(a, b):
        assert [t["label"] for t in x["top"]] == [t["label"] for t in y["top"]]
        assert max(abs(s["score"] - t["score"]) for s, t in zip(x["top"], y["top"])) <= 1e-4


def test_onnx_file_reproduces_torch_rows(setup):
    ckpt, images, onnx_file, *_ = setup
    torch_rows = _rows([str(images), "--model", str(ckpt), "--backend", "torch"])
    onnx_rows = _rows([str(images), "--model", str(onnx_file)])
    _same_rows(torch_rows, onnx_rows)
    assert {t["label"] for r in onnx_rows for t in r["top"]} == set(LABELS)


def test_onnx_path_imports_no_torch(setup):
    _, images, onnx_file, *_ = setup
    one = sorted(images.iterdir())[0]
    done = _run_no_torch(["classify", str(one), "--model", str(onnx_file), "-q"])
    assert done.returncode == 0, done.stderr
    assert "IMPORTED:\n" in done.stderr + "\n"  # nothing from the list was imported
    row = json.loads(done.stdout)
    assert row["path"] == str(one) and row["top"][0]["label"] in LABELS and row["error"] is None


def test_backend_onnx_exports_to_cache_once(setup):
    ckpt, images, cached, first, env = setup
    assert "onnx backend: exporting" in first.stderr and str(cached) in first.stderr  # even with -q
    assert cached.name.startswith("shapes-DEFAULT-fp32-")
    _same_rows(_rows([str(images), "--model", str(ckpt), "--backend", "torch"]),
               [json.loads(line) for line in first.stdout.splitlines()])

    # Second run: the cached file is used, nothing is exported, and torch stays out.
    again = _run_no_torch(["classify", str(images), "--model", str(ckpt), "--backend", "onnx", "-q"], env)
    assert again.returncode == 0, again.stderr
    assert "exporting" not in again.stderr and "IMPORTED:\n" in again.stderr + "\n"
    assert [json.loads(line) for line in again.stdout.splitlines()] == [json.loads(line) for line in first.stdout.splitlines()]


def test_onnx_file_errors(setup, tmp_path):
    _, images, onnx_file, *_ = setup
    result = runner.invoke(app, ["classify", str(images), "--model", str(onnx_file), "--weights", "x.pth"])
    assert result.exit_code == 2 and "--weights does not apply to an .onnx file" in result.stderr
    result = runner.invoke(app, ["classify", str(images), "--model", str(onnx_file), "--backend", "torch"])
    assert result.exit_code == 2 and "it is an ONNX file" in result.stderr

    import onnx

    bare = onnx.load(str(onnx_file))
    del bare.metadata_props[:]  # an .onnx file from elsewhere: no labels, no preprocessing
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    result = runner.invoke(app, ["classify", str(images), "--model", str(tmp_path / "bare.onnx")])
    assert result.exit_code == 1 and "was not written by `visiontool export`" in result.stderr


def test_few_images_get_the_quick_graph_with_the_same_outputs(setup):
    """A run on a few images builds the cheaper graph, a larger run the fully optimized one;
    both give the same logits."""
    import numpy as np
    import onnxruntime as ort

    from visiontool.backends.onnx_backend import FAST_START_IMAGES, open_onnx

    _, _, onnx_file, *_ = setup
    full, info = open_onnx(str(onnx_file), device="cpu", images=FAST_START_IMAGES + 1)
    quick, _ = open_onnx(str(onnx_file), device="cpu", images=1)
    level = lambda b: b.session.get_session_options().graph_optimization_level  # noqa: E731
    assert level(full) == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert level(quick) == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    prep = info.preprocess
    x = np.random.default_rng(0).standard_normal((3, prep.channels, prep.crop, prep.crop)).astype(np.float32)
    np.testing.assert_allclose(quick(x), full(x), atol=1e-5)


@pytest.mark.parametrize("fixed", [1, 2])
def test_fixed_batch_graph_runs_any_batch_in_slices(setup, tmp_path, fixed):
    """A graph exported with a fixed batch (as torchvision's detectors are, at 1) takes the
    pipeline's larger batches, and a last short one, with the dynamic graph's outputs."""
    import numpy as np

    from visiontool.backends.onnx_backend import OnnxBackend

    ckpt, _, dynamic_file, *_ = setup
    out = tmp_path / f"batch{fixed}.onnx"
    result = runner.invoke(app, ["export", str(ckpt), "--batch", str(fixed), "--output", str(out), "-q"])
    assert result.exit_code == 0, result.output
    fixed_backend, dynamic = OnnxBackend(out, "cpu"), OnnxBackend(dynamic_file, "cpu")
    assert fixed_backend.fixed_batch == fixed and dynamic.fixed_batch is None
    prep = dynamic.info.preprocess
    x = np.random.default_rng(1).standard_normal((5, prep.channels, prep.crop, prep.crop)).astype(np.float32)
    got, want = fixed_backend(x), dynamic(x)
    assert [o.shape for o in got] == [o.shape for o in want] and got[0].shape[0] == 5
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
