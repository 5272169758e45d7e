"""`visiontool merge`: join the parts that shards (--shard K/N) wrote into the one output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from visiontool.cli import options as opt
from visiontool.errors import EXIT_SKIPPED

EXAMPLES = [
    "visiontool merge rows.jsonl      joins rows.part-1-of-4.jsonl ... -4-of-4",
    "visiontool merge out/labels.csv",
]


def merge(
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", help="The --output the shards were given; their "
                                           "parts, OUTPUT-STEM.part-K-of-N.EXT, lie beside it.")],
    quiet: opt.Quiet = False,
) -> None:
    """Join the parts of a sharded run into OUTPUT, in input order, and remove them (the last
    share to finish does this by itself when it sees every part). Exit 3 when rows in it are
    errors (images that could not be read), as for the run itself."""
    from visiontool import progress
    from visiontool.writers import count_parts, merge_parts

    n = count_parts(output)
    merged = merge_parts(output, n)
    if not quiet:
        progress.info(f"merged {n} parts into {output}: {merged.rows} rows, {merged.errors} of them errors")
    if merged.errors:  # as the run itself would have ended: some images could not be read
        raise typer.Exit(EXIT_SKIPPED)
