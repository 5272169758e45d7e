"""Model files handed over by someone else: damaged, inconsistent or malicious checkpoints and
ONNX files each give one line and exit 1; nothing in them runs, nothing outside their folder is read."""

from __future__ import annotations

import json
import os
import struct

import pytest
from PIL import Image
from typer.testing import CliRunner

from tiny_onnx import write_tiny_onnx
from visiontool.cli.app import app

LABELS = list("abcd")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import torch

    from visiontool import checkpoint
    from visiontool.models.lenet import LeNet5
    from visiontool.models.registry import LENET5_PREPROCESS

    d = tmp_path_factory.mktemp("models")
    Image.new("L", (28, 28), 90).save(d / "img.png")
    meta = {"arch": "lenet5", "task": "classify", "num_classes": 4, "labels": LABELS,
            "preprocess": LENET5_PREPROCESS.to_dict(), "arch_kwargs": {}}
    torch.manual_seed(0)
    checkpoint.save(d / "good.safetensors", LeNet5(num_classes=4).state_dict(), meta)
    data = (d / "good.safetensors").read_bytes()
    (d / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (d / "huge_header.safetensors").write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    (d / "bad_header.safetensors").write_bytes(struct.pack("<Q", 20) + b"{not json at all!!!}")
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])

    def with_meta(name, value):
        h = {**header, "__metadata__": {**header["__metadata__"], "visiontool": value}}
        raw = json.dumps(h).encode()
        raw += b" " * (-len(raw) % 8)
        (d / name).write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])

    with_meta("meta_not_json.safetensors", "{arch: lenet5")
    with_meta("meta_lacks_arch.safetensors", json.dumps({"format": 1, "task": "classify"}))
    checkpoint.save(d / "seven_classes.safetensors", LeNet5(num_classes=7).state_dict(), meta)
    wrong = LeNet5(num_classes=4).state_dict()
    first = next(iter(wrong))
    wrong[first] = torch.zeros(3, *wrong[first].shape[1:])
    checkpoint.save(d / "wrong_shape.safetensors", wrong, meta)

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {d / 'pwned'}",))

    torch.save({"conv.weight": torch.zeros(2), "x": RunsCode()}, d / "evil.pth")

    import onnx

    write_tiny_onnx(d / "meta_fields.onnx", {"preprocess": {"crop": "x"}})
    model = onnx.load(str(write_tiny_onnx(d / "meta_not_json.onnx")))
    next(p for p in model.metadata_props if p.key == "visiontool").value = "{broken json"
    onnx.save(model, str(d / "meta_not_json.onnx"))
    model = onnx.load(str(write_tiny_onnx(d / "escape.onnx")))
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../../secret.bin"), ("offset", "0"), ("length", "16384")):
        weight.external_data.add(key=key, value=value)
    onnx.save(model, str(d / "escape.onnx"))
    (d.parent / "secret.bin").write_bytes(b"\0" * 16384)  # what the location points at, if it were followed
    (d / "not_onnx.onnx").write_bytes(b"\x08\x07this is not a model" * 10)
    return d


CASES = [
    ("truncated.safetensors", "is corrupt or truncated"),
    ("huge_header.safetensors", "is not a valid safetensors file (its header claims 1,152,921,504,606,846,976 bytes"),
    ("bad_header.safetensors", "is not a valid safetensors file (its header is not a JSON object)"),
    ("meta_not_json.safetensors", "has unreadable 'visiontool' metadata"),
    ("meta_lacks_arch.safetensors", "has incomplete metadata (KeyError: 'arch')"),
    ("seven_classes.safetensors", "does not hold together: its weights give 7 classes, its metadata 4 with 4 labels"),
    ("wrong_shape.safetensors", "does not fit lenet5: features.0.weight is [3, 1, 5, 5] in the file but [6, 1, 5, 5]"),
    ("meta_fields.onnx", "'visiontool' metadata is damaged"),
    ("meta_not_json.onnx", "'visiontool' metadata is damaged (JSONDecodeError"),
    ("escape.onnx", "escapes model directory"),
    ("not_onnx.onnx", "onnxruntime cannot load it"),
]


@pytest.mark.parametrize("name, message", CASES)
def test_a_damaged_model_file_is_one_line_and_exit_1(folder, name, message):
    result = CliRunner().invoke(app, ["classify", str(folder / "img.png"), "-m", str(folder / name), "-q"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in result.output and result.stdout == ""


def test_the_good_file_they_were_made_from_works(folder):
    result = CliRunner().invoke(app, ["classify", str(folder / "img.png"), "-m", str(folder / "good.safetensors"), "-q"])
    assert result.exit_code == 0 and json.loads(result.stdout)["top"][0]["label"] in LABELS


def test_a_pickle_that_would_run_code_is_refused_without_running_it(folder):
    result = CliRunner().invoke(app, ["classify", str(folder / "img.png"), "-m", "lenet5", "--weights",
                                      str(folder / "evil.pth"), "-q"])
    assert result.exit_code == 1 and "refused to unpickle" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (folder / "pwned").exists()
