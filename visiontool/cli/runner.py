"""What every inference command does around its task: run the library's Inference with a
progress bar, write rows, show a table or a summary, and set the exit code.

Long runs survive their end: rows go to --output's partial file batch by batch (writers.RowFile),
--resume carries them over, Ctrl-C stops after the batch in flight, and a run is split into
shares with --shard K/N or by torchrun, each writing its own part: under torchrun rank 0 waits for
the others and merges them, with --shard the last share to finish does.
"""

from __future__ import annotations

import errno
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import typer

from visiontool.errors import EXIT_SKIPPED, UsageError
from visiontool.interrupt import StopRequest

TABLE_MAX_ROWS = 25  # more rows than this on a terminal: JSON Lines instead of a table
EXIT_INTERRUPTED = 130  # what shells report for a command ended by Ctrl-C (128 + SIGINT)
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


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
    resume: bool = False
    shard: str | None = None  # "K/N": this process's share of the inputs
    max_pixels: int | None = None  # larger images are error rows (None: imageio's default)
    decode_timeout: float | None = None  # seconds per image to decode (None: imageio's default)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """--shard K/N -> (K, N), 1 <= K <= N; under torchrun, the rank's share; else None."""
    if text is not None:
        found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not found or not 1 <= int(found[1]) <= int(found[2]):
            raise UsageError(f"--shard {text}: use K/N with 1 <= K <= N (share K of N), e.g. --shard 1/4")
        return int(found[1]), int(found[2])
    from visiontool.train.distributed import from_env

    dist = from_env()
    return (dist.rank + 1, dist.world) if dist.enabled else None


class _Interrupted(Exception):
    pass


def run_rows(task, o: RunOptions) -> None:
    from visiontool import progress
    from visiontool.infer import Inference
    from visiontool.sources import shard
    from visiontool.writers import OutputWriteError, RowFile, RowWriter, format_for, part_path

    if o.output is not None:
        format_for(o.output)  # a bad --output fails before the model loads, not after the run
    share = parse_shard(o.shard)
    for flag, given in (("--resume", o.resume), ("--shard" if o.shard else "torchrun", share)):
        if given and o.output is None:
            raise UsageError(f"{flag} needs --output FILE (.jsonl, .csv or .json): the rows it keeps are there")
    why = task.cannot_resume() if (o.resume or share) else None
    if why:
        raise UsageError(f"{'--resume' if o.resume else '--shard'}: {why}; leave it out or run in one go")
    target = part_path(o.output, *share) if share and o.output else o.output
    rowfile = RowFile(target, task.csv_rows, task.csv_columns(), [], o.resume) if target else None
    from visiontool.imageio import set_decode_timeout, set_max_pixels

    set_max_pixels(o.max_pixels)  # before decoding workers start: they inherit them
    set_decode_timeout(o.decode_timeout)
    device = o.device
    if share and o.shard is None:  # torchrun: each rank on its own local device
        from visiontool.backends import local_device
        from visiontool.train.distributed import from_env

        device = local_device(o.model, o.backend, o.device, from_env().local_rank)
    run = Inference(task, o.sources, o.model, o.weights, o.backend, device, o.offline, o.quiet,
                    o.batch_size, o.workers, o.exact_decode, o.recursive, stdin=sys.stdin, image_size=o.image_size)
    paths, info = run.paths, run.info
    if share:
        paths = shard(paths, share[0] - 1, share[1])
    todo = paths
    if rowfile is not None:
        rowfile.order = paths
        todo = [p for p in paths if p not in rowfile.done]
        for p in paths:
            if p in rowfile.done:
                task.skip(p)
        if rowfile.done and not o.quiet:
            progress.info(f"resuming: {len(paths) - len(todo)} of {len(paths)} images already have a row "
                          f"in {target if target.exists() else rowfile.partial}")

    # Without --output the results go to stdout, always (--quiet never hides them): a table for a
    # handful of images on a terminal, otherwise JSON Lines, streamed as they come. Rows on a
    # terminal are their own progress; a bar redrawn between them would only garble them.
    terminal = stdout_is_terminal()
    as_table = o.output is None and terminal and len(paths) <= TABLE_MAX_ROWS
    to_stdout = o.output is None and not as_table
    show_bar = not o.quiet and not (as_table and len(paths) <= 1) and not (to_stdout and terminal)

    rows_kept: list[dict] = []
    skipped = rowfile.kept_errors if rowfile else 0
    labels: Counter = Counter()
    start = time.perf_counter()
    writer = rowfile or (RowWriter(None, task.csv_rows, task.csv_columns()) if to_stdout else None)
    done_now = 0
    with StopRequest() as stop, \
            progress.bar(f"{task.name} {info.arch}", total=len(todo), quiet=not show_bar) as bar:

        def on_batch(n: int) -> None:
            nonlocal done_now
            done_now += n
            if rowfile is not None:
                rowfile.flush()  # the batch's rows are durable before the next one starts
            bar.advance(n)
            if stop.requested:
                raise _Interrupted

        try:
            for row in run.rows(on_batch=on_batch, paths=todo):
                if row["error"]:
                    skipped += 1
                    progress.warn(f"{row['path']}: {row['error']}")
                elif (name := task.headline(row)) is not None:
                    labels[name] += 1
                if writer is not None:
                    writer.write(row)
                if as_table:
                    rows_kept.append(row)
        except (_Interrupted, KeyboardInterrupt):
            _stop(rowfile, writer, done_now, len(todo))
        except OSError as err:
            if err.errno not in _DISK_FULL:
                raise
            where = f"; rows done so far are in {rowfile.partial}: run the same command with --resume" if rowfile else ""
            raise OutputWriteError(f"cannot write {err.filename or 'a file'}: {err.strerror}{where}") from None
        finally:
            if rowfile is not None:
                rowfile.close()
    if rowfile is not None:
        try:
            rowfile.finish()
        except OSError as err:
            if err.errno not in _DISK_FULL:
                raise
            raise OutputWriteError(f"cannot write {target}: {err.strerror}; every row is kept in {rowfile.partial}: "
                                   f"free space and run the same command with --resume") from None
    elif writer is not None:
        writer.close()
    seconds = time.perf_counter() - start

    if as_table:
        from rich.console import Console

        Console().print(task.table(rows_kept, info))
    elif not o.quiet:
        errors_now = skipped - (rowfile.kept_errors if rowfile else 0)
        progress.info(f"{len(todo) - errors_now} of {len(todo)} images done in {seconds:.1f} s "
                      f"({len(todo) / max(seconds, 1e-9):.1f} img/s), {errors_now} skipped"
                      + (f"; rows in {target}" if target else ""))
        if labels and to_stdout and terminal:
            common = ", ".join(f"{k} ({v})" for k, v in labels.most_common(5))
            progress.info(f"most common: {common}; use --output FILE.jsonl to keep every row in a file")
    if share and o.output is not None:
        torchrun = o.shard is None
        merged = _merge_when_complete(task, o.output, share, o.quiet, wait=torchrun)
        if torchrun:  # the job's exit code is rank 0's, and it speaks for every rank's images
            skipped = merged.errors if merged is not None else 0
    if skipped:
        raise typer.Exit(EXIT_SKIPPED)


