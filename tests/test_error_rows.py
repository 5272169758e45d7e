"""One row schema per task: a file that fails carries the task's fields as null, next to rows
that succeeded. Generated over visiontool.tasks.TASKS, with each task's shipped model, so a
new task is checked as soon as it ships one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from visiontool import tasks
from visiontool.cli.app import app
from visiontool.models import registry

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "digits" / "7_3501.png"


def _shipped(task: str) -> str | None:
    return next((s.name for s in registry.list_specs() if s.shipped_file is not None and s.task == task), None)


@pytest.mark.parametrize("task", sorted(tasks.TASKS))
def test_an_error_row_has_the_tasks_fields_as_null(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # pictures a task writes by default (./stylized) stay out of the checkout
    model = _shipped(task)
    if model is None:
        pytest.skip(f"no shipped {task} model to run")
    broken = tmp_path / "broken.png"
    broken.write_bytes(SAMPLE.read_bytes()[:60])  # a PNG cut short
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(app, [task, str(SAMPLE), str(broken), "--model", model, "-o", str(out), "-q"])
    assert result.exit_code == 3, result.output  # done, one input skipped
    good, bad = (json.loads(line) for line in out.read_text().splitlines())
    assert good["error"] is None and bad["error"]
    assert list(bad) == list(good)  # the same fields, in the same order
    fields = tasks.create(task).fields
    assert fields and all(bad[name] is None for name in fields)
    assert all(good[name] is not None for name in fields)
