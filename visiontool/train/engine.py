"""The training engine: one loop, read top to bottom in `_fit`.

    data  -> scan the folder, decode every image once into uint8 caches (data.py)
    model -> registry architecture, or pretrained weights with a new head (models.loader)
    loop  -> per epoch: shuffled global batches, augmentation on the batch, forward, loss,
             backward, optimizer step, per-iteration lr schedule; then validation
    files -> results.csv, best/last checkpoints, state.pt (resume), curves and confusion PNGs

Evaluation feeds the model exactly what `classify` feeds it (the checkpoint's Preprocess), so
the reported val top-1 is what a user gets back from the best checkpoint.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from visiontool.errors import DatasetError, UsageError
from visiontool.preprocess import Preprocess
from visiontool.train import data as folder_data
from visiontool.train import distributed, report, rundir
from visiontool.train.augment import Augmenter, sample_params
from visiontool.train.config import RESUME_OVERRIDES, TrainConfig
from visiontool.train.metrics import Accumulator, Summary
from visiontool.train.optim import build_optimizer, build_scheduler
from visiontool.train.progress import Reporter
from visiontool.train.rundir import BEST_FILE, STATE_FILE



@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int  # epochs finished in total (including those before a resume)
    best_epoch: int  # 1-based epoch of best.safetensors
    best_top1: float
    rows: list[dict] = field(default_factory=list)  # results.csv as dicts
    stopped_early: bool = False  # --patience ended the run


# ---------------------------------------------------------------------------------- entry points


def train(cfg: TrainConfig, on_epoch_end: Callable[[dict], None] | None = None) -> TrainResult:
    """Train a classifier as `cfg` says; `on_epoch_end(row)` is called after each saved epoch."""
    return _run(cfg.resolve(), None, on_epoch_end)


def resume(
    run_dir: str | os.PathLike,
    overrides: dict | None = None,
    command: str = "",
    on_epoch_end: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Continue the run in `run_dir` from its last finished epoch. Only RESUME_OVERRIDES may
    change; a larger `epochs` trains longer (the lr schedule is stretched to the new end)."""
    run_dir = Path(run_dir)
    if not (run_dir / STATE_FILE).is_file() or not (run_dir / "config.json").is_file():
        raise UsageError(f"nothing to resume in {run_dir}: no {STATE_FILE} and config.json from `visiontool train`")
    overrides = dict(overrides or {})
    refused = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if refused:
        names = ", ".join("--" + k.replace("_", "-") for k in refused)
        raise UsageError(f"{names} cannot change when resuming (only {', '.join('--' + k for k in RESUME_OVERRIDES)})")
    cfg = replace(TrainConfig.load(run_dir / "config.json"), **overrides, out=str(run_dir))
    return _run(cfg.resolve(), run_dir, on_epoch_end, resume_command=command)


# ------------------------------------------------------------------------------------- the run


def _run(cfg: TrainConfig, resume_dir: Path | None, on_epoch_end, resume_command: str = "") -> TrainResult:
    dist = distributed.from_env()
    device = distributed.pick_device(cfg.device, dist)
    distributed.init(dist, device)
    previous = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        # Same seed, same numbers. The CPU kernels used here are deterministic already; on CUDA
        # ask cuDNN for its deterministic algorithms. (torch.use_deterministic_algorithms would
        # also do it, but it imports the whole compiler stack: seconds of start-up.)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        return _fit(cfg, dist, device, resume_dir, on_epoch_end, resume_command)
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous
        distributed.shutdown(dist)


