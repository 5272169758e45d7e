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


KILL_ARGS = ["--model", "lenet5", "--batch-size", "6", "--epochs", "3", "--quiet"]


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """An uninterrupted run with KILL_ARGS."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert CliRunner().invoke(app, ["train", str(data), *KILL_ARGS, "--out", str(run)]).exit_code == 0
    return run


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


def test_sigkill_at_a_random_moment_leaves_a_run_that_resumes_to_the_same_weights(data, straight, tmp_path):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import numpy as np

    root = Path(__file__).resolve().parent.parent
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "visiontool", "train", str(data), *KILL_ARGS, "--out", str(cut)],
                            cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stderr=subprocess.PIPE)
    while not (cut / "state.pt").exists() and proc.poll() is None:  # written before the first step
        time.sleep(0.01)
    started = time.monotonic()
    while not (cut / "results.csv").exists() and proc.poll() is None:  # the first epoch has ended
        time.sleep(0.005)
    # Somewhere in the second epoch, timed by this run's own first epoch (the machine's load varies).
    time.sleep(np.random.default_rng(3).uniform(0.1, 0.6) * (time.monotonic() - started))
    assert proc.poll() is None, "the run ended before the kill"
    proc.kill()
    proc.wait()
    assert torch.load(cut / "state.pt", weights_only=True)["epoch"] < 3
    result = CliRunner().invoke(app, ["train", "--resume", str(cut), "--quiet"])
    assert result.exit_code == 0, result.output
    _assert_same(_weights(cut), _weights(straight))
    assert [r["val_top1"] for r in _rows(cut)] == [r["val_top1"] for r in _rows(straight)]


def test_ctrl_c_ends_the_step_saves_it_and_resumes_to_the_same_weights(data, straight, tmp_path, monkeypatch):
    import os
    import signal

    from visiontool.train import rundir

    run, real_save = tmp_path / "run", rundir.save_epoch

    def save_then_ctrl_c(*args, **kwargs):  # a real SIGINT while epoch 1 is being saved: none of epoch 2 is done
        real_save(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(rundir, "save_epoch", save_then_ctrl_c)
    result = CliRunner().invoke(app, ["train", str(data), *KILL_ARGS[:-1], "--out", str(run)])
    monkeypatch.undo()
    assert result.exit_code == 130
    state = torch.load(run / "state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 1) and (run / "last.safetensors").exists()  # epoch 2's step 1 kept
    assert result.stderr.strip().splitlines()[-1] == (
        f"warning: interrupted in epoch {state['epoch'] + 1} after step {state['step']} of 4; state.pt holds the run "
        f"up to there: continue with: visiontool train --resume {run}")
    assert CliRunner().invoke(app, ["train", "--resume", str(run), "--quiet"]).exit_code == 0
    _assert_same(_weights(run), _weights(straight))
    assert [r["val_top1"] for r in _rows(run)] == [r["val_top1"] for r in _rows(straight)]


def test_a_full_disk_while_saving_a_checkpoint_is_one_error_and_the_run_resumes(data, tmp_path, monkeypatch):
    import errno

    from visiontool.train import rundir

    real, calls = rundir.torch.save, []

    def full_disk(obj, path):
        calls.append(path)
        if len(calls) == 3:  # state.pt after epoch 2 (the first call is the run's start)
            with open(path, "wb") as f:
                f.write(b"half a state")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(obj, path)

    monkeypatch.setattr(rundir.torch, "save", full_disk)
    run = tmp_path / "run"
    args = ["train", str(data), "--model", "lenet5", "--batch-size", "6", "--scheduler", "none", "--warmup-epochs",
            "0", "--quiet"]
    result = CliRunner().invoke(app, [*args, "--epochs", "3", "--out", str(run)])
    monkeypatch.undo()
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write {calls[2]}: No space left on device; state.pt holds the run after epoch 1: "
        f"free space, then continue with: visiontool train --resume {run}"]
    assert sorted(p.name for p in run.iterdir()) == ["best.safetensors", "command.txt", "config.json",
                                                     "last.safetensors", "results.csv", "state.pt"]  # no temp file
    assert torch.load(run / "state.pt", weights_only=True)["epoch"] == 1
    assert CliRunner().invoke(app, ["train", "--resume", str(run), "--quiet"]).exit_code == 0
    assert len(_rows(run)) == 3


def test_a_run_folder_killed_before_its_first_state_resumes_from_the_start(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(data), "--model", "lenet5", "--batch-size", "6", "--epochs", "1", "--quiet"]
    assert CliRunner().invoke(app, [*args, "--out", str(run)]).exit_code == 0
    want = _weights(run)
    for name in ("state.pt", "command.txt", "last.safetensors", "best.safetensors", "results.csv"):
        (run / name).unlink()  # as a kill right after config.json (the first file written) leaves it
    result = CliRunner().invoke(app, ["train", "--resume", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    _assert_same(_weights(run), want)
