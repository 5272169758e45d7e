"""`visiontool val`: how good a model is on labelled data. Classifiers: top-1, top-5,
per-class accuracy and the confusion matrix on a folder. Detectors: COCO mAP (pycocotools'
COCOeval) and per-class AP on a YOLO or COCO dataset's val split.

DATA is a dataset with val/ (or valid/, validation/), or a folder of class folders. For a
checkpoint trained without a val folder, the images its run held out are scored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from visiontool.cli import options as opt
from visiontool.errors import EXIT_SKIPPED

EXAMPLES = [
    "visiontool val runs/train/resnet18-1/best.safetensors data/",
    "visiontool val resnet18 imagenet-sample/ --json > scores.json",
    "visiontool val runs/train/griddet-1/best.safetensors scenes/    (a detector)",
]
CONFUSION_MAX_CLASSES = 12  # larger matrices only in --json and train's confusion.png


def val(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A checkpoint written by `train`, a registry name, or an architecture with --weights.")],
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Dataset folder (its val/ is used) or a folder of class folders.")],
    weights: opt.Weights = None,
    batch_size: opt.BatchSize = None,
    workers: opt.Workers = None,
    device: opt.Device = "auto",
    as_json: opt.Json = False,
    offline: opt.Offline = False,
    quiet: opt.Quiet = False,
) -> None:
    """Score a classifier on a labelled folder, or a detector on a YOLO or COCO dataset."""
    from visiontool.train.validate import validate

    result = validate(model, data, weights=weights, device=device,
                      batch_size=opt.default_for(opt.BATCH_SIZE, "val", batch_size),
                      workers=workers, offline=offline, quiet=quiet)
    report = result.to_dict()
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        result.show()
    if result.skipped:
        raise typer.Exit(EXIT_SKIPPED)


def show_classification(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(
        f"{r['model']} ({r['arch']}) on {r['data']}: {r['images']} images\n"
        f"top-1 {r['top1']:.2%}   top-{r['top5_k']} {r['top5']:.2%}",
        markup=False, soft_wrap=True,
    )
    per_class = Table("class", "images", "accuracy", title="Per class")
    for row in r["per_class"]:
        per_class.add_row(row["label"], str(row["images"]), f"{row['accuracy']:.2%}")
    console.print(per_class)
    conf = r["confusion"]
    if len(conf["rows"]) <= CONFUSION_MAX_CLASSES:
        table = Table("true \\ predicted", *conf["columns"], title="Confusion matrix")
        for label, counts in zip(conf["rows"], conf["counts"]):
            table.add_row(label, *(str(c) for c in counts))
        console.print(table)
