"""`visiontool classify` end to end on a small checkpoint: rows, formats, errors, exit codes."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from visiontool.cli.app import app

runner = CliRunner()
LABELS = ["dark", "bright"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A LeNet-5 whose output is decided by brightness: the bias of the last layer is set so
    that class 'bright' wins for white images and 'dark' for black ones."""
    import torch

    from visiontool import checkpoint
    from visiontool.models import registry
    from visiontool.preprocess import Preprocess

    torch.manual_seed(0)
    net = registry.build("lenet5", num_classes=2)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for conv in (m for m in net.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight.fill_(0.1)
        linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        for lin in linears[:-1]:
            lin.weight.fill_(0.01)
        linears[-1].weight[1].fill_(1.0)
        linears[-1].weight[0].fill_(-1.0)
    prep = Preprocess(crop=32, resize=32, mean=(0.5,), std=(0.5,), channels=1)
    path = tmp_path_factory.mktemp("ckpt") / "bright.safetensors"
    checkpoint.save(path, net.state_dict(), {"format": 1, "arch": "lenet5", "task": "classify",
                                             "num_classes": 2, "labels": LABELS,
                                             "preprocess": prep.to_dict(), "arch_kwargs": {"in_channels": 1}})
    return path


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("L", (40, 30), 255).save(d / "a_white.png")
    Image.new("RGB", (20, 20), (0, 0, 0)).save(d / "b_black.jpg")
    (d / "c_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 10)
    return d


def test_rows_labels_and_exit_code_3_for_a_broken_file(ckpt, folder, tmp_path):
    out = tmp_path / "rows.jsonl"
    result = runner.invoke(app, ["classify", str(folder), "--model", str(ckpt), "--output", str(out), "--top-k", "2", "--quiet"])
    assert result.exit_code == 3, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["a_white.png", "b_black.jpg", "c_broken.jpg"]
    assert rows[0]["top"][0]["label"] == "bright" and rows[1]["top"][0]["label"] == "dark"
    assert rows[0]["error"] is None and len(rows[0]["top"]) == 2
    assert sum(t["score"] for t in rows[0]["top"]) == pytest.approx(1.0, abs=1e-5)
    assert rows[2]["error"] and rows[2]["top"] is None  # the same fields as every row
    assert list(rows[2]) == list(rows[0]) == ["path", "top", "error"]


def test_stdout_is_jsonl_when_not_a_terminal(ckpt, folder):
    result = runner.invoke(app, ["classify", str(folder / "a_white.png"), "--model", str(ckpt), "--quiet"])
    assert result.exit_code == 0
    row = json.loads(result.stdout.strip())
    assert row["top"][0] == {"label": "bright", "index": 1, "score": row["top"][0]["score"]}


def test_csv_output(ckpt, folder, tmp_path):
    out = tmp_path / "rows.csv"
    result = runner.invoke(app, ["classify", str(folder), "--model", str(ckpt), "-o", str(out), "--top-k", "1", "-q"])
    assert result.exit_code == 3
    table = list(csv.DictReader(out.open()))
    assert [r["label_1"] for r in table] == ["bright", "dark", ""]
    assert list(table[0]) == ["path", "label_1", "index_1", "score_1", "error"]


def test_missing_source_is_a_usage_error(ckpt, tmp_path):
    result = runner.invoke(app, ["classify", str(tmp_path / "nope"), "--model", str(ckpt)])
    assert result.exit_code == 2


def test_unknown_output_format_fails_before_any_work(ckpt, folder, tmp_path):
    result = runner.invoke(app, ["classify", str(folder), "--model", str(ckpt), "-o", str(tmp_path / "x.txt")])
    assert result.exit_code == 2
    assert not (tmp_path / "x.txt").exists()


@pytest.fixture()
def many(tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(27):  # more than a table holds
        Image.new("L", (8, 8), 255 if i % 2 else 0).save(d / f"{i:02d}.png")
    return d


def test_quiet_on_a_terminal_still_prints_every_result(ckpt, many, monkeypatch):
    from visiontool.cli import runner as cli_runner

    monkeypatch.setattr(cli_runner, "stdout_is_terminal", lambda: True)
    result = runner.invoke(app, ["classify", str(many), "--model", str(ckpt), "-q", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 27
    assert [r["top"][0]["label"] for r in rows[:2]] == ["dark", "bright"]
    assert result.stderr == ""  # quiet: no summary, no notes


def test_quiet_on_a_terminal_with_a_few_images_prints_the_table(ckpt, folder, monkeypatch):
    from visiontool.cli import runner as cli_runner

    monkeypatch.setattr(cli_runner, "stdout_is_terminal", lambda: True)
    result = runner.invoke(app, ["classify", str(folder / "a_white.png"), str(folder / "b_black.jpg"),
                                 "--model", str(ckpt), "-q"])
    assert result.exit_code == 0, result.output
    assert "a_white.png" in result.stdout and "bright" in result.stdout and "dark" in result.stdout
