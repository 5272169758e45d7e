"""`visiontool benchmark`: the JSON figures per backend, the model's parameters and GFLOPs,
and usage errors."""

from __future__ import annotations

import json

import pytest
from test_export import LABELS, write_checkpoint
from typer.testing import CliRunner

from visiontool.cli.app import app

runner = CliRunner()
# LeNet-5 on 32x32 with 4 classes, multiply-adds x2: C1 6*28*28*25, C3 16*10*10*150, then
# the three linear layers 400*120 + 120*84 + 84*4.
LENET_FLOPS = 2 * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * len(LABELS))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("bench") / "shapes.safetensors")


@pytest.fixture(scope="module")
def report(ckpt, tmp_path_factory):
    env = {"VISIONTOOL_CACHE": str(tmp_path_factory.mktemp("cache"))}
    args = ["benchmark", str(ckpt), "--backends", "torch", "ONNX", "onnx-int8", "--batch-size", "2",
            "--iterations", "3", "--warmup", "1", "--json"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_has_figures_for_each_backend(report):
    from visiontool.models.lenet import LeNet5

    assert report["arch"] == "lenet5" and report["input_shape"] == [2, 1, 32, 32]
    assert report["params"] == sum(p.numel() for p in LeNet5(num_classes=len(LABELS)).parameters())
    assert report["gflops"] == pytest.approx(LENET_FLOPS / 1e9, rel=1e-3)
    assert [r["backend"] for r in report["results"]] == ["torch", "onnx", "onnx-int8"]
    for r in report["results"]:
        assert r["error"] is None and r["images_per_s"] > 0
        assert 0 < r["latency_ms_p50"] <= r["latency_ms_p95"]
        assert r["peak_rss_mib"] > 50  # a Python process with onnxruntime loaded
    torch_row, onnx_row, int8_row = report["results"]
    assert torch_row["speedup"] == 1.0 and torch_row["file"] is None
    assert onnx_row["file"].endswith(".onnx") and int8_row["file"].endswith("-int8-static-generated.onnx")
    assert onnx_row["speedup"] == pytest.approx(onnx_row["images_per_s"] / torch_row["images_per_s"], rel=1e-2)


def test_onnx_file_alone(report):
    # The cached fp32 copy, benchmarked as a file: same parameter count, no GFLOPs (no torch model);
    # the backend follows from the file, no --backends needed.
    onnx_file = report["results"][1]["file"]
    result = runner.invoke(app, ["benchmark", onnx_file, "--batch-size", "3",
                                 "--iterations", "2", "--json"])
    assert result.exit_code == 0, result.output
    alone = json.loads(result.stdout)
    assert alone["params"] == report["params"] and alone["gflops"] is None
    assert alone["input_shape"] == [3, 1, 32, 32] and alone["results"][0]["images_per_s"] > 0


def test_table_on_terminal(report, ckpt):
    result = runner.invoke(app, ["benchmark", str(ckpt), "--backend", "torch", "--iterations", "2",
                                 "--batch-size", "1"], env={"COLUMNS": "120"})  # the earlier name still works
    assert result.exit_code == 0, result.output
    assert "lenet5: 0.06 M params" in result.stdout and "img/s" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--backends", "tensorrt"], "--backends tensorrt: unknown"),
    (["-b", "onnx", "--iterations", "0"], "--iterations"),
])
def test_usage_errors(ckpt, args, message):
    result = runner.invoke(app, ["benchmark", str(ckpt), *args])
    assert result.exit_code == 2 and message in result.output


def test_onnx_file_needs_onnx_backend(report):
    result = runner.invoke(app, ["benchmark", report["results"][1]["file"], "--backends", "torch"])
    assert result.exit_code == 2 and "only --backends onnx can run it" in result.stderr
