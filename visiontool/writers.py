"""Row writers: JSONL, CSV and JSON, to a file (written atomically) or to stdout (streamed).

A file output is streamed into a temp file next to it and renamed into place when the run
ends, so a reader never sees half a file; stdout gets each row as soon as it exists.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from visiontool.errors import UsageError, VisiontoolError
from visiontool.fsutil import atomic_write

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".json": "json"}


def format_for(path: Path, option: str = "--output") -> str:
    """The rows format a file name asks for; a usage error for an unknown one, or for a path
    that cannot become a file (a folder, or under a file), before any work is done."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{option} {path}: unknown format (use .jsonl, .csv or .json)")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; name a file")
    if any(parent.exists() and not parent.is_dir() for parent in path.parents):
        raise UsageError(f"{option} {path}: a folder on its path is a file")
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


# --------------------------------------------------------------------------- resumable output
#
# An --output file is built in a sibling partial file, `rows.csv.partial`: rows are appended
# to it as JSON Lines, whatever the output's format, and made durable batch by batch. A run
# that ends cleanly turns it into the output (in input order, CSV and JSON finalised then) and
# removes it. A run that dies leaves it; --resume reads it back (and a finished output too),
# skips the paths that have a row and appends the rest. Sharded runs (--shard K/N, torchrun)
# write parts, `rows.part-K-of-N.csv`, each an output of its own; the last to finish merges them.


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def part_path(output: Path, k: int, n: int) -> Path:
    """Shard k (1..n) of `output`: rows.part-2-of-4.csv, in the output's own format."""
    return output.with_name(f"{output.stem}.part-{k}-of-{n}{output.suffix}")


class PartMissing(UsageError):
    """A share's part is not there to merge (not run yet, or merged by another share)."""


class OutputWriteError(VisiontoolError):
    """Rows could not be written (a full disk); what was written before is whole and kept."""


