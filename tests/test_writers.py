"""Row writers: the three formats carry the same rows, and a failed run leaves no file."""

from __future__ import annotations

import csv
import json

import pytest

from visiontool.errors import UsageError
from visiontool.tasks.classify import flatten, top_k_rows
from visiontool.writers import RowWriter

ROWS = [
    {"path": "a.jpg", "top": [{"label": "cat", "index": 1, "score": 0.9}, {"label": "dog", "index": 0, "score": 0.1}], "error": None},
    {"path": "b.jpg", "error": "truncated or corrupt image data"},
]


def _write(path, rows):
    with RowWriter(path, lambda r: flatten(r, 2)) as w:
        for r in rows:
            w.write(r)


def test_jsonl_json_csv_hold_the_same_rows(tmp_path):
    _write(tmp_path / "o.jsonl", ROWS)
    _write(tmp_path / "o.json", ROWS)
    _write(tmp_path / "o.csv", ROWS)
    lines = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert lines == ROWS
    assert json.loads((tmp_path / "o.json").read_text()) == ROWS
    table = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert table[0]["label_1"] == "cat" and float(table[0]["score_2"]) == 0.1
    assert table[1]["error"] == "truncated or corrupt image data" and table[1]["label_1"] == ""


def test_empty_json_is_an_empty_list(tmp_path):
    _write(tmp_path / "o.json", [])
    assert json.loads((tmp_path / "o.json").read_text()) == []


def test_failed_run_leaves_no_file_and_no_temp(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with RowWriter(tmp_path / "o.jsonl", lambda r: r) as w:
            w.write(ROWS[0])
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_format_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"unknown format \(use .jsonl, .csv or .json\)"):
        RowWriter(tmp_path / "o.txt", lambda r: r)


def test_top_k_scores_are_softmax_probabilities_in_order():
    rows = top_k_rows(__import__("numpy").array([[0.0, 2.0, 1.0]]), ["a", "b", "c"], 2)
    top = rows[0]["top"]
    assert [t["label"] for t in top] == ["b", "c"]
    assert top[0]["score"] == pytest.approx(0.665241, abs=1e-6)
