"""The shipped LeNet-5: present, matching its model card, and right on the sample digits."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from typer.testing import CliRunner

from visiontool.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "weights" / "lenet5-mnist.safetensors"


def test_model_card_records_the_shipped_file_hash():
    card = (ROOT / "weights" / "README.md").read_text()
    recorded = re.search(r"sha256\*\*: `([0-9a-f]{64})`", card).group(1)
    assert hashlib.sha256(SHIPPED.read_bytes()).hexdigest() == recorded


def test_lenet5_mnist_reads_every_sample_digit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found by name from any folder
    digits = sorted((ROOT / "samples" / "digits").glob("*.png"))
    assert len(digits) == 10
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(app, ["classify", *map(str, digits), "--model", "lenet5-mnist", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    truth = [Path(r["path"]).name.split("_")[0] for r in rows]
    assert [r["top"][0]["label"] for r in rows] == truth
    assert min(r["top"][0]["score"] for r in rows) > 0.5


def test_models_lists_the_shipped_model_as_present():
    result = CliRunner().invoke(app, ["models", "lenet5", "--json"])
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert entries["lenet5-mnist"]["local"] is True or entries["lenet5-mnist"]["local"] == "yes"
