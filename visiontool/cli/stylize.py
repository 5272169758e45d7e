"""`visiontool stylize`: every image in files, folders, globs or lists painted in a style."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from visiontool.cli import options as opt

USAGE = "[OPTIONS] SOURCES... --style NAME|MODEL_FILE|STYLE_IMAGE"
EXAMPLES = [
    "visiontool stylize photos/ --style runs/train/stylenet-1/best.safetensors",
    "visiontool stylize photos/ --style mosaic.onnx --strength 0.7 -o rows.jsonl",
    "visiontool stylize cat.jpg --style painting.jpg --steps 200 --size 512",
]


def stylize(
    sources: opt.Sources,
    style: Annotated[Optional[str], typer.Option(
        "--style", metavar="STYLE", show_default=False,
        help="A style network (a shipped style's name, a checkpoint of `train --task stylize`, or "
        "its .onnx) for --method fast, or a style image for --method optimize.")] = None,
    model: opt.Model = None,
    method: Annotated[Optional[Literal["fast", "optimize"]], typer.Option(
        case_sensitive=False, metavar="fast|optimize", show_default=False,
        help="fast: run the style network; optimize: optimise each image towards the style image "
        "(default: optimize for an image, else fast).")] = None,
    size: Annotated[Optional[int], typer.Option(
        min=8, metavar="PIXELS", show_default=False,
        help="Paint at this shorter side (default: the image's own size).")] = None,
    strength: Annotated[float, typer.Option(
        min=0.0, max=1.0, metavar="S", help="Blend: 1 the painting, 0 the input.")] = 1.0,
    preserve_color: Annotated[bool, typer.Option(
        "--preserve-color", help="Keep the input's colours; take only the painting's luminance.")] = False,
    steps: Annotated[int, typer.Option(min=1, metavar="N", help="optimize: optimiser steps per image.")] = 100,
    content_weight: opt.ContentWeight = None,
    style_weight: opt.StyleWeight = None,
    tv_weight: opt.TvWeight = None,
    solver: Annotated[Literal["lbfgs", "adam"], typer.Option(
        case_sensitive=False, metavar="lbfgs|adam", help="optimize: the optimiser.")] = "lbfgs",
    loss_net: opt.LossNet = None,
    save_dir: opt.SaveDir = None,
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
    """Paint images in a style: a picture per file in --save-dir, a row per file with its path."""
    from visiontool.cli.runner import RunOptions, run_rows
    from visiontool.errors import UsageError
    from visiontool.tasks.stylize import Stylize

    if (style is None) == (model is None):
        raise UsageError("give the style as --style NAME|MODEL_FILE|STYLE_IMAGE (or a network as --model), once")
    weights = (1.0 if content_weight is None else content_weight, 100.0 if style_weight is None else style_weight,
               tv_weight or 0.0)  # optimize's defaults (the options are shared with train, whose differ)
    task = Stylize(method, size, strength, preserve_color, steps, *weights, solver, loss_net or "auto",
                   save_dir if save_dir is not None else "stylized")
    batch = opt.default_for(opt.BATCH_SIZE, "stylize", batch_size)
    run_rows(task, RunOptions(sources, style or model, None, backend, device, offline, quiet, batch, workers,
                              exact_decode, recursive, output, None, resume, shard, max_pixels, decode_timeout))
