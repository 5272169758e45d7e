"""`visiontool classify`: top-k labels for every image in files, folders, globs or lists.

Examples:
    visiontool classify samples/digits --model lenet5-mnist
    visiontool classify photos/ -r --model resnet50 --output labels.jsonl
    find . -name '*.jpg' | visiontool classify - --model run/best.safetensors --output out.csv
"""

from __future__ import annotations

from typing import Annotated, List

import typer

from visiontool.cli import options as opt

TABLE_MAX_ROWS = 25  # more rows than this: a progress bar and a summary instead of a table


def classify(
    sources: Annotated[List[str], typer.Argument(help="Image files, folders, globs, @list.txt, or - for paths on stdin.")],
    model: opt.Model = "resnet50",
    weights: opt.Weights = None,
    top_k: Annotated[int, typer.Option(min=1, help="Labels per image.")] = 5,
    batch_size: opt.BatchSize = 32,
    workers: opt.Workers = None,
    device: opt.Device = "auto",
    backend: opt.Backend = None,
    recursive: opt.Recursive = False,
    output: opt.Output = None,
    exact_decode: Annotated[bool, typer.Option(help="Decode JPEGs at full size even when a reduced-size decode would do (slower, bit-exact with torchvision).")] = False,
    offline: opt.Offline = False,
    quiet: opt.Quiet = False,
) -> None:
    """Classify images: one row per file with the top-k labels and scores."""
    from visiontool.cli.runner import run_rows, short_path
    from visiontool.tasks import classify as task

    def show(rows, info):
        from rich.table import Table

        table = Table("file", "label", "score", *(["next"] if top_k > 1 else []), title=f"{info.extra.get('name') or info.arch} ({info.weights_source})")
        for r in rows:
            name = short_path(r["path"])
            if r["error"]:
                table.add_row(name, "[red]error[/]", "", r["error"])
                continue
            best, rest = r["top"][0], r["top"][1:]
            extra = [", ".join(f"{t['label']} {t['score']:.3f}" for t in rest)] if top_k > 1 else []
            table.add_row(name, best["label"], f"{best['score']:.3f}", *extra)
        return table

    run_rows(
        sources=sources, recursive=recursive, model=model, weights=weights, backend=backend,
        device=device, offline=offline, quiet=quiet, batch_size=batch_size, workers=workers,
        exact_decode=exact_decode, output=output, task="classify",
        make_postprocess=lambda info: task.postprocessor(info.labels, top_k),
        flatten=lambda row: task.flatten(row, top_k), table=show, table_max_rows=TABLE_MAX_ROWS,
        headline=lambda row: row["top"][0]["label"],
    )