def _fit(cfg, dist, device, resume_dir, on_epoch_end, resume_command) -> TrainResult:
    say = Reporter(cfg.quiet, active=dist.is_main)
    workers = cfg.workers or max(1, (os.cpu_count() or 1) // dist.local_world)

    # --- data: folders -> checked splits -> model preprocessing -> uint8 caches
    dataset = folder_data.scan_dataset(cfg.data, cfg.val_fraction, cfg.seed)
    classes = dataset.classes
    torch.manual_seed(cfg.seed)  # weights init: identical on every rank and every rerun
    module, arch, arch_kwargs, base_pp = _make_model(cfg, len(classes))
    eval_pp = eval_preprocess(base_pp, cfg.image_size, keep_margin=cfg.pretrained)
    train_pp = eval_pp if cfg.augment == "none" else folder_data.train_cache_preprocess(eval_pp)
    total = len(dataset.train.files) + len(dataset.val.files)
    share = len(_shard(dataset.train, dist).files) + len(_shard(dataset.val, dist).files)  # rank 0 decodes these
    with say.bar(f"decoding {total} images", share) as advance:
        train_set = _decode_shared(dataset.train, train_pp, workers, dist, advance)
        val_set = folder_data.decode_split(_shard(dataset.val, dist), eval_pp, workers, advance)
    skipped = dataset.unreadable + sum(distributed.all_gather(dist, train_set.skipped + val_set.skipped), [])
    if skipped:
        path, reason = skipped[0]
        say.warn(f"skipped {len(skipped)} unreadable image{'s' * (len(skipped) > 1)} (first: {path}: {reason})")
    _check_after_decode(classes, train_set, dataset.train.folder)
    n_val = sum(distributed.all_gather(dist, len(val_set.labels)))
    if n_val == 0:
        raise DatasetError(f"no readable validation images ({dataset.val_source})")

    # --- batches: --batch-size is global; each rank takes its slice of every global batch
    n_train = len(train_set.labels)
    batch = cfg.batch_size
    if batch % dist.world:
        raise UsageError(f"--batch-size {batch} is the global batch: it must divide evenly over {dist.world} processes")
    if batch > n_train:
        batch = n_train - n_train % dist.world
        if batch == 0:
            raise DatasetError(f"too few training images ({n_train}) for {dist.world} processes")
        say.line(f"batch size lowered to {batch}: the training split has {n_train} images")
    steps = n_train // batch  # the incomplete last batch is dropped (it differs each epoch)
    local_batch = batch // dist.world

    # --- model, optimizer, schedule, mixed precision
    module = module.to(device).to(memory_format=torch.channels_last)
    _check_input_size(module, arch, eval_pp, device)
    _settle_batchnorm(module, steps)
    if dist.enabled and device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    optimizer = build_optimizer(module, cfg.optimizer, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.epochs * steps, round(cfg.warmup_epochs * steps), cfg.scheduler)
    use_amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and device.type == "cuda")
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    state = rundir.State()
    if resume_dir is not None:
        state = rundir.load_state(resume_dir / STATE_FILE, module, optimizer, scheduler, scaler)
        if state.epoch >= cfg.epochs:
            raise UsageError(
                f"{resume_dir} already trained {state.epoch} of {cfg.epochs} epochs: pass a larger --epochs to continue"
            )
    net = module
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    run_dir = distributed.broadcast(dist, rundir.prepare_run_dir(cfg, resume_dir, resume_command) if dist.is_main else None)
    if resume_dir is None:
        say.line(
            f"{arch}: {len(classes)} classes, {n_train} training images, {n_val} validation ({dataset.val_source}), "
            f"{eval_pp.crop}px, batch {batch}{f' ({dist.world} processes)' if dist.enabled else ''}, {device}"
        )
    else:
        say.line(f"resuming {run_dir} after epoch {state.epoch}")

    meta = rundir.meta_base(cfg, arch, arch_kwargs, classes, eval_pp, dist.world)
    augmenter = Augmenter(cfg.augment, eval_pp.crop)
    normalize = _Normalize(eval_pp, device)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if use_amp else nullcontext

    # --- the loop
    stopped_early = False
    try:
        for epoch in range(state.epoch, cfg.epochs):
            started = time.perf_counter()
            # Every random draw of an epoch comes from (seed, epoch): order, crops, flips,
            # policies, dropout. A resumed run continues with the very numbers it would have had.
            gen = torch.Generator().manual_seed(_seed(cfg.seed, epoch))
            torch.manual_seed(_seed(cfg.seed, epoch, dist.rank + 1))
            order = torch.randperm(n_train, generator=gen)
            params = sample_params(steps * batch, gen, cfg.crop_scale, cfg.flip)

            net.train()
            sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, correct (this rank)
            with say.bar(f"epoch {epoch + 1}/{cfg.epochs}", steps, unit="batch") as advance:
                for step in range(steps):
                    mine = slice(step * batch + dist.rank * local_batch, step * batch + (dist.rank + 1) * local_batch)
                    idx = order[mine]
                    images = augmenter.on_host(train_set.images[idx], params[mine])
                    x = normalize(augmenter.on_device(images.to(device, non_blocking=True), params[mine]))
                    y = train_set.labels[idx].to(device, non_blocking=True)
                    with autocast():
                        logits = net(x)
                    loss = criterion(logits.float(), y)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    with torch.no_grad():  # summed on the device: no wait for it here
                        sums[0] += loss.detach().double() * len(y)
                        sums[1] += (logits.argmax(1) == y).sum()
                    if step % 10 == 9 or step == steps - 1:  # .item() waits for the device: not every step
                        advance(1, info=f"loss {loss.item():.3f}")
                    else:
                        advance(1)
            distributed.all_reduce_(dist, sums)
            distributed.broadcast_buffers_(dist, module)
            summary = evaluate(module, _batches(val_set, local_batch * 2), eval_pp, device, len(classes), classes,
                               criterion=criterion, amp_dtype=amp_dtype if use_amp else None, dist=dist)
            loss_sum, correct = sums.tolist()
            seen = steps * batch
            row = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / seen,
                "train_acc": correct / seen,
                "val_loss": summary.loss,
                "val_top1": summary.top1,
                "val_top5": summary.top5,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
            }
            improved = summary.top1 > state.best_top1
            if improved:
                state.best_top1, state.best_epoch, state.best_confusion = summary.top1, epoch + 1, summary.confusion
                state.since_best = 0
            else:
                state.since_best += 1
            state.epoch = epoch + 1
            state.rows.append(row)
            if dist.is_main:
                rundir.save_epoch(run_dir, module, optimizer, scheduler, scaler, state, meta, row, improved)
            say.line(rundir.epoch_line(row, cfg.epochs, summary.k, improved))
            if on_epoch_end is not None:
                on_epoch_end(row)
            if cfg.patience and state.since_best >= cfg.patience:
                stopped_early = True
                say.line(f"stopping early: no better val top-1 for {cfg.patience} epochs")
                break
    except KeyboardInterrupt:
        if state.epoch:
            say.warn(f"interrupted after epoch {state.epoch}; continue with: visiontool train --resume {run_dir}")
        raise

    if dist.is_main:
        report.plot_curves(run_dir / "curves.png", state.rows)
        report.plot_confusion(
            run_dir / "confusion.png", state.best_confusion, classes,
            f"{arch}, epoch {state.best_epoch}: val top-1 {state.best_top1:.2%}",
        )
    say.line(
        f"best val top-1 {state.best_top1:.2%} at epoch {state.best_epoch}; "
        f"{run_dir}/{BEST_FILE} (use it as `visiontool classify --model`), results.csv, curves.png, confusion.png"
    )
    return TrainResult(run_dir, state.epoch, state.best_epoch, state.best_top1, state.rows, stopped_early)


