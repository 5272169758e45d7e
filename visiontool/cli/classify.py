"""`visiontool classify`: top-k labels for every image in files, folders, globs or lists."""

from __future__ import annotations

from typing import Annotated

import typer

from visiontool.cli import options as opt

EXAMPLES = [
    "visiontool classify samples/digits --model lenet5-mnist",
    "visiontool classify photos/ -r --model resnet50 --output labels.jsonl",
    "visiontool classify 'photos/**/*.jpg' --top-k 1 --model resnet18.onnx",
    "find . -name '*.jpg' | visiontool classify - -m best.safetensors -o out.csv",
]


def classify(
    sources: opt.Sources,
    model: opt.Model = None,
    weights: opt.Weights = None,
    top_k: Annotated[int, typer.Option(min=1, metavar="K", help="Labels per image.")] = 5,
    batch_size: opt.BatchSize = None,
    workers: opt.Workers = None,
    device: opt.Device = "auto",
    backend: opt.Backend = None,
    recursive: opt.Recursive = False,
    output: opt.Output = None,
    resume: opt.Resume = False,
    shard: opt.Shard = None,
    max_pixels: opt.MaxPixels = None,
    decode_timeout: opt.DecodeTimeout = None,
    exact_decode: opt.ExactDecode = False,
    offline: opt.Offline = False,
    quiet: opt.Quiet = False,
) -> None:
    """Classify images: one row per file with the top-k labels and scores."""
    from visiontool.cli.runner import RunOptions, run_rows
    from visiontool.tasks.classify import Classify

    run_rows(Classify(top_k), RunOptions(sources, opt.default_for(opt.MODEL, "classify", model), weights, backend,
                                         device, offline, quiet, opt.default_for(opt.BATCH_SIZE, "classify", batch_size),
                                         workers, exact_decode, recursive, output,
                                         resume=resume, shard=shard, max_pixels=max_pixels,
                                         decode_timeout=decode_timeout))
