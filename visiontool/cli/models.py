"""`visiontool models`: the architectures and models visiontool knows."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from visiontool.cli import options as opt

EXAMPLES = [
    "visiontool models              every model: task, parameters, input, weights",
    "visiontool models lenet        names starting with lenet, or with it as a word",
    "visiontool models 'resnet*'    a glob",
    "visiontool models --task detect --json",
]
Pattern = Annotated[Optional[str], typer.Argument(
    metavar="PATTERN", help="A glob (resnet*), else a prefix (lenet) or a whole word of the names (fpn).")]


def models(task: opt.Task = None, pattern: Pattern = None, as_json: opt.Json = False) -> None:
    """List model names for --model: torchvision architectures, LeNet-5 and shipped models."""
    from visiontool.errors import UsageError
    from visiontool.models import registry

    specs = registry.list_specs(task=task, pattern=pattern)
    if not specs:
        raise UsageError(f"no model matches {pattern!r}; `visiontool models` lists them all")
    rows = [_row(spec) for spec in specs]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _print_table(rows)


def _row(spec) -> dict:
    """Facts about one entry; computed from metadata, never by loading weights."""
    from visiontool import weights
    from visiontool.models import registry

    if spec.shipped_file is not None:
        names, default, local = [spec.shipped_file.name], spec.shipped_file.name, spec.shipped_file.is_file()
    elif spec.default_weights is not None:
        names, default = list(spec.weights), spec.default_weights
        local = weights.is_present(spec.arch, spec.default_weights)
    else:
        names, default, local = [], None, None  # random init: nothing to fetch
    return {
        "name": spec.name,
        "task": spec.task,
        "arch": spec.arch,
        "params": registry.param_count(spec),
        "input_size": registry.input_size(spec),
        "weights": names,
        "default_weights": default,
        "local": local,
        "description": spec.description,
    }


def _print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} models", title_justify="left")
    for header, justify in (("name", "left"), ("task", "left"), ("params", "right"), ("input", "right"),
                            ("weights", "left"), ("local", "left")):
        table.add_column(header, justify=justify, overflow="fold", min_width=len(header))
    for row in rows:
        if row["default_weights"] is None:
            known = "none (random init)"
        else:
            others = len(row["weights"]) - 1
            known = row["default_weights"] + (f" (+{others})" if others else "")
        local = {True: "yes", False: "no", None: "-"}[row["local"]]
        table.add_row(row["name"], row["task"], human_count(row["params"]), str(row["input_size"]), known, local)
    Console().print(table)


def human_count(n: int | None) -> str:
    """61706 -> "61.7k", 11689512 -> "11.7M"."""
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