# ------------------------------------------------------------------------------------ evaluation


class _Normalize:
    """uint8-range float images -> the model's normalized input, channels_last."""

    def __init__(self, pp: Preprocess, device):
        std = torch.tensor(pp.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean = torch.tensor(pp.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = mean / std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.scale - self.shift).contiguous(memory_format=torch.channels_last)


def _batches(cache: folder_data.ImageCache, size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(cache.labels), size):
        yield cache.images[start : start + size], cache.labels[start : start + size]


def evaluate(
    module: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    pp: Preprocess,
    device,
    num_classes: int,
    labels: list[str],
    criterion: nn.Module | None = None,
    amp_dtype=None,
    dist: distributed.Dist | None = None,
) -> Summary:
    """Top-1, top-5, per-class accuracy, confusion matrix (and loss) over uint8 image batches
    already resized and cropped by `pp`; shards of a torchrun job are summed over ranks."""
    normalize = _Normalize(pp, device)
    acc = Accumulator(num_classes, device)
    was_training = module.training
    module.eval()
    with torch.inference_mode():
        for images, targets in batches:
            x = normalize(images.to(device, non_blocking=True))
            y = targets.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext():
                logits = module(x).float()
            loss_sum = None
            if criterion is not None:
                loss_sum = nn.functional.cross_entropy(
                    logits, y, reduction="sum", label_smoothing=getattr(criterion, "label_smoothing", 0.0)
                )
            acc.update(logits, y, loss_sum)
    module.train(was_training)
    if dist is not None and dist.enabled:
        acc.all_reduce()
    return acc.summary(labels)


# ------------------------------------------------------------------------------- model and data


def _make_model(cfg: TrainConfig, num_classes: int) -> tuple[nn.Module, str, dict, Preprocess]:
    """(module, arch, arch_kwargs, the weights' or architecture's preprocessing)."""
    from visiontool.models import registry

    is_file = Path(cfg.model).suffix.lower() in (".safetensors", ".pth", ".pt") or Path(cfg.model).is_file()
    if cfg.pretrained or is_file:
        from visiontool.models.loader import load_model

        if not is_file:
            spec = registry.get_spec(cfg.model)
            if spec.default_weights is None and spec.shipped_file is None:
                raise UsageError(f"{spec.name} has no pretrained weights: drop --pretrained to train it from scratch")
        # Everything but the classifier head comes from the weights; the head is new and sized
        # for the dataset's classes (the loader finds it by what changes with num_classes).
        loaded = load_model(cfg.model, None, quiet=cfg.quiet, num_classes=num_classes)
        info = loaded.info
        if info.task != registry.TASK_CLASSIFY:
            raise UsageError(f"{cfg.model} is a {info.task} model; `train` fits classifiers")
        return loaded.module, info.arch, dict(info.extra.get("arch_kwargs") or {}), info.preprocess
    spec = registry.get_spec(cfg.model)
    if spec.task != registry.TASK_CLASSIFY:
        raise UsageError(f"{spec.name} is a {spec.task} model; `train` fits classifiers")
    module = registry.build(spec.arch, num_classes, **spec.arch_kwargs)
    return module, spec.arch, dict(spec.arch_kwargs), spec.preprocess


def _check_input_size(module: nn.Module, arch: str, pp: Preprocess, device) -> None:
    """One dry forward pass, so an input size the architecture cannot take is a clear usage
    error now rather than a shape error in the middle of the first epoch."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, pp.channels, pp.crop, pp.crop, device=device))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"{arch} cannot take {pp.crop}x{pp.crop} inputs ({reason}): choose another --image-size") from None
    finally:
        module.train(was_training)


def _settle_batchnorm(module: nn.Module, steps_per_epoch: int) -> None:
    """Let batch-norm running statistics catch up within an epoch.

    Some architectures ship ImageNet-recipe momenta (MobileNetV3 0.01, MNASNet 0.0003) meant
    for hundreds of thousands of steps; after one epoch of a small dataset their running
    statistics would still be the initial 0/1 and every evaluation would be at chance. A floor
    of about two updates per epoch (at most PyTorch's default 0.1) fixes that and leaves the
    usual momenta of long runs alone. Training-time only: nothing in the weights changes.
    """
    floor = min(0.1, 2.0 / max(1, steps_per_epoch))
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is not None and m.momentum < floor:
            m.momentum = floor


def eval_preprocess(base: Preprocess, image_size: int | None, keep_margin: bool) -> Preprocess:
    """How checkpoints see images: the architecture's normalization at `image_size`.

    Pretrained weights keep their own resize/crop ratio (256/224 for torchvision's), which
    their features were tuned to. A model trained from scratch sees the whole centred square
    (resize == crop): with random resized crops for training, a center-crop margin at test time
    only throws away a quarter of each image (on 64 px textures it cost about a point).
    """
    size = image_size or base.crop
    if keep_margin:
        resize = base.resize if size == base.crop else round(size * base.resize / base.crop)
        return replace(base, crop=size, resize=max(resize, size))
    return replace(base, crop=size, resize=size)


def _shard(split: folder_data.Split, dist: distributed.Dist) -> folder_data.Split:
    if not dist.enabled:
        return split
    return folder_data.Split(split.folder, split.files[dist.rank :: dist.world], split.labels[dist.rank :: dist.world])


def _decode_shared(split, pp, workers, dist, advance) -> folder_data.ImageCache:
    """All images of `split` on every rank; in a torchrun job each rank decodes a share."""
    if not dist.enabled:
        return folder_data.decode_split(split, pp, workers, advance)
    part = folder_data.decode_split(_shard(split, dist), pp, workers, advance)
    shares = distributed.all_gather(dist, (part.images, part.kept, part.skipped))
    position = torch.tensor([r + dist.world * k for r, (_, kept, _) in enumerate(shares) for k in kept])
    order = torch.argsort(position)
    images = torch.cat([s[0] for s in shares])[order]
    position = position[order]
    labels = torch.as_tensor(split.labels, dtype=torch.int64)[position]
    skipped = sum((s[2] for s in shares), [])
    return folder_data.ImageCache(images, labels, skipped, position.tolist())


def _check_after_decode(classes: list[str], cache: folder_data.ImageCache, folder: Path) -> None:
    counts = torch.bincount(cache.labels, minlength=len(classes))
    empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
    if empty:
        raise DatasetError(f"no readable images left for class {', '.join(empty)} in {folder}")


def _seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from small integers (seed, epoch, rank)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))
