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
    exact_decode: opt.ExactDecode = False,
    offline: opt.Offline = False,
    quiet: opt.Quiet = False,
) -> None:
    """Classify images: one row per file with the top-k labels and scores."""
    from visiontool.cli.runner import RunOptions, run_rows
    from visiontool.tasks.classify import Classify

    run_rows(Classify(top_k), RunOptions(sources, model, weights, backend, device, offline, quiet, batch_size,
                                         workers, exact_decode, recursive, output))
