"""A file of the wrong kind, given as --weights or --model, gets one line saying what it is and
what to pass instead (exit 2), not a loader's internal error."""

from __future__ import annotations

import pytest
from PIL import Image
from typer.testing import CliRunner

from visiontool.cli.app import app

runner = CliRunner()


@pytest.fixture()
def files(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "coffee.jpg")
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.csv").write_text("epoch,train_loss,val_top1\n1,0.9,0.5\n")
    (tmp_path / "notes.txt").write_text("lenet5, trained on digits\n")
    return tmp_path


def _classify(files, *args):
    result = runner.invoke(app, ["classify", str(files / "coffee.jpg"), "-q", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    return lines[0]


def test_metrics_table_as_weights(files):
    line = _classify(files, "--model", "lenet5", "--weights", str(files / "run" / "results.csv"))
    assert "is a training run's table of metrics, not weights" in line
    assert f"--model {files / 'run' / 'best.safetensors'}" in line


@pytest.mark.parametrize("name, kind", [("coffee.jpg", "a JPEG image"), ("notes.txt", "a text file")])
def test_image_or_text_as_weights(files, name, kind):
    line = _classify(files, "--model", "lenet5", "--weights", str(files / name))
    assert line.startswith(f"error: {files / name} is {kind}, not weights: ")
    assert "could run code" not in line and "--weights" in line


@pytest.mark.parametrize("spelling", ["path", "bare name"])
def test_image_as_model(files, monkeypatch, spelling):
    monkeypatch.chdir(files)
    model = str(files / "coffee.jpg") if spelling == "path" else "coffee.jpg"
    line = _classify(files, "--model", model)
    assert f"{model} is a JPEG image, not a model: images are the inputs" in line
    assert f"--weights {model}" not in line


def test_training_state_as_weights(files):
    import torch

    from visiontool.models import registry

    net = registry.build("lenet5", num_classes=6)
    torch.save({"model": net.state_dict(), "optimizer": {}, "epoch": 1, "rows": []}, files / "run" / "state.pt")
    line = _classify(files, "--model", "lenet5", "--weights", str(files / "run" / "state.pt"))
    assert "is the training state that `train --resume` reads, not weights" in line
    assert f"--model {files / 'run' / 'best.safetensors'}" in line
