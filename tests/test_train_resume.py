"""`--resume`: an interrupted run continues to the very weights of an uninterrupted one, and a
finished run can be extended."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from train_shapes import make_dataset
from typer.testing import CliRunner

from visiontool import checkpoint
from visiontool.cli.app import app
from visiontool.train.config import TrainConfig
from visiontool.train.engine import resume, train


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("resume") / "data", train_per_class=8, val_per_class=3)


def _weights(run_dir, name="last.safetensors"):
    return checkpoint.load(run_dir / name)[0]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def _rows(run_dir):
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def test_interrupted_run_resumes_to_the_same_weights(data, tmp_path):
    # light augmentation, warm-up and cosine: every random draw and the schedule must line up
    cfg = TrainConfig(data=str(data), model="lenet5", epochs=4, batch_size=6, warmup_epochs=1,
                      augment="light", quiet=True)
    straight = train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "straight")}))

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "cut")}), on_epoch_end=stop_after_two)
    assert torch.load(tmp_path / "cut" / "state.pt", weights_only=True)["epoch"] == 2
    resumed = resume(tmp_path / "cut")
    assert resumed.epochs_done == 4
    _assert_same(_weights(tmp_path / "cut"), _weights(tmp_path / "straight"))
    assert [r["val_top1"] for r in _rows(tmp_path / "cut")] == [r["val_top1"] for r in _rows(tmp_path / "straight")]
    assert resumed.best_epoch == straight.best_epoch


def test_resume_with_more_epochs_through_the_cli(data, tmp_path):
    args = ["train", str(data), "--model", "lenet5", "--batch-size", "6", "--scheduler", "none",
            "--warmup-epochs", "0", "--quiet"]
    runner = CliRunner()
    assert runner.invoke(app, [*args, "--epochs", "4", "--out", str(tmp_path / "four")]).exit_code == 0
    assert runner.invoke(app, [*args, "--epochs", "2", "--out", str(tmp_path / "two")]).exit_code == 0
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "two"), "--epochs", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    _assert_same(_weights(tmp_path / "two"), _weights(tmp_path / "four"))
    assert len(_rows(tmp_path / "two")) == 4
    commands = (tmp_path / "two" / "command.txt").read_text().splitlines()
    assert commands[1] == f"visiontool train --resume {tmp_path / 'two'} --epochs 4 --quiet"

    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "two"), "--lr", "0.1"])
    assert result.exit_code == 2
    lr = json.loads((tmp_path / "two" / "config.json").read_text())["lr"]
    assert result.stderr.strip() == (
        f"error: cannot change when resuming: --lr 0.1 (the run has {lr}); "
        "only --epochs, --patience, --device, --workers, --quiet may change"
    )
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "two")])
    assert result.exit_code == 2
    assert "already trained 4 of 4 epochs: pass a larger --epochs" in result.stderr
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "nothing to resume in" in result.stderr


def test_resume_accepts_the_original_command_line(data, tmp_path):
    run = tmp_path / "run"
    original = ["train", str(data), "--model", "lenet5", "--batch-size", "6", "--scheduler", "none",
                "--warmup-epochs", "0", "--image-size", "32", "--output", str(run), "-q"]
    runner = CliRunner()
    assert runner.invoke(app, [*original, "--epochs", "1"]).exit_code == 0
    config = json.loads((run / "config.json").read_text())
    # the values the run used, not null and auto
    assert (config["image_size"], config["device"], config["amp"]) == (32, "cpu", False)
    assert isinstance(config["workers"], int) and config["workers"] >= 1

    result = runner.invoke(app, [*original, "--epochs", "2", "--resume", str(run), "--optimizer", "AdamW"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{run}\n" and len(_rows(run)) == 2

    result = runner.invoke(app, [*original[:3], "resnet18", *original[4:], "--batch-size", "8", "--epochs", "3",
                                 "--resume", str(run)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot change when resuming: --model resnet18 (the run has lenet5); "
                                    "--batch-size 8 (the run has 6)")
    result = runner.invoke(app, ["train", str(tmp_path), "--epochs", "3", "--resume", str(run)])
    assert result.exit_code == 2 and f"DATA {tmp_path} (the run has {data})" in result.stderr
