"""`visiontool weights list | pull NAME | path NAME`: the pretrained weights visiontool knows;
`visiontool weights average CHECKPOINT... -o FILE`: the mean of checkpoints of one model.

NAME is an architecture ("resnet18": its default weights), ARCH.WEIGHTS
("resnet18.IMAGENET1K_V1") or a shipped model ("lenet5-mnist").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from visiontool.cli.handling import command
from visiontool.cli.help import Command, Group, examples
from visiontool.cli.options import GuidedFilter, Json, Output, Quiet, Scales

EXAMPLES = {
    "list": ["visiontool weights list 'resnet*'    known weights and whether each is on disk",
             "visiontool weights list --json"],
    "pull": ["visiontool weights pull resnet50     fetch (announced, hash-checked) if absent",
             "visiontool weights pull resnet18.IMAGENET1K_V1"],
    "path": ["visiontool weights path resnet18     its path; if absent, exit 1 saying where",
             "visiontool weights path lenet5-mnist"],
    "average": ["visiontool weights average unet-digits ft/best.safetensors -o mean.safetensors",
                "visiontool weights average e9.safetensors e10.safetensors -o mean.safetensors"],
}

app = typer.Typer(help="List, fetch and locate pretrained weights; average checkpoints.", no_args_is_help=True, cls=Group,
                  epilog=examples([line for lines in EXAMPLES.values() for line in lines[:1]]))

Name = Annotated[str, typer.Argument(metavar="NAME", help="resnet18, resnet18.IMAGENET1K_V2 or a shipped model name.")]
Pattern = Annotated[Optional[str], typer.Argument(
    metavar="PATTERN", help="A glob (resnet*), else a prefix (lenet) or a whole word of the model names (fpn).")]


@app.command("list", cls=Command, epilog=examples(EXAMPLES["list"]))
@command
def list_weights(pattern: Pattern = None, as_json: Json = False) -> None:
    """Every known weights file, and whether it is on disk."""
    from visiontool import weights
    from visiontool.errors import UsageError
    from visiontool.models import registry

    rows = []
    for spec in registry.list_specs(pattern=pattern):
        if spec.shipped_file is not None:
            rows.append({"name": spec.name, "file": spec.shipped_file.name, "default": True,
                         "present": spec.shipped_file.is_file()})
        for name in spec.weights:
            file_name = weights.weights_url(spec.arch, name).rsplit("/", 1)[-1]
            rows.append({"name": f"{spec.name}.{name}", "file": file_name,
                         "default": name == spec.default_weights, "present": weights.is_present(spec.arch, name)})
    if not rows:
        raise UsageError(f"no weights match {pattern!r}")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} weights ({sum(r['present'] for r in rows)} on disk)", title_justify="left")
    table.add_column("name", overflow="fold")
    table.add_column("file", overflow="fold")
    table.add_column("default", no_wrap=True, min_width=7)
    table.add_column("present", no_wrap=True, min_width=7)
    for r in rows:
        table.add_row(r["name"], r["file"], "yes" if r["default"] else "", "yes" if r["present"] else "no")
    Console().print(table)


@app.command(cls=Command, epilog=examples(EXAMPLES["pull"]))
@command
def pull(name: Name, quiet: Quiet = False) -> None:
    """Download weights unless already on disk; print the local path."""
    from visiontool import weights
    from visiontool.models import registry

    spec, weights_name = registry.split_weights_name(name)
    if weights_name is None:  # shipped inside the package: nothing to fetch
        typer.echo(str(spec.shipped_file))
        return
    typer.echo(str(weights.resolve(spec.arch, weights_name, offline=False, quiet=quiet)))


@app.command(cls=Command, epilog=examples(EXAMPLES["path"]))
@command
def path(name: Name) -> None:
    """Print the local path of weights; exit 1, saying where to put them, when absent."""
    from visiontool import weights
    from visiontool.models import registry

    spec, weights_name = registry.split_weights_name(name)
    if weights_name is None:
        typer.echo(str(spec.shipped_file))
        return
    typer.echo(str(weights.resolve(spec.arch, weights_name, fetch=False)))


Checkpoints = Annotated[List[str], typer.Argument(
    metavar="CHECKPOINT", show_default=False,
    help="Two or more checkpoints written by `train`, or shipped model names (unet-digits).")]


@app.command(cls=Command, epilog=examples(EXAMPLES["average"]))
@command
def average(checkpoints: Checkpoints, output: Output = None, scales: Scales = None,
            guided_filter: GuidedFilter = None, quiet: Quiet = False) -> None:
    """Write the mean of checkpoints of one model (weights averaged); print its path.

    Averaging a fine-tune with the model it started from often keeps much of what each is good
    at: the fine-tune's new data and the base's original scores. Only checkpoints that share
    their start (a fine-tune and its base, epochs of one run) average into a working model.
    The result keeps the first checkpoint's labels, preprocessing and (a segmentation model) the
    way it reads an image, unless --scales or --guided-filter set that.
    """
    import shlex

    from visiontool import checkpoint, progress
    from visiontool.errors import UsageError

    if len(checkpoints) < 2:
        raise UsageError("give two or more checkpoints to average")
    if output is None:
        raise UsageError("--output FILE.safetensors is required: where the averaged checkpoint goes")
    if output.suffix.lower() != ".safetensors":
        raise UsageError(f"--output {output}: the averaged checkpoint is a .safetensors file")
    paths = [_checkpoint_file(ref) for ref in checkpoints]
    tensors, meta = checkpoint.average(paths)
    meta = _reading(meta, scales, guided_filter)
    command = shlex.join(["visiontool", "weights", "average", *checkpoints, "--output", str(output),
                          *(["--scales", scales] if scales is not None else []),
                          *(["--guided-filter", str(guided_filter)] if guided_filter is not None else [])])
    meta["train"] = {"command": command, **meta["train"]}
    checkpoint.save(output, tensors, meta)
    progress.info(f"wrote {output}: the mean of {len(paths)} {meta['arch']} checkpoints", quiet=quiet)
    typer.echo(str(output))


def _reading(meta: dict, scales: str | None, guided_filter: int | None) -> dict:
    """`meta` with a segmentation model's scales and guided filter set where they are given."""
    from visiontool.errors import UsageError
    from visiontool.models.registry import TASK_SEGMENT
    from visiontool.tasks.segment import checked_guided_radius, checked_scales

    if scales is None and guided_filter is None:
        return meta
    if meta.get("task") != TASK_SEGMENT:
        raise UsageError(f"--scales and --guided-filter set how a segmentation model reads an image; these "
                         f"checkpoints are of a {meta.get('arch')} for --task {meta.get('task')}")
    meta = dict(meta)
    for flag, key, given, check, none in (("--scales", "scales", scales, checked_scales, (1.0,)),
                                          ("--guided-filter", "guided_filter", guided_filter, checked_guided_radius, 0)):
        if given is None:
            continue
        try:
            value = check(given)
        except ValueError as err:
            raise UsageError(f"{flag}: {err}") from None
        meta.pop(key, None)
        if value != none:  # the default is recorded by its absence, as train does
            meta[key] = list(value) if key == "scales" else value
    return meta


def _checkpoint_file(ref: str) -> Path:
    """A checkpoint path as given, or the file of a shipped model named `ref`."""
    from visiontool.errors import UsageError
    from visiontool.models import registry

    path = Path(ref)
    if path.exists() or path.suffix:
        return path
    spec = registry.get_spec(ref)
    if spec.shipped_file is None:
        raise UsageError(f"{ref} is an architecture, not a checkpoint: average checkpoints written by `train` "
                         "or shipped models")
    return spec.shipped_file
