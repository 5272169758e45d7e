"""`visiontool models`: the architectures and models visiontool knows.

Examples:
    visiontool models                 every entry: task, parameters, input size, weights, local?
    visiontool models 'resnet*'       a glob (or a plain substring: `visiontool models net`)
    visiontool models --json          the same facts as JSON, for scripts
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

Task = Annotated[Optional[str], typer.Option(help="Only models for this task (classify, detect).")]
Pattern = Annotated[Optional[str], typer.Argument(help="Glob (resnet*) or substring of the names.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def models(task: Task = None, pattern: Pattern = None, as_json: Json = False) -> None:
    """List model names for --model: torchvision architectures, LeNet-5 and shipped models."""
    from visiontool.errors import UsageError
    from visiontool.models import registry

    tasks = {registry.TASK_CLASSIFY, registry.TASK_DETECT}
    if task is not None and task not in tasks:
        raise UsageError(f"--task {task}: unknown (known: {', '.join(sorted(tasks))})")
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
