"""Ctrl-C in a training run: before the first epoch ends, the folder it leaves is started over
by `--resume` and by a rerun with the same `--output` alike; after an epoch, the plots of the
finished epochs are written."""

from __future__ import annotations

import pytest
from train_shapes import make_dataset
from typer.testing import CliRunner

from visiontool.cli.app import app
from visiontool.train.classify import ClassifyTraining
from visiontool.train.config import TrainConfig
from visiontool.train.engine import train

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("interrupted") / "data", train_per_class=4, val_per_class=2)


def _args(data, run):
    return ["train", str(data), "--model", "lenet5", "--epochs", "1", "--batch-size", "4", "--image-size", "32",
            "--output", str(run), "-q"]


def _interrupt_in_the_first_epoch(data, run, monkeypatch):
    """A run stopped by Ctrl-C in the middle of its first epoch."""
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(ClassifyTraining, "loss", ctrl_c)
        result = runner.invoke(app, _args(data, run))
    assert result.exit_code != 0
    assert (f"interrupted in epoch 1; state.pt holds the run after epoch 0: continue with: "
            f"visiontool train --resume {run}") in result.stderr
    assert sorted(p.name for p in run.iterdir()) == ["command.txt", "config.json", "state.pt"]


def test_a_run_stopped_before_its_first_epoch_ended_can_be_resumed(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _interrupt_in_the_first_epoch(data, run, monkeypatch)
    result = runner.invoke(app, [*_args(data, run), "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{run}\n"
    assert (run / "results.csv").read_text().count("\n") == 2  # header and epoch 1
    assert (run / "best.safetensors").is_file() and (run / "state.pt").is_file()


def test_a_run_stopped_before_its_first_epoch_ended_can_be_rerun(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _interrupt_in_the_first_epoch(data, run, monkeypatch)
    result = runner.invoke(app, _args(data, run))
    assert result.exit_code == 0, result.output
    assert (run / "results.csv").read_text().count("\n") == 2
    assert (run / "command.txt").read_text().count("\n") == 1  # one run, started over

    # Now it holds a run: a rerun is sent to --resume, and --resume takes it.
    result = runner.invoke(app, _args(data, run))
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: run folder {run} holds a run: continue it with --resume {run}, "
                                     "or pick another --output")
    result = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2", "-q"])
    assert result.exit_code == 0, result.output


def test_neither_message_sends_the_user_to_the_other_in_vain(data, tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"not a run")
    result = runner.invoke(app, _args(data, foreign))
    assert result.exit_code == 2 and "--resume" not in result.stderr
    assert "holds no run to resume: pick another --output" in result.stderr
    result = runner.invoke(app, ["train", "--resume", str(foreign)])
    assert result.exit_code == 2 and "nothing to resume in" in result.stderr and "--output" not in result.stderr


def test_an_interrupted_run_keeps_the_plots_of_its_finished_epochs(data, tmp_path):
    def ctrl_c_after_epoch_one(row):
        raise KeyboardInterrupt

    cfg = TrainConfig(data=str(data), model="lenet5", epochs=3, batch_size=4, image_size=32, quiet=True,
                      out=str(tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_epoch_end=ctrl_c_after_epoch_one)
    for name in ("curves.png", "confusion.png"):
        assert (tmp_path / "run" / name).read_bytes()[:4] == b"\x89PNG", name