def _stop(rowfile, writer, done: int, total: int) -> None:
    """Ctrl-C: the rows written so far stay; one line says how to go on."""
    if rowfile is not None:
        rowfile.close()
        kept = len(rowfile.done) + done
        print(f"interrupted: {kept} rows kept in {rowfile.partial}; run the same command with --resume "
              f"to finish", file=sys.stderr)
    else:
        if writer is not None:
            writer.close()
        print(f"interrupted after {done} of {total} images", file=sys.stderr)
    raise typer.Exit(EXIT_INTERRUPTED)


def _merge_when_complete(task, output: Path, share: tuple[int, int], quiet: bool, wait: bool = False):
    """Join the parts into --output once every part is in place. Under torchrun (`wait`) rank 0
    waits for the other ranks' parts and merges, and the others leave it to rank 0 (if a rank
    fails, torchrun stops them all, rank 0 too). Under --shard the last share to finish merges:
    each checks after its own part is in place, so the last one always sees every part. Two
    that finish together may both merge: each writes the same output atomically, and the one
    that finds a part already gone leaves the merge to the other. No lock, so no stale lock can
    block a later --resume. The merge's row and error counts, or None where this share left it."""
    from visiontool import progress
    from visiontool.writers import PartMissing, merge_parts, part_path, partial_path

    k, n = share
    parts = [part_path(output, i, n) for i in range(1, n + 1)]

    def complete() -> bool:
        return all(p.exists() and not partial_path(p).exists() for p in parts)

    if wait and k == 1 and not complete():
        if not quiet:
            progress.info(f"rank 0 done: waiting for the other ranks' parts to merge them into {output}")
        while not complete():
            time.sleep(0.1)
    if not complete() or (wait and k != 1):
        if not quiet:
            merger = "rank 0 merges" if wait else "the last share to finish merges"
            progress.info(f"share {k} of {n} done: {part_path(output, k, n)}; {merger} the parts into {output}")
        return None
    try:
        merged = merge_parts(output, n, task.csv_rows, task.csv_columns())
    except (FileNotFoundError, PartMissing):
        return None  # another share merged them first
    if not quiet:
        progress.info(f"merged {n} parts into {output}: {merged.rows} rows, {merged.errors} of them errors")
    return merged
