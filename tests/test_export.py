"""`visiontool export`: metadata round trip, verification, failure leaves no file, int8, fp16,
fixed and dynamic batch, unexportable operators, usage errors. All on a LeNet-5 checkpoint."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

from visiontool.cli.app import app

runner = CliRunner()
LABELS = ["circle", "square", "star", "wave"]


def write_checkpoint(path, seed: int = 0):
    import torch

    from visiontool import checkpoint
    from visiontool.models.lenet import LeNet5
    from visiontool.models.registry import LENET5_PREPROCESS

    torch.manual_seed(seed)
    net = LeNet5(num_classes=len(LABELS))
    checkpoint.save(path, net.state_dict(), {
        "arch": "lenet5", "task": "classify", "num_classes": len(LABELS), "labels": LABELS,
        "preprocess": LENET5_PREPROCESS.to_dict(), "arch_kwargs": {},
    })
    return path


def write_images(folder, n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = (rng.random((int(rng.integers(28, 60)), int(rng.integers(28, 60)))) * 60).astype(np.uint8)
        y, x = rng.integers(0, 20, 2)
        arr[y : y + 12, x : x + 12] = 255  # a bright patch somewhere: images differ visibly
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "shapes.safetensors")


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "shapes.onnx"
    result = runner.invoke(app, ["export", str(ckpt), "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def _meta(path) -> dict:
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(props["visiontool"])


def test_metadata_rebuilds_model_info(ckpt, exported):
    from visiontool.backends.onnx_backend import OnnxBackend
    from visiontool.models.loader import load_model

    path, _ = exported
    assert OnnxBackend(path, "cpu").info == load_model(str(ckpt)).info
    meta = _meta(path)
    assert meta["labels"] == LABELS and meta["task"] == "classify" and meta["arch"] == "lenet5"
    assert meta["preprocess"]["mean"] == [0.5] and meta["preprocess"]["crop"] == 32
    assert meta["input"] == {**meta["input"], "name": "images", "layout": "NCHW", "channel_order": "L",
                             "dtype": "float32", "shape": ["batch", 1, 32, 32]}
    assert meta["outputs"] == {"logits": "softmax over labels gives scores"}
    assert meta["precision"] == "fp32" and meta["exporter"] in ("dynamo", "torchscript")


def test_verification_figures_reported(exported):
    path, report = exported
    check = report["verification"]
    assert check["passed"] and check["precision"] == "fp32"
    assert check["batch_sizes"] == [1, 8] and check["images"] == 16
    assert check["max_abs_diff"] <= 1e-4 and check["top1_agreement"] == 1.0
    assert report["path"] == str(path) and path.stat().st_size == report["size_bytes"]


def test_dynamic_batch_matches_torch(ckpt, exported):
    from visiontool.backends.onnx_backend import OnnxBackend
    from visiontool.backends.torch_backend import TorchBackend
    from visiontool.models.loader import load_model

    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    want = TorchBackend(load_model(str(ckpt)).module, "cpu")(x)[0]
    session = OnnxBackend(exported[0], "cpu")
    assert np.abs(session(x[:1])[0] - want[:1]).max() <= 1e-4
    assert np.abs(session(x)[0] - want).max() <= 1e-4


def test_failed_verification_keeps_no_file(ckpt, tmp_path, monkeypatch):
    from visiontool.export import verify

    monkeypatch.setattr(verify, "FP32_MAX_ABS_DIFF", -1.0)  # nothing can pass
    out = tmp_path / "bad.onnx"
    result = runner.invoke(app, ["export", str(ckpt), "-o", str(out)])
    assert result.exit_code == 1
    assert "not written: onnxruntime disagrees with PyTorch" in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temp file


def test_int8_dynamic_reports_agreement(ckpt, tmp_path):
    out = tmp_path / "q.onnx"
    result = runner.invoke(app, ["export", str(ckpt), "--int8", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["precision"] == "int8-dynamic" and report["verification"]["precision"] == "int8"
    assert report["verification"]["top1_agreement"] >= 0.9
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"}
    assert _meta(out)["precision"] == "int8-dynamic"


def test_int8_static_with_calibration_folder_and_simplify(ckpt, tmp_path):
    calib = write_images(tmp_path / "calib", 12)
    out = tmp_path / "s.onnx"
    args = ["export", str(ckpt), "--int8", "--calibration", str(calib), "--simplify", "-o", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["precision"] == "int8-static"
    assert "calibrated on 12 images" in report["notes"][0] and "simplified with onnxslim" in result.stderr
    assert report["verification"]["images"] == 16 + 12  # generated images plus the real ones
    assert report["verification"]["top1_agreement"] >= 0.9
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_fp16_input_and_fixed_batch(ckpt, tmp_path):
    from visiontool.backends.onnx_backend import OnnxBackend

    out = tmp_path / "f.onnx"
    result = runner.invoke(app, ["export", str(ckpt), "--half", "--batch", "3", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    graph_input = onnx.load(str(out)).graph.input[0]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert graph_input.type.tensor_type.shape.dim[0].dim_value == 3
    assert json.loads(result.stdout)["verification"]["batch_sizes"] == [3]
    logits = OnnxBackend(out, "cpu")(np.zeros((3, 1, 32, 32), np.float32))[0]
    assert logits.dtype == np.float32 and logits.shape == (3, len(LABELS))

    # The fp16 threshold decides: agreement below it is a failed verification.
    from visiontool.export import verify
    from visiontool.models.loader import load_model

    loaded = load_model(str(ckpt))
    arrays = [loaded.info.preprocess(img) for img in verify.synthetic_images(4)]
    ok = verify.verify(out, loaded.module, loaded.info, arrays, "fp16", 3)
    assert ok.passed and ok.criterion == "fp16: top-1 agreement >= 99%"
    strict = verify.verify(out, loaded.module, loaded.info, arrays, "fp16", 3, min_agreement=1.01)
    assert not strict.passed and strict.top1_agreement == ok.top1_agreement


def test_dynamic_size_refused_for_fixed_size_model(ckpt, tmp_path):
    result = runner.invoke(app, ["export", str(ckpt), "--dynamic-size", "-o", str(tmp_path / "d.onnx")])
    assert result.exit_code == 1 and "--dynamic-size: lenet5 does not run at 64x64" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unexportable_operator_is_named():
    import torch

    from visiontool.export import ExportError, graph

    class Histogram(torch.nn.Module):
        def forward(self, x):
            return torch.histc(x, bins=4)[None].expand(x.shape[0], 4)

    with pytest.raises(ExportError, match=r"cannot export toy to ONNX: operator aten::histc is not supported"):
        graph.to_onnx(Histogram(), 1, 8, None, False, None, "toy", ["logits"])


@pytest.mark.parametrize("args, message", [
    (["--half", "--int8"], "--half and --int8 exclude each other"),
    (["--output", "model.txt"], "must end in .onnx"),
    (["--batch", "zero"], "--batch zero: use dynamic or a positive number"),
    (["--calibration", "."], "--calibration calibrates int8 quantization: add --int8"),
])
def test_usage_errors(ckpt, args, message):
    result = runner.invoke(app, ["export", str(ckpt), *args])
    assert result.exit_code == 2 and message in result.stderr


def test_simplify_without_onnxslim_is_a_clear_error(ckpt, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxslim", None)  # as if it were not installed
    result = runner.invoke(app, ["export", str(ckpt), "--simplify", "-o", str(tmp_path / "s.onnx")])
    assert result.exit_code == 2 and "--simplify needs onnxslim" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_old_opset_falls_back_to_torchscript_and_says_so(ckpt, tmp_path):
    out = tmp_path / "o13.onnx"
    result = runner.invoke(app, ["export", str(ckpt), "--opset", "13", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["exporter"] == "torchscript" and report["opset"] == 13
    assert "cannot write opset 13" in report["fallback_reason"]
    assert "with the torchscript exporter (torch.export failed:" in result.stderr
    assert _meta(out)["exporter"] == "torchscript" and report["verification"]["passed"]


def test_default_output_is_next_to_the_checkpoint_and_a_replaced_file_is_named(ckpt, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ckpt, run / "best.safetensors")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    first = runner.invoke(app, ["export", str(run / "best.safetensors"), "--no-verify"])
    assert first.exit_code == 0, first.output
    assert (run / "best.onnx").is_file() and list(here.iterdir()) == []
    assert f"wrote {run / 'best.onnx'} (" in first.stderr
    again = runner.invoke(app, ["export", str(run / "best.safetensors"), "--no-verify", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["replaced"] is True
    named = runner.invoke(app, ["export", "lenet5", "--no-verify"])  # a registry name: <name>.onnx here
    assert named.exit_code == 0, named.output
    assert (here / "lenet5.onnx").is_file() and "replacing" not in named.stderr
    replaced = runner.invoke(app, ["export", "lenet5", "--no-verify"])
    assert "wrote lenet5.onnx, replacing the file that was there (" in replaced.stderr
