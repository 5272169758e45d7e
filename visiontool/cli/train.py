"""`visiontool train`: fit a classifier on a folder dataset, a detector on a YOLO or COCO dataset,
a segmentation model on images and class-index masks (DATA/train/images, DATA/train/masks), or a
style network on a folder of content images and one style image.

DATA holds train/<class>/<image> and, optionally, val/<class>/<image> (or valid/, validation/),
or is itself a folder of class folders; without a val folder, --val-fraction of each class is
held out (seeded). The run folder gets command.txt, config.json, results.csv, best.safetensors
and last.safetensors (use them as `classify --model`), state.pt (for --resume), curves.png and
confusion.png; its path is printed on stdout when the run ends. --model given a checkpoint or a
shipped model fine-tunes it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from visiontool.cli import options as opt
from visiontool.train.config import (AUGMENTS, DEFAULT_LR, DEFAULT_WD, OPTIMIZERS, PRETRAINED_LR_SHARE,
                                     SCHEDULERS, TrainConfig)

EXAMPLES = [
    "visiontool train data/ --model resnet18 --image-size 64 --epochs 10",
    "visiontool train --task detect scenes/ --epochs 30 --no-flip",
    "visiontool train --task segment digit-seg/ --epochs 8 --no-flip",
    "visiontool train --task stylize photos/ --style-image mosaic.jpg --epochs 2",
]
USAGE = "[OPTIONS] (DATA | --resume RUN_DIR)"  # DATA is required, except to continue a run

_D = TrainConfig()  # defaults live in one place: the config module


def _lr_defaults() -> str:
    return ", ".join(f"{v:g} {k}" for k, v in DEFAULT_LR.items())


def train(
    ctx: typer.Context,
    data: Annotated[Optional[Path], typer.Argument(metavar="DATA", help="Dataset folder: train/<class>/<image> and optionally val/, or <class>/<image>, for classify; a YOLO (data.yaml) or COCO (instances_*.json) dataset for detect; train/images and train/masks (and optionally val/) for segment; a folder of content images (optionally train/ and val/) for stylize. Required, except with --resume.", show_default=False)] = None,
    task: opt.Task = None,
    model: opt.Model = None,
    pretrained: Annotated[bool, typer.Option("--pretrained", help="Start from the architecture's ImageNet weights (fetched like `weights pull`); the classifier head is replaced for your classes.")] = _D.pretrained,
    epochs: Annotated[int, typer.Option(min=1, metavar="N", help="Passes over the training images.")] = _D.epochs,
    batch_size: opt.BatchSize = None,
    image_size: opt.ImageSize = None,
    optimizer: Annotated[Literal[OPTIMIZERS], typer.Option(case_sensitive=False, metavar="|".join(OPTIMIZERS), help="The optimizer.")] = _D.optimizer,
    lr: Annotated[Optional[float], typer.Option(metavar="RATE", help=f"Peak learning rate (default at batch 64: {_lr_defaults()}; x batch/64 for sgd, x sqrt(batch/64) for the others; x{PRETRAINED_LR_SHARE} with --pretrained).", show_default=False)] = None,
    momentum: Annotated[float, typer.Option(metavar="M", help="Momentum for sgd and rmsprop.")] = _D.momentum,
    nesterov: Annotated[bool, typer.Option("--nesterov", help="Nesterov momentum (sgd).")] = _D.nesterov,
    weight_decay: Annotated[Optional[float], typer.Option(metavar="DECAY", help=f"Weight decay (default: {', '.join(f'{v:g} {k}' for k, v in DEFAULT_WD.items())}); never applied to norm layers and biases.", show_default=False)] = None,
    scheduler: Annotated[Literal[SCHEDULERS], typer.Option(case_sensitive=False, metavar="|".join(SCHEDULERS), help="Learning-rate schedule after warm-up, per iteration (step: x0.1 at 50% and 75%).")] = _D.scheduler,
    warmup_epochs: Annotated[float, typer.Option(min=0, metavar="EPOCHS", help="Linear warm-up length in epochs.")] = _D.warmup_epochs,
    label_smoothing: Annotated[float, typer.Option(min=0, max=0.99, metavar="EPSILON", help="Cross-entropy label smoothing.")] = _D.label_smoothing,
    augment: Annotated[Literal[AUGMENTS], typer.Option(case_sensitive=False, metavar="|".join(AUGMENTS), help="Training augmentation (light: random resized crop and flip).")] = _D.augment,
    crop_scale: Annotated[float, typer.Option(metavar="SHARE", help="Smallest share of an image a random crop keeps (light, randaugment, trivialaugment); 1 keeps it whole.")] = _D.crop_scale,
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="Random horizontal flips while augmenting (--no-flip for digits, text, ...).")] = _D.flip,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed precision (default: on for CUDA with fp16, off on the CPU where --amp means bf16).", show_default=False)] = None,
    patience: Annotated[int, typer.Option(min=0, metavar="EPOCHS", help="Stop after this many epochs without a better best-epoch score: val top-1 (classify), mAP (detect), mIoU (segment), loss (stylize); 0: never.")] = _D.patience,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed for weights, split, order and augmentation: same seed, same run.")] = _D.seed,
    val_fraction: Annotated[float, typer.Option(metavar="SHARE", help="Share of each class held out when DATA has no val/ folder.")] = _D.val_fraction,
    style_image: opt.StyleImage = None,
    content_weight: opt.ContentWeight = None,
    style_weight: opt.StyleWeight = None,
    tv_weight: opt.TvWeight = None,
    loss_net: opt.LossNet = None,
    width: opt.Width = None,
    scales: opt.Scales = None,
    guided_filter: opt.GuidedFilter = None,
    device: opt.Device = _D.device,
    workers: opt.Workers = None,
    resume: Annotated[Optional[Path], typer.Option(metavar="RUN_DIR", help="Continue the run in RUN_DIR from its last finished epoch. The original command line may be repeated: only options whose values differ from the run's are refused (--epochs, --patience, --device, --workers and --quiet may change).", show_default=False)] = None,
    output: opt.Output = None,
    out: Annotated[Optional[Path], typer.Option("--out", hidden=True)] = None,  # the earlier name of --output
    offline: opt.Offline = False,
    quiet: opt.Quiet = _D.quiet,
) -> None:
    """Train a classifier, a detector, a segmentation model or a style network; writes checkpoints, results.csv and plots."""
    from visiontool.train import engine

    given = _given(ctx)
    command = _command(ctx, given)
    run_dir = output if output is not None else out
    with _network_off(offline):
        if resume is not None:
            recorded = {"output" if name == "out" else name: ctx.params[name] for name in given if name != "resume"}
            recorded.pop("offline", None)  # how weights are fetched, not what the run is
            _print_run_dir(engine.resume(resume, recorded, command=command))
            return
        from visiontool.train.job import refuse_unread_options

        refuse_unread_options(task or _D.task, given)
        cfg = TrainConfig(
            task=task or _D.task, data=str(data) if data is not None else "", model=model or "", pretrained=pretrained,
            epochs=epochs, batch_size=batch_size, image_size=image_size,
            optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
            scheduler=scheduler, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, augment=augment,
            crop_scale=crop_scale, flip=flip, amp=amp, patience=patience, seed=seed, val_fraction=val_fraction,
            device=device, workers=workers, out=str(run_dir) if run_dir is not None else None, quiet=quiet,
            command=command, style_image=str(style_image) if style_image is not None else None,
            content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
            loss_net=loss_net, width=width, scales=scales,
            guided_filter=guided_filter,
        )
        _print_run_dir(engine.train(cfg))


def _network_off(offline: bool):
    """--offline for everything the run loads (the weights module reads VISIONTOOL_OFFLINE)."""
    import contextlib
    import os

    from visiontool.weights import ENV_OFFLINE

    @contextlib.contextmanager
    def scope():
        before = os.environ.get(ENV_OFFLINE)
        os.environ[ENV_OFFLINE] = "1"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(ENV_OFFLINE, None)
            else:
                os.environ[ENV_OFFLINE] = before

    return scope() if offline else contextlib.nullcontext()


def _print_run_dir(result) -> None:
    """The run folder on stdout, one line, so that a script can use it; all else is on stderr."""
    import os

    if os.environ.get("RANK", "0") == "0":  # under torchrun, once
        typer.echo(str(result.run_dir))


def _given(ctx: typer.Context) -> list[str]:
    """Names of the parameters typed on the command line (not left at their defaults)."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return [name for name, source in sources.items() if source is not None and source.name != "DEFAULT"]


def _command(ctx: typer.Context, given: list[str]) -> str:
    """The command as a user would retype it: every option that was given, canonical spelling."""
    words = ["visiontool", "train"]
    by_name = {p.name: p for p in ctx.command.params}
    for name in given:
        value, param = ctx.params[name], by_name[name]
        if param.param_type_name == "argument":
            words.insert(2, str(value))
        elif isinstance(value, bool):
            flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            words.append(flag if value else next((o for o in param.secondary_opts if o.startswith("--")), flag))
        elif name == "out":  # the earlier name, recorded as today's
            words += ["--output", str(value)]
        else:
            words += [next(o for o in param.opts if o.startswith("--")), str(value)]
    return shlex.join(words)
