"""`visiontool models` and `visiontool weights`: tables, JSON, exit codes; `--help` stays torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from visiontool.cli.app import app

runner = CliRunner()
WIDE = {"COLUMNS": "160"}


@pytest.fixture(autouse=True)
def user_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONTOOL_WEIGHTS_DIR", str(tmp_path / "user-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("VISIONTOOL_OFFLINE", raising=False)
    return tmp_path / "user-weights"


def _line(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if f" {name} " in line)


def test_models_table_shows_parameters_and_input_size():
    result = runner.invoke(app, ["models"], env=WIDE)
    assert result.exit_code == 0, result.output
    resnet = _line(result.stdout, "resnet18")
    assert "11.7M" in resnet and "224" in resnet and "IMAGENET1K_V1" in resnet and " no " in resnet
    lenet = _line(result.stdout, "lenet5")
    assert "61.7k" in lenet and "32" in lenet and "random init" in lenet


def test_models_json_and_pattern(user_weights):
    user_weights.mkdir()
    (user_weights / "resnet18-f37072fd.pth").write_bytes(b"stand-in")  # only its presence is listed
    result = runner.invoke(app, ["models", "--json", "--task", "classify", "resnet1*"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert sorted(rows) == ["resnet101", "resnet152", "resnet18"]
    r18 = rows["resnet18"]
    assert (r18["params"], r18["input_size"], r18["weights"], r18["local"]) == (11689512, 224, ["IMAGENET1K_V1"], True)
    assert rows["resnet101"]["local"] is False and rows["resnet101"]["default_weights"] == "IMAGENET1K_V2"
    lenet = json.loads(runner.invoke(app, ["models", "--json", "lenet5"]).stdout)
    assert lenet[0]["params"] == 61706 and lenet[0]["local"] is None


def test_models_bad_task_and_empty_pattern_are_usage_errors():
    result = runner.invoke(app, ["models", "--task", "painting"])
    assert result.exit_code == 2 and "'painting' is not one of 'classify', 'detect'" in result.stderr
    result = runner.invoke(app, ["models", "--task", "Detect", "--json", "fasterrcnn*"])  # any case
    assert result.exit_code == 0 and {r["task"] for r in json.loads(result.stdout)} == {"detect"}
    result = runner.invoke(app, ["models", "nothing-like-this"])
    assert result.exit_code == 2 and "no model matches 'nothing-like-this'" in result.stderr


def test_weights_list_and_path(user_weights):
    result = runner.invoke(app, ["weights", "list", "--json", "resnet50*"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["name"], r["default"], r["present"]) for r in rows] == [
        ("resnet50.IMAGENET1K_V1", False, False), ("resnet50.IMAGENET1K_V2", True, False)]
    assert rows[0]["file"] == "resnet50-0676ba61.pth"

    missing = runner.invoke(app, ["weights", "path", "resnet50.IMAGENET1K_V1"])
    assert missing.exit_code == 1
    assert "resnet50-0676ba61.pth" in missing.stderr and "https://download.pytorch.org/models/" in missing.stderr
    assert str(user_weights) in missing.stderr

    user_weights.mkdir()
    (user_weights / "resnet50-0676ba61.pth").write_bytes(b"stand-in")
    found = runner.invoke(app, ["weights", "path", "resnet50.imagenet1k_v1"])
    assert found.exit_code == 0 and found.stdout.strip() == str(user_weights / "resnet50-0676ba61.pth")
    listed = json.loads(runner.invoke(app, ["weights", "list", "--json", "resnet50*"]).stdout)
    assert [r["present"] for r in listed] == [True, False]


def test_weights_pull_resolves_online(monkeypatch, tmp_path):
    from visiontool import weights

    calls = []

    def fake_resolve(arch, name, offline=False, quiet=False):
        calls.append((arch, name, offline, quiet))
        return tmp_path / "got.pth"

    monkeypatch.setattr(weights, "resolve", fake_resolve)
    result = runner.invoke(app, ["weights", "pull", "resnet50", "--quiet"])
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "got.pth")
    assert calls == [("resnet50", "IMAGENET1K_V2", False, True)]  # DEFAULT of resnet50 is V2
    assert runner.invoke(app, ["weights", "pull", "resnet50.IMAGENET1K_V1"]).exit_code == 0
    assert calls[-1] == ("resnet50", "IMAGENET1K_V1", False, False)


@pytest.mark.parametrize("name, message", [("resnet50.V7", "unknown weights 'V7' for resnet50"),
                                           ("resnt50", "did you mean resnet50"),
                                           ("lenet5", "lenet5 has no published weights")])
def test_weights_bad_names(name, message):
    result = runner.invoke(app, ["weights", "path", name])
    assert result.exit_code == 2 and message in result.stderr


_PROBE = """
import sys
from visiontool.cli.app import app
try:
    app(args=sys.argv[1:], prog_name="visiontool")
except SystemExit:
    pass
print("HEAVY", sorted(m for m in ("torch", "torchvision", "cv2") if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["models", "--help"], ["weights", "--help"],
                                  ["weights", "list", "--help"], ["weights", "pull", "--help"]])
def test_help_imports_no_torch(args):
    out = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parent)
    assert "Usage" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []", out.stdout + out.stderr


def test_models_lists_torchvision_detectors_with_the_classifier_columns():
    result = runner.invoke(app, ["models", "--json", "--task", "detect", "fasterrcnn*"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn"} <= set(rows)
    small = rows["fasterrcnn_mobilenet_v3_large_320_fpn"]
    assert small["task"] == "detect" and small["input_size"] == 320  # the shorter side it resizes to
    assert small["params"] == 19386354 and small["default_weights"] == "COCO_V1"
    assert set(small) == set(json.loads(runner.invoke(app, ["models", "--json", "resnet18"]).stdout)[0])
