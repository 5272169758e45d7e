"""`train DATA` on a plain folder of class folders: split with --val-fraction, as `val` takes
that layout, and `val` then scores the very images the run held out; DATA/train itself, next
to its val/, is refused with the folder to pass instead. The run's config.json holds the
values it used."""

from __future__ import annotations

import json

import pytest
from train_shapes import make_dataset, make_split
from typer.testing import CliRunner

from visiontool.errors import DatasetError
from visiontool.train import data

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def test_a_folder_of_class_folders_is_split_by_val_fraction(tmp_path):
    root = make_split(tmp_path / "shapes", per_class=10, seed=0)
    ds = data.scan_dataset(root, 0.3, seed=4)
    assert ds.classes == ["disc", "square", "triangle"]
    assert (len(ds.train.files), len(ds.val.files)) == (21, 9)
    assert not set(ds.train.files) & set(ds.val.files)
    assert ds.val_source == "30% of shapes/ (seed 4)"


def test_the_train_folder_of_a_dataset_with_val_names_the_dataset(tmp_path):
    root = make_dataset(tmp_path / "data", train_per_class=3, val_per_class=2)
    with pytest.raises(DatasetError) as info:
        data.scan_dataset(root / "train", 0.2, seed=0)
    assert str(info.value) == f"{root / 'train'} is the train/ folder of a dataset with val/: pass {root} as DATA"
    from visiontool.cli.app import app

    result = runner.invoke(app, ["train", str(root / "train"), "--model", "lenet5"])
    assert result.exit_code == 2 and f"pass {root} as DATA" in result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run on a plain folder, with only --model, --epochs, --batch-size and --val-fraction given."""
    from visiontool.cli.app import app

    tmp = tmp_path_factory.mktemp("plain")
    root = make_split(tmp / "shapes", per_class=6, seed=0)
    run = tmp / "run"
    result = runner.invoke(app, ["train", str(root), "--model", "lenet5", "--epochs", "1", "--batch-size", "6",
                                 "--val-fraction", "0.5", "--output", str(run)])
    assert result.exit_code == 0, result.output
    return root, run, result


def test_train_then_val_on_a_plain_folder(trained):
    from visiontool.cli.app import app

    root, run, result = trained
    assert "9 training images, 9 validation (50% of shapes/ (seed 0))" in result.stderr
    result = runner.invoke(app, ["val", str(run / "best.safetensors"), str(root), "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 9 and report["data"].endswith("50% of shapes/ (seed 0), held out in training")


def test_config_json_holds_the_values_the_run_used(trained):
    """Not null and auto: the image size, device, mixed precision and workers that were used."""
    import os

    _, run, _ = trained
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == 32  # lenet5's own
    assert (config["device"], config["amp"]) == ("cpu", False)
    assert config["workers"] == os.cpu_count()
    assert (config["batch_size"], config["model"], config["out"]) == (6, "lenet5", str(run))
    assert config["lr"] > 0 and config["weight_decay"] is not None
    # Every option that applies to classification is resolved (stylize's and segment's own are null).
    others = {"style_image", "content_weight", "style_weight", "tv_weight", "loss_net", "width", "scales", "guided_filter"}
    used = {k: v for k, v in config.items() if k not in others}
    assert None not in used.values() and "auto" not in used.values()