def _records(path: Path, fmt: str) -> Iterator[tuple[str, object]]:
    """(path, record) for each row of a finished output: the row's JSON text (JSON Lines, JSON),
    or its CSV lines as dicts. Texts are kept as written, so rows carried over stay byte for byte."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        if fmt == "csv":
            group: list[dict] = []
            for line in csv.DictReader(f):  # a row's lines are consecutive and share its path
                if group and line.get("path") != group[0].get("path"):
                    yield group[0].get("path", ""), group
                    group = []
                group.append(line)
            if group:
                yield group[0].get("path", ""), group
            return
        for n, line in enumerate(f, 1):
            text = line.strip()
            if fmt == "json":  # written as "[", "  {row},", ..., "  {row}", "]"
                if text in ("[", "]", "[]", ""):
                    continue
                text = text.removesuffix(",")
            elif not text:
                continue
            try:
                row = json.loads(text)
                yield row["path"], text
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"--resume: {path} line {n} is not a row this command wrote; "
                                 f"move the file away to start over") from None


def _text(line: bytes) -> str:
    # Paths that are not UTF-8 (an old disk's Latin-1 names) travel as Python's surrogate escapes.
    return line.decode("utf-8", "surrogateescape")


class _Out:
    """Writes records to an output file in its format (atomically, via atomic_write)."""

    def __init__(self, fh, fmt: str, flatten: Callable[[dict], dict | list[dict]], columns: list[str] | None):
        self.fh, self.fmt, self.flatten, self.columns, self.count, self._csv = fh, fmt, flatten, columns, 0, None

    def add(self, record) -> None:
        if self.fmt == "jsonl":
            self.fh.write(record + "\n")
        elif self.fmt == "json":
            self.fh.write(("[\n  " if self.count == 0 else ",\n  ") + record)
        else:
            if isinstance(record, str):
                flat = self.flatten(json.loads(record))
                record = flat if isinstance(flat, list) else [flat]
            if self._csv is None:
                self._csv = csv.DictWriter(self.fh, fieldnames=self.columns or list(record[0]))
                self._csv.writeheader()
            self._csv.writerows(record)
        self.count += 1

    def end(self) -> None:
        if self.fmt == "json":
            self.fh.write("[]\n" if self.count == 0 else "\n]\n")


class RowFile:
    """The --output file of an inference run, resumable (see above).

    `order`: every path this run covers, in input order (the output's order). With `resume`,
    `done` holds the paths that already have a row; `kept_errors` how many of those are errors.
    write(row) buffers a row; flush() makes the buffered rows durable (call it after each
    batch); finish() writes the output; after a failure the partial file stays for --resume.
    """

    def __init__(self, output: Path, flatten: Callable[[dict], dict | list[dict]], columns: list[str] | None,
                 order: Sequence[str], resume: bool = False) -> None:
        self.output, self.partial, self.fmt = Path(output), partial_path(Path(output)), format_for(Path(output))
        self.flatten, self.columns, self.order = flatten, columns, order
        self.done: set[str] = set()
        self.kept_errors = 0
        self._old: dict[str, object] = {}
        self._buffer: list[str] = []
        if resume and self.output.exists():
            for path, record in _records(self.output, self.fmt):
                if path not in self._old:
                    self._old[path] = record
                    self.kept_errors += self._is_error(record)
            self.done.update(self._old)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        if self.partial.exists():
            if not resume:
                raise UsageError(f"{self.partial} holds the rows of an interrupted run: add --resume to "
                                 f"finish it, or delete it to start over")
            self._size = self._read_partial()
        else:
            self._size = 0
        self._fd: int | None = None  # opened with the first rows: a run that fails before leaves no file

    @staticmethod
    def _is_error(record) -> bool:
        if isinstance(record, str):
            return json.loads(record).get("error") is not None
        return any(line.get("error") for line in record)

    def _read_partial(self) -> int:
        """Collect the paths of the partial's whole rows; cut off a line torn by a crash."""
        good = 0
        with open(self.partial, "rb") as f:
            for line in f:
                try:
                    row = json.loads(_text(line)) if line.endswith(b"\n") else None
                    path = row["path"] if isinstance(row, dict) else None
                except (ValueError, KeyError, TypeError):
                    path = None
                if not isinstance(path, str):
                    break
                if path not in self.done:
                    self.done.add(path)
                    self.kept_errors += row.get("error") is not None
                good += len(line)
        if good < self.partial.stat().st_size:
            os.truncate(self.partial, good)
        return good

    def write(self, row: dict) -> None:
        self._buffer.append(json.dumps(row, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        """Append the buffered rows and make them durable. On failure (a full disk) the file is
        cut back to its last whole row, so it stays resumable, and OutputWriteError says so."""
        if not self._buffer:
            return
        data = "".join(self._buffer).encode("utf-8", "surrogateescape")
        self._buffer.clear()
        try:
            if self._fd is None:
                self._fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as err:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
            raise OutputWriteError(f"cannot write rows to {self.partial}: {err.strerror or err}; the rows "
                                   f"written before are kept: run the same command with --resume") from None
        self._size += len(data)

    def close(self) -> None:
        """Stop writing; the partial file stays (a failed or interrupted run)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self) -> None:
        """Write the output from the partial file (and a finished output's kept rows), in input
        order; remove the partial file."""
        self.flush()
        self.close()
        if not self.partial.exists():
            self.partial.touch()
        index = {p: i for i, p in enumerate(self.order)}
        late = len(index)  # rows of paths this run does not cover stay, after the others
        entries: list[tuple[int, str, int, int]] = []
        for path in self._old:
            entries.append((index.get(path, late), path, -1, 0))
            late += path not in index
        seen, dropped = set(self._old), False
        with open(self.partial, "rb") as f:
            offset = 0
            for line in f:
                path = json.loads(_text(line))["path"]
                if path in seen:
                    dropped = True
                else:
                    seen.add(path)
                    entries.append((index.get(path, late), path, offset, len(line)))
                    late += path not in index
                offset += len(line)
            in_order = all(a[0] < b[0] for a, b in zip(entries, entries[1:]))
            if self.fmt == "jsonl" and not self._old and in_order and not dropped:
                os.replace(self.partial, self.output)  # already the output, byte for byte
                return
            entries.sort()
            with atomic_write(self.output) as tmp, open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as out:
                writer = _Out(out, self.fmt, self.flatten, self.columns)
                for _, path, start, length in entries:
                    if start < 0:
                        writer.add(self._old[path])
                    else:
                        f.seek(start)
                        writer.add(_text(f.read(length)).rstrip("\n"))
                writer.end()
                out.flush()
                os.fsync(out.fileno())
        self.partial.unlink()


def count_parts(output: Path) -> int:
    """N, from the parts of `output` beside it (OUTPUT-STEM.part-K-of-N.EXT)."""
    import re

    pattern = re.compile(re.escape(output.stem) + r"\.part-\d+-of-(\d+)" + re.escape(output.suffix) + r"(\.partial)?")
    folder = output.parent if str(output.parent) else Path(".")
    found = {int(m[1]) for p in (folder.iterdir() if folder.is_dir() else []) if (m := pattern.fullmatch(p.name))}
    if not found:
        raise UsageError(f"no parts of {output} to merge (they are named {part_path(output, 1, 4).name} and so on)")
    if len(found) > 1:
        raise UsageError(f"parts of {output} from runs with different share counts ({', '.join(map(str, sorted(found)))}): "
                         f"remove those of the other runs")
    return found.pop()


@dataclass
class Merged:
    rows: int
    errors: int  # rows of images that could not be read


def _has_error(record, fmt: str) -> bool:
    if fmt == "csv":
        return bool(record[0].get("error"))
    return bool(json.loads(record).get("error"))


def merge_parts(output: Path, n: int, flatten=None, columns: list[str] | None = None) -> Merged:
    """Join the finished parts 1..n of `output` into it, in input order, and remove them; how
    many rows it holds, and how many are errors. Shard k holds inputs k-1, k-1+n, ..., so taking one row from each part in
    turn restores the order."""
    fmt = format_for(output)
    parts = [part_path(output, k, n) for k in range(1, n + 1)]
    missing = [p for p in parts if not p.exists()]
    if missing and partial_path(missing[0]).exists():
        raise PartMissing(f"cannot merge {output}: {missing[0]} is unfinished (its .partial file is there): run "
                          f"that shard again with --resume")
    if missing:
        raise PartMissing(f"cannot merge {output}: {missing[0]} is missing (run that shard, with --resume "
                         f"if it was interrupted)")
    readers = [_records(p, fmt) for p in parts]
    count = errors = 0
    with atomic_write(output) as tmp, open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as out:
        writer = _Out(out, fmt, flatten or (lambda row: row), columns)
        short = False  # a part ran out: the next round must find every part at its end
        while readers:
            alive, ended = [], False
            for r in readers:
                record = next(r, None)
                if record is None:
                    ended = True
                    continue
                if ended or short:
                    raise UsageError(f"cannot merge {output}: its parts hold shares of different inputs "
                                     f"(run every shard on the same sources)")
                writer.add(record[1])
                count += 1
                errors += _has_error(record[1], fmt)
                alive.append(r)
            short, readers = ended, alive
        writer.end()
    for p in parts:
        p.unlink(missing_ok=True)  # a share that merged at the same moment may have removed it
    return Merged(count, errors)
