"""What every inference command does around its task: run the library's Inference with a
progress bar, write rows, show a table or a summary, and set the exit code."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import typer

from visiontool.errors import EXIT_SKIPPED

TABLE_MAX_ROWS = 25  # more rows than this on a terminal: JSON Lines instead of a table


@dataclass
class RunOptions:
    """The options every inference command shares, as the CLI parsed them."""

    sources: list[str]
    model: str
    weights: str | None = None
    backend: str | None = None
    device: str = "auto"
    offline: bool = False
    quiet: bool = False
    batch_size: int = 32
    workers: int | None = None
    exact_decode: bool = False
    recursive: bool = False
    output: Path | None = None
    image_size: int | None = None


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def run_rows(task, o: RunOptions) -> None:
    from visiontool import progress
    from visiontool.infer import Inference
    from visiontool.writers import RowWriter, format_for

    if o.output is not None:
        format_for(o.output)  # a bad --output fails before the model loads, not after the run
    run = Inference(task, o.sources, o.model, o.weights, o.backend, o.device, o.offline, o.quiet,
                    o.batch_size, o.workers, o.exact_decode, o.recursive, stdin=sys.stdin, image_size=o.image_size)
    paths, info = run.paths, run.info

    # Without --output the results go to stdout, always (--quiet never hides them): a table for a
    # handful of images on a terminal, otherwise JSON Lines, streamed as they come. Rows on a
    # terminal are their own progress; a bar redrawn between them would only garble them.
    terminal = stdout_is_terminal()
    as_table = o.output is None and terminal and len(paths) <= TABLE_MAX_ROWS
    to_stdout = o.output is None and not as_table
    show_bar = not o.quiet and not (as_table and len(paths) <= 1) and not (to_stdout and terminal)

    rows_kept: list[dict] = []
    skipped = 0
    labels: Counter = Counter()
    start = time.perf_counter()
    writer = RowWriter(o.output, task.csv_rows, task.csv_columns()) if (o.output is not None or to_stdout) else None
    try:
        with progress.bar(f"{task.name} {info.arch}", total=len(paths), quiet=not show_bar) as bar:
            for row in run.rows(on_batch=bar.advance):
                if row["error"]:
                    skipped += 1
                    progress.warn(f"{row['path']}: {row['error']}")
                elif (name := task.headline(row)) is not None:
                    labels[name] += 1
                if writer is not None:
                    writer.write(row)
                if as_table:
                    rows_kept.append(row)
    except BaseException:
        if writer is not None:
            writer.close(ok=False)
        raise
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - start

    if as_table:
        from rich.console import Console

        Console().print(task.table(rows_kept, info))
    elif not o.quiet:
        done = len(paths) - skipped
        progress.info(f"{done} of {len(paths)} images done in {seconds:.1f} s "
                      f"({len(paths) / max(seconds, 1e-9):.1f} img/s), {skipped} skipped"
                      + (f"; rows in {o.output}" if o.output else ""))
        if labels and to_stdout and terminal:
            common = ", ".join(f"{k} ({v})" for k, v in labels.most_common(5))
            progress.info(f"most common: {common}; use --output FILE.jsonl to keep every row in a file")
    if skipped:
        raise typer.Exit(EXIT_SKIPPED)
