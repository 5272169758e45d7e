"""`visiontool val`: scores a checkpoint on a labelled folder, and on a split dataset scores
exactly the images its training run held out."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from train_shapes import make_dataset, make_split
from typer.testing import CliRunner

from visiontool.cli.app import app
from visiontool.train.config import TrainConfig
from visiontool.train.engine import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("val")
    data = make_dataset(tmp / "data", train_per_class=15, val_per_class=0)  # no val/: seeded split
    out = tmp / "run"
    train(TrainConfig(data=str(data), model="lenet5", epochs=3, batch_size=8, lr=0.01, augment="none",
                      val_fraction=0.25, seed=7, out=str(out), quiet=True))
    yield data, out
    torch.set_num_threads(before)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_val_json_reproduces_training_on_the_held_out_split(trained):
    data, out = trained
    result = invoke("val", str(out / "best.safetensors"), str(data), "--json", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    with open(out / "results.csv") as f:
        best = max(csv.DictReader(f), key=lambda r: float(r["val_top1"]))
    assert report["images"] == 12  # 25% of 15 per class, 3 classes
    assert report["top1"] == pytest.approx(float(best["val_top1"]))
    assert report["top5"] == pytest.approx(float(best["val_top5"])) and report["top5_k"] == 3
    assert report["data"].endswith("25% of train/ (seed 7), held out in training")
    assert [c["label"] for c in report["per_class"]] == ["disc", "square", "triangle"]
    assert [c["images"] for c in report["per_class"]] == [4, 4, 4]
    counts = report["confusion"]["counts"]
    assert report["confusion"]["columns"] == ["disc", "square", "triangle"]
    assert sum(map(sum, counts)) == 12
    assert sum(counts[i][i] for i in range(3)) / 12 == pytest.approx(report["top1"])
    for i, c in enumerate(report["per_class"]):
        assert c["accuracy"] == pytest.approx(counts[i][i] / 4)


def test_val_on_a_folder_of_classes_prints_tables(trained, tmp_path):
    _, out = trained
    folder = make_split(tmp_path / "extra", 3, seed=11)
    result = CliRunner().invoke(app, ["val", str(out / "best.safetensors"), str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "9 images" in result.stdout and "top-1 " in result.stdout and "top-3 " in result.stdout
    assert "Per class" in result.stdout and "Confusion matrix" in result.stdout


def test_val_errors_and_skipped_images(trained, tmp_path):
    _, out = trained
    folder = make_split(tmp_path / "odd", 2, seed=3, classes=("disc", "square"))
    (folder / "hexagon").mkdir()
    (folder / "hexagon" / "h.png").write_bytes((folder / "disc" / "disc_000.png").read_bytes())
    result = invoke("val", str(out / "best.safetensors"), str(folder))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: classes in {folder} that {out / 'best.safetensors'} was not trained on: hexagon "
        "(it knows disc, square, triangle)"
    )
    (folder / "hexagon" / "h.png").unlink()
    (folder / "hexagon").rmdir()
    (folder / "square" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = invoke("val", str(out / "best.safetensors"), str(folder), "--json")
    assert result.exit_code == 3  # scored, but one image was skipped
    assert json.loads(result.stdout)["images"] == 4 and json.loads(result.stdout)["skipped"] == 1
    assert f"warning: skipped 1 unreadable image: {folder / 'square' / 'bad.png'}: truncated or corrupt" in result.stderr
    result = invoke("val", str(out / "best.safetensors"), str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and result.stderr.strip() == f"error: dataset folder not found: {tmp_path / 'nowhere'}"
