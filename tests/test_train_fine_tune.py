"""`train --model CHECKPOINT` and `train --model SHIPPED-MODEL` fine-tune from those weights,
say so in one line when training starts, and `train --help` says so too."""

from __future__ import annotations

import pytest
import torch
from train_shapes import make_dataset
from typer.testing import CliRunner

from visiontool import checkpoint
from visiontool.cli.app import app
from visiontool.models import registry

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("fine-tune") / "data", train_per_class=4, val_per_class=2)


def _train(data, run, model, *more):
    # A learning rate too small to move anything: the run ends with the weights it started from.
    result = runner.invoke(app, ["train", str(data), "--model", model, "--epochs", "1", "--batch-size", "6",
                                 "--lr", "1e-12", "--weight-decay", "0", "--output", str(run), *more])
    assert result.exit_code == 0, result.output
    return result


def _same_weights(a: dict, b: dict, keys) -> None:
    for key in keys:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def _learned(weights: dict) -> list[str]:
    """The learned tensors (not batch-norm statistics, which follow the data even at lr 0)."""
    return [k for k in weights if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]


def test_a_checkpoint_is_fine_tuned_head_included(data, tmp_path):
    result = _train(data, tmp_path / "first", "lenet5", "--seed", "1")
    assert "fine-tuning" not in result.stderr  # an architecture starts from scratch
    start = tmp_path / "first" / "best.safetensors"
    result = _train(data, tmp_path / "again", str(start), "--seed", "2")
    assert f"fine-tuning from {start}, head included (3 classes)" in result.stderr.splitlines()
    before, after = checkpoint.load(start)[0], checkpoint.load(tmp_path / "again" / "best.safetensors")[0]
    _same_weights(before, after, _learned(before))


def test_a_shipped_model_is_fine_tuned_with_a_new_head(data, tmp_path):
    result = _train(data, tmp_path / "run", "lenet5-mnist")
    assert "fine-tuning from lenet5-mnist, with a new head for 3 classes" in result.stderr.splitlines()
    shipped = checkpoint.load(registry.get_spec("lenet5-mnist").shipped_file)[0]
    tuned = checkpoint.load(tmp_path / "run" / "best.safetensors")[0]
    changed = [k for k in shipped if shipped[k].shape != tuned[k].shape]
    assert changed and all(k.startswith("classifier") for k in changed), changed  # only the head is new
    _same_weights(shipped, tuned, [k for k in _learned(shipped) if k not in changed])


def test_a_plain_state_dict_is_named_for_what_it_is(data, tmp_path):
    from visiontool.models.lenet import LeNet5

    torch.save(LeNet5(10).state_dict(), tmp_path / "weights.pth")
    result = runner.invoke(app, ["train", str(data), "--model", str(tmp_path / "weights.pth")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'weights.pth'} records no architecture (not a checkpoint written by `train`): train "
        "starts from such a checkpoint, a shipped model, or an architecture name (with --pretrained for its "
        "published weights)")


def test_train_help_says_that_a_checkpoint_is_fine_tuned():
    text = " ".join(runner.invoke(app, ["train", "--help"]).stdout.split())
    assert "fine-tunes a checkpoint or a shipped model" in text


def test_the_shipped_detector_is_fine_tuned(tmp_path, digit_scenes):
    data = tmp_path / "scenes"
    digit_scenes.write_dataset(data, {"train": 4, "val": 2}, size=96, seed=5)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", "detect", str(data), "--model", "griddet-digits", "--epochs", "1",
                                 "--image-size", "96", "--batch-size", "4", "--lr", "1e-12", "--weight-decay", "0",
                                 "--output", str(run)])
    assert result.exit_code == 0, result.output
    assert "fine-tuning from griddet-digits, head included (10 classes)" in result.stderr.splitlines()
    shipped = checkpoint.load(registry.get_spec("griddet-digits").shipped_file)[0]
    tuned = checkpoint.load(run / "best.safetensors")[0]
    _same_weights(shipped, tuned, _learned(shipped))

    # A detection checkpoint of its own, and a file that is none
    start = run / "best.safetensors"
    again = runner.invoke(app, ["train", "--task", "detect", str(data), "--model", str(start), "--epochs", "1",
                                "--image-size", "96", "--batch-size", "4", "--output", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert f"fine-tuning from {start}, head included (10 classes)" in again.stderr.splitlines()
    (tmp_path / "notes.txt").write_text("not a model")
    wrong = runner.invoke(app, ["train", "--task", "detect", str(data), "--model", str(tmp_path / "notes.txt")])
    assert wrong.exit_code == 2 and "is a text file, not a model" in wrong.stderr
