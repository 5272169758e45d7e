"""`visiontool segment`: a class for every pixel of every image in files, folders, globs or lists."""

from __future__ import annotations

from typing import Annotated

import typer

from visiontool.cli import options as opt

EXAMPLES = [
    "visiontool segment street.jpg --save-dir out/",
    "visiontool segment photos/ -r -m deeplabv3_resnet50 -o rows.jsonl",
    "visiontool segment photos/ -m fcn_resnet50.onnx --classes person --save-dir o/",
]


def segment(
    sources: opt.Sources,
    model: opt.Model = None,
    weights: opt.Weights = None,
    classes: opt.Classes = None,
    alpha: Annotated[float, typer.Option("--alpha", min=0.0, max=1.0, metavar="ALPHA", help="Opacity of the class colours on the overlays.")] = 0.5,
    image_size: opt.ImageSize = None,
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
    save_dir: opt.SaveDir = None,
    exact_decode: opt.ExactDecode = False,
    offline: opt.Offline = False,
    quiet: opt.Quiet = False,
) -> None:
    """Segment images: per file a class-index mask PNG at the original size and the share of each class."""
    from visiontool import progress
    from visiontool.cli.runner import RunOptions, run_rows
    from visiontool.tasks.segment import Segment

    task = Segment(save_dir, alpha, classes, output)
    if save_dir is None:
        progress.info(f"masks go to {task.mask_dir}/ (--save-dir DIR for another folder, with overlays)", quiet=quiet)
    run_rows(task, RunOptions(sources, opt.default_for(opt.MODEL, "segment", model), weights, backend, device,
                              offline, quiet, opt.default_for(opt.BATCH_SIZE, "segment", batch_size), workers,
                              exact_decode, recursive, output, image_size, resume, shard, max_pixels, decode_timeout))
