"""Row writers: JSONL, CSV and JSON, to a file (written atomically) or to stdout (streamed).

A file output is streamed into a temp file next to it and renamed into place when the run
ends, so a reader never sees half a file; stdout gets each row as soon as it exists.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Callable

from visiontool.errors import UsageError
from visiontool.fsutil import atomic_write

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".json": "json"}


def format_for(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"--output {path}: unknown format (use .jsonl, .csv or .json)")
    return fmt


class RowWriter:
    """write(row) for each row, then close(); use as a context manager."""

    def __init__(self, output: Path | None, flatten: Callable[[dict], dict | list[dict]],
                 columns: list[str] | None = None) -> None:
        """`flatten(row)`: the CSV line (a dict) or lines (a list) of a row; `columns`: the
        CSV header (default: the first line's keys)."""
        self.fmt = format_for(output) if output else "jsonl"
        self.flatten, self.columns, self.count = flatten, columns, 0
        self._atomic = atomic_write(output) if output else None
        if self._atomic is not None:
            self._tmp = self._atomic.__enter__()
            self._fh = open(self._tmp, "w", newline="", encoding="utf-8")
        else:
            self._fh = sys.stdout
        self._csv = None

    def write(self, row: dict) -> None:
        if self.fmt == "jsonl":
            self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif self.fmt == "json":
            self._fh.write(("[\n  " if self.count == 0 else ",\n  ") + json.dumps(row, ensure_ascii=False))
        else:
            flat = self.flatten(row)
            lines = flat if isinstance(flat, list) else [flat]
            if self._csv is None:
                self._csv = csv.DictWriter(self._fh, fieldnames=self.columns or list(lines[0]))
                self._csv.writeheader()
            self._csv.writerows(lines)
        self.count += 1
        if self._atomic is None:
            self._fh.flush()

    def close(self, ok: bool = True) -> None:
        if self.fmt == "json":
            self._fh.write("[]\n" if self.count == 0 else "\n]\n")
        if self._atomic is None:
            self._fh.flush()
            return
        self._fh.close()
        if ok:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)
