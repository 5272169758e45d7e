"""`visiontool detect`: boxes, labels and scores for every image in files, folders, globs or lists."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from visiontool.cli import options as opt

EXAMPLES = [
    "visiontool detect samples/scenes --model griddet-digits --save-dir out/",
    "visiontool detect photos/ -m fasterrcnn_resnet50_fpn --conf 0.5 -o out.jsonl",
    "visiontool detect street.jpg -m retinanet_resnet50_fpn_v2 --classes person,car",
]


def detect(
    sources: opt.Sources,
    model: opt.Model = None,
    weights: opt.Weights = None,
    conf: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, metavar="SCORE", show_default=False, help="Keep detections scoring at least this (default: the threshold with the best F1 on the model's validation set, recorded by `train`; else 0.25).")] = None,
    iou: Annotated[float, typer.Option("--iou", min=0.0, max=1.0, metavar="IOU", help="Overlap above which non-maximum suppression drops the weaker box.")] = 0.5,
    classes: opt.Classes = None,
    max_det: Annotated[int, typer.Option(min=1, metavar="N", help="At most this many detections per image.")] = 100,
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
    save_crops: Annotated[bool, typer.Option("--save-crops", help="Also write a crop of each detection, in a folder per class under --save-dir.")] = False,
    coco_json: Annotated[Optional[Path], typer.Option(metavar="FILE", help="Also write COCO results (image_id, category_id, bbox xywh, score).")] = None,
    exact_decode: opt.ExactDecode = False,
    offline: opt.Offline = False,
    quiet: opt.Quiet = False,
) -> None:
    """Detect objects: one row per file with its boxes in original pixels, best score first."""
    from visiontool.cli.runner import RunOptions, run_rows
    from visiontool.tasks.detect import Detect

    task = Detect(conf, iou, classes, max_det, save_dir, save_crops, coco_json)
    run_rows(task, RunOptions(sources, opt.default_for(opt.MODEL, "detect", model), weights, backend, device,
                              offline, quiet, opt.default_for(opt.BATCH_SIZE, "detect", batch_size), workers,
                              exact_decode, recursive, output, image_size, resume, shard, max_pixels, decode_timeout))
