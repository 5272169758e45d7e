"""`visiontool train` end to end on a tiny generated dataset: it learns, writes its run folder,
and its best checkpoint classifies as well as training said it would."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from train_shapes import CLASSES, make_dataset
from typer.testing import CliRunner

from visiontool.cli.app import app
from visiontool.train.config import TrainConfig
from visiontool.train.engine import train

EPOCHS = 6


pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real training run through the CLI, shared by the tests that inspect it."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("train")
    data = make_dataset(tmp / "data", train_per_class=24, val_per_class=8)
    (data / "train" / "disc" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 then nothing useful")
    (data / "val" / "square" / "empty.png").write_bytes(b"")
    out = tmp / "run"
    result = invoke(
        "train", str(data), "--model", "lenet5", "--epochs", str(EPOCHS), "--batch-size", "8",
        "--lr", "0.01", "--augment", "none", "--out", str(out), "--workers", "2",
    )
    return data, out, result


def _results(out: Path) -> list[dict]:
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def test_learns_a_separable_dataset(run):
    data, out, result = run
    assert result.exit_code == 0, result.output
    rows = _results(out)
    assert len(rows) == EPOCHS
    assert max(float(r["val_top1"]) for r in rows) >= 0.9
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert "warning: skipped 2 unreadable images" in result.stderr
    assert "best val top-1" in result.stderr and str(out / "best.safetensors") in result.stderr
    assert result.stdout == f"{out}\n"  # the run folder, one line, for scripts; all else on stderr


def test_run_folder_has_every_file_with_the_right_columns(run):
    data, out, result = run
    assert sorted(p.name for p in out.iterdir()) == [
        "best.safetensors", "command.txt", "config.json", "confusion.png", "curves.png",
        "last.safetensors", "results.csv", "state.pt",
    ]
    with open(out / "results.csv") as f:
        assert next(csv.reader(f)) == [
            "epoch", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "lr", "seconds"
        ]
    assert [int(r["epoch"]) for r in _results(out)] == list(range(1, EPOCHS + 1))
    assert (out / "command.txt").read_text() == (
        f"visiontool train {data} --model lenet5 --epochs {EPOCHS} --batch-size 8 --lr 0.01 "
        f"--augment none --output {out} --workers 2\n"  # --out: the earlier name of --output
    )
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "lenet5" and config["epochs"] == EPOCHS and config["lr"] == 0.01
    assert config["weight_decay"] == 0.05 and config["optimizer"] == "adamw"  # resolved defaults
    for png in ("curves.png", "confusion.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["epoch"] == EPOCHS and len(state["rows"]) == EPOCHS


def test_best_checkpoint_reproduces_the_reported_val_accuracy(run):
    data, out, _ = run
    from visiontool import checkpoint
    from visiontool.imageio import decode
    from visiontool.models import registry
    from visiontool.preprocess import Preprocess

    state, meta = checkpoint.load(out / "best.safetensors")
    assert meta["arch"] == "lenet5" and meta["task"] == "classify" and meta["labels"] == list(CLASSES)
    pp = Preprocess.from_dict(meta["preprocess"])
    assert (pp.crop, pp.resize, pp.channels) == (32, 32, 1)
    assert meta["train"]["command"].startswith("visiontool train")
    model = registry.build(meta["arch"], meta["num_classes"], **meta["arch_kwargs"])
    model.load_state_dict(state)
    model.eval()

    paths = sorted((data / "val").glob("*/*.png"))
    paths = [p for p in paths if p.stat().st_size]  # the empty file was skipped in training too
    x = torch.from_numpy(np.stack([pp(decode(p, pp.mode)) for p in paths]))
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
    truth = [meta["labels"].index(p.parent.name) for p in paths]
    top1 = np.mean(np.asarray(predicted) == np.asarray(truth))
    best = max(_results(out), key=lambda r: float(r["val_top1"]))
    assert top1 == pytest.approx(float(best["val_top1"]))
    assert meta["train"]["metrics"]["val_top1"] == pytest.approx(float(best["val_top1"]))

    # and the same through `visiontool classify`, as a user would run it
    rows_file = out.parent / "classified.jsonl"
    result = invoke("classify", str(data / "val"), "-r", "--model", str(out / "best.safetensors"),
                    "--quiet", "--output", str(rows_file))
    assert result.exit_code == 3  # the empty .png is listed, as an error row, not silently dropped
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert [r["error"] for r in rows if r["error"]] == ["empty file (0 bytes)"]
    scored = [r for r in rows if r["error"] is None]
    hits = [r["top"][0]["label"] == Path(r["path"]).parent.name for r in scored]
    assert len(scored) == len(paths) and np.mean(hits) == pytest.approx(float(best["val_top1"]))


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "error: dataset folder not found: {root}"),
        ("one-class", "error: only one class in {root}/train ('disc'): a classifier needs at least 2 class folders"),
        ("mismatch", "error: class folders differ between train/ and val/: only in train/: triangle"),
    ],
)
def test_dataset_errors_are_one_line_with_exit_code_2(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout == "one-class":
        make_dataset(root, 2, val_per_class=0, classes=("disc",))
    elif layout == "mismatch":
        make_dataset(root, 2, val_per_class=0)
        make_dataset(root, 0, val_per_class=2, classes=("disc", "square"))
    result = invoke("train", str(root), "--model", "lenet5", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert result.stderr.strip() == message.format(root=root)
    assert not (tmp_path / "run").exists()


def test_bad_options_are_usage_errors(tmp_path):
    data = make_dataset(tmp_path / "data", 2, val_per_class=0)
    result = invoke("train", str(data), "--model", "lenet5", "--optimizer", "lion")
    assert result.exit_code == 2
    assert "Invalid value for '--optimizer'" in result.stderr
    assert "'lion' is not one of 'sgd', 'adam', 'adamw', 'rmsprop'" in result.stderr
    result = invoke("train", str(data), "--model", "lenet5", "--pretrained", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: lenet5 has no pretrained weights: drop --pretrained to train it from scratch"
    result = invoke("train", str(data))
    assert result.stderr.strip().startswith("error: missing --model")
    result = invoke("train", str(data), "--model", "lenet5", "--image-size", "28", "--out", str(tmp_path / "r"), "-q")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: lenet5 cannot take 28x28 inputs (")
    assert result.stderr.strip().endswith("): choose another --image-size")
    assert not (tmp_path / "r").exists()


def test_split_patience_amp_and_policies(tmp_path):
    """No val folder (seeded split), early stopping, bf16 autocast and the augmentation policies."""
    data = make_dataset(tmp_path / "data", 10, val_per_class=0)
    base = TrainConfig(data=str(data), model="lenet5", batch_size=8, quiet=True, val_fraction=0.2)
    # A learning rate this small cannot improve val top-1 after the first epoch.
    r = train(TrainConfig(**{**base.__dict__, "epochs": 5, "patience": 1, "lr": 1e-9, "out": str(tmp_path / "p")}))
    assert r.stopped_early and r.epochs_done == 2 and r.best_epoch == 1
    assert len(_results(tmp_path / "p")) == 2
    for augment in ("randaugment", "trivialaugment", "light"):
        out = tmp_path / augment
        r = train(TrainConfig(**{**base.__dict__, "epochs": 1, "augment": augment, "amp": True, "out": str(out)}))
        assert r.epochs_done == 1 and len(_results(out)) == 1
        assert json.loads((out / "config.json").read_text())["augment"] == augment


def test_default_run_folder_is_numbered(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "data", 4, val_per_class=2)
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(data=str(data), model="lenet5", epochs=1, batch_size=4, quiet=True)
    assert train(cfg).run_dir == Path("runs/train/lenet5-1")
    assert train(cfg).run_dir == Path("runs/train/lenet5-2")
    result = invoke("train", str(data), "--model", "lenet5", "--out", "runs/train/lenet5-1")
    assert result.exit_code == 2 and "continue it with --resume runs/train/lenet5-1" in result.stderr


def test_help_documents_the_global_batch_and_defaults():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in ("the global batch", "64 (16 with --task detect) for train", "--resume", "--val-fraction", "trivialaugment",
                  "[default: adamw]", "[default: 10;", "[default: light]", "[default: cosine]"):
        assert words in text
