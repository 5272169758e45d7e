"""`train --task stylize`: a style network learns a style on tiny images; its run folder holds
results.csv with content, style and total loss, a contact sheet per epoch, checkpoints that load
as style networks, and it resumes to the very weights of an uninterrupted run."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from visiontool import checkpoint
from visiontool.cli.app import app
from visiontool.train.config import TrainConfig
from visiontool.train.engine import resume, train

pytestmark = pytest.mark.usefixtures("one_thread")

COLUMNS = ["epoch", "train_content", "train_style", "train_loss", "val_content", "val_style", "val_loss", "lr", "seconds"]


@pytest.fixture(scope="module")
def content(tmp_path_factory):
    """12 smooth random 40x40 pictures (2 are held out) and a striped 64x64 style image."""
    root = tmp_path_factory.mktemp("stylize")
    rng = np.random.default_rng(0)
    (root / "content").mkdir()
    for i in range(12):
        tiny = Image.fromarray(rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8))
        tiny.resize((40, 40), Image.Resampling.BICUBIC).save(root / "content" / f"{i:02d}.png")
    y, x = np.mgrid[0:64, 0:64]
    stripes = np.stack([(np.sin(x / 3) > 0) * 255, (np.sin(y / 2) > 0) * 200, np.full_like(x, 60)], -1)
    Image.fromarray(stripes.astype(np.uint8)).save(root / "style.png")
    return root


def _config(content, out, epochs=3) -> TrainConfig:
    return TrainConfig(task="stylize", data=str(content / "content"), style_image=str(content / "style.png"),
                       image_size=32, width=4, epochs=epochs, batch_size=2, lr=0.01, loss_net="random",
                       out=str(out), quiet=True)


@pytest.fixture(scope="module")
def run(content, tmp_path_factory):
    """One 3-epoch run, on one thread like the tests (a module fixture is made before theirs)."""
    out = tmp_path_factory.mktemp("run") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(_config(content, out)), out
    finally:
        torch.set_num_threads(before)


def _rows(run_dir):
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def test_the_style_loss_goes_down(run):
    result, out = run
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    train_loss = [float(r["train_loss"]) for r in rows]
    val_loss = [float(r["val_loss"]) for r in rows]
    assert train_loss[-1] < 0.7 * train_loss[0], train_loss
    assert min(val_loss[1:]) < 0.7 * val_loss[0], val_loss
    assert result.best_score == pytest.approx(-min(val_loss), rel=1e-5) and val_loss[result.best_epoch - 1] == min(val_loss)


def test_results_csv_has_content_style_and_total_loss(run):
    _, out = run
    with open(out / "results.csv") as f:
        assert next(csv.reader(f)) == COLUMNS
    for row in _rows(out):  # the total is the weighted sum (content 1, style 10, tv 0 by default)
        for split in ("train", "val"):
            total = float(row[f"{split}_content"]) + 10 * float(row[f"{split}_style"])
            assert float(row[f"{split}_loss"]) == pytest.approx(total, rel=1e-4)


def test_every_epoch_writes_a_contact_sheet_of_the_held_out_images(run):
    _, out = run
    sheets = sorted((out / "contact_sheets").iterdir())
    assert [p.name for p in sheets] == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    with Image.open(sheets[-1]) as sheet:
        width, height = sheet.size
    # three columns (the style image, two held-out images) over two rows (inputs, outputs)
    assert 3 * 160 < width < 3 * 170 and 2 * 160 < height < 2 * 160 + 60
    assert (out / "curves.png").is_file()


def test_the_checkpoint_is_a_style_network(run):
    from visiontool.models.loader import load_model

    _, out = run
    meta = checkpoint.read_meta(out / "best.safetensors")
    assert (meta["task"], meta["arch"], meta["arch_kwargs"], meta["loss_network"]) == ("stylize", "stylenet", {"width": 4}, "random")
    assert meta["style"]["image"] == "style.png" and len(meta["style"]["sha256"]) == 64
    loaded = load_model(str(out / "best.safetensors"))
    x = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        y = loaded.module(x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1 and (y - x).abs().mean() > 0.02


def test_an_interrupted_run_resumes_to_the_same_weights(content, run, tmp_path):
    _, straight = run

    def stop_after_one(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_config(content, tmp_path / "cut"), on_epoch_end=stop_after_one)
    resumed = resume(tmp_path / "cut")
    assert resumed.epochs_done == 3
    a, b = checkpoint.load(tmp_path / "cut" / "last.safetensors")[0], checkpoint.load(straight / "last.safetensors")[0]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert [r["val_loss"] for r in _rows(tmp_path / "cut")] == [r["val_loss"] for r in _rows(straight)]
    assert len(list((tmp_path / "cut" / "contact_sheets").iterdir())) == 3


def test_the_style_image_is_required_and_must_be_a_picture(content, tmp_path):
    base = ["train", "--task", "stylize", str(content / "content"), "--image-size", "32", "--width", "4", "-q"]
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "a")])
    assert result.exit_code == 2 and "needs --style-image IMAGE" in result.stderr
    (tmp_path / "notes.png").write_text("not a picture")
    result = CliRunner().invoke(app, [*base, "--style-image", str(tmp_path / "notes.png"), "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--style-image" in result.stderr and "notes.png" in result.stderr
    result = CliRunner().invoke(app, [*base, "--style-image", str(tmp_path / "missing.png"), "-o", str(tmp_path / "c")])
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_a_classifier_is_not_a_style_network(content, tmp_path):
    result = CliRunner().invoke(app, ["train", "--task", "stylize", str(content / "content"), "--model", "lenet5",
                                      "--style-image", str(content / "style.png"), "-o", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 2 and "not a style network architecture" in result.stderr


def test_the_checkpoint_is_a_style_for_stylize(run, content, tmp_path):
    import json

    _, out = run
    photo = content / "content" / "00.png"
    result = CliRunner().invoke(app, ["stylize", str(photo), "--style", str(out / "best.safetensors"),
                                      "--save-dir", str(tmp_path / "painted"), "-o", str(tmp_path / "rows.jsonl"), "-q"])
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "rows.jsonl").read_text())
    assert (row["width"], row["height"], row["error"]) == (40, 40, None)
    with Image.open(row["output"]) as painted:
        assert painted.size == (40, 40)
