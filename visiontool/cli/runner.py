"""What every inference command does around its task: expand sources, open the model, run the
pipeline with a progress bar, write rows, show a table or a summary, and set the exit code."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import typer

from visiontool.errors import EXIT_SKIPPED, UsageError


def short_path(path: str) -> str:
    """A path as a table shows it: relative to the working folder when it is below it."""
    import os

    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def run_rows(*, sources: list[str], recursive: bool, model: str, weights: str | None,
             backend: str | None, device: str, offline: bool, quiet: bool, batch_size: int,
             workers: int | None, exact_decode: bool, output: Path | None, task: str,
             make_postprocess: Callable, flatten: Callable, table: Callable, table_max_rows: int,
             headline: Callable[[dict], str | None] = lambda row: None) -> None:
    from visiontool import pipeline, progress
    from visiontool.backends import open_model
    from visiontool.sources import expand
    from visiontool.writers import RowWriter, format_for

    paths = expand(sources, recursive=recursive, stdin=sys.stdin)
    if output is not None:
        format_for(output)  # a bad --output fails before the model loads, not after the run
    runner, info = open_model(model, weights, backend, device, offline, quiet, images=len(paths))
    if info.task != task:
        raise UsageError(f"--model {model} is a {info.task} model; `{task}` needs a {task} model")

    # On a terminal with no --output, a few images get a table; otherwise rows are the output.
    as_table = output is None and sys.stdout.isatty() and len(paths) <= table_max_rows
    to_stdout = output is None and not sys.stdout.isatty()
    show_bar = not quiet and not (as_table and len(paths) <= 1)

    rows_kept: list[dict] = []
    skipped = 0
    labels: Counter = Counter()
    start = time.perf_counter()
    writer = RowWriter(output, flatten) if (output is not None or to_stdout) else None
    try:
        with progress.bar(f"{task} {info.arch}", total=len(paths), quiet=not show_bar) as bar:
            for row in pipeline.run(paths, info.preprocess, runner, make_postprocess(info),
                                    batch_size=batch_size, workers=workers,
                                    fast_decode=not exact_decode, on_batch=bar.advance):
                if row["error"]:
                    skipped += 1
                    progress.warn(f"{row['path']}: {row['error']}")
                elif (name := headline(row)) is not None:
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

        Console().print(table(rows_kept, info))
    elif not quiet:
        done = len(paths) - skipped
        progress.info(f"{done} of {len(paths)} images done in {seconds:.1f} s "
                      f"({len(paths) / max(seconds, 1e-9):.1f} img/s), {skipped} skipped"
                      + (f"; rows in {output}" if output else ""))
        if labels and output is None and not to_stdout:
            common = ", ".join(f"{k} ({v})" for k, v in labels.most_common(5))
            progress.info(f"most common: {common}; use --output FILE.jsonl to keep every row")
    if skipped:
        raise typer.Exit(EXIT_SKIPPED)
