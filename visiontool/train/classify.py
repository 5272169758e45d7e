"""Classification's part of training: a folder dataset decoded once into uint8 caches,
batch augmentation, cross-entropy, top-1/top-5 and the confusion matrix.

Evaluation feeds the model exactly what `classify` feeds it (the checkpoint's Preprocess), so
the reported val top-1 is what a user gets back from the best checkpoint.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from visiontool.errors import DatasetError, UsageError
from visiontool.preprocess import Preprocess
from visiontool.train import data as folder_data
from visiontool.train import distributed, report
from visiontool.train.augment import Augmenter, sample_params
from visiontool.train.config import resolved_workers
from visiontool.train.job import (Normalize, TaskTraining, check_input_size, fine_tune_line, require_task,
                                  weights_to_start_from)
from visiontool.train.metrics import Accumulator, Summary


class ClassifyTraining(TaskTraining):
    task = "classify"
    columns = ("train_loss", "train_acc", "val_loss", "val_top1", "val_top5")
    best_metric = "val_top1"
    reads = frozenset({"pretrained", "augment", "crop_scale", "label_smoothing"})
    train_sums = 2  # loss sum, correct

    def __init__(self, cfg, dist, device, say) -> None:
        self.cfg, self.dist, self.device = cfg, dist, device
        workers = resolved_workers(cfg.workers, dist.local_world)

        # --- data: folders -> checked splits -> model preprocessing -> uint8 caches
        dataset = folder_data.scan_dataset(cfg.data, cfg.val_fraction, cfg.seed)
        self.labels = dataset.classes
        torch.manual_seed(cfg.seed)  # weights init: identical on every rank and every rerun
        module, self.arch, self.arch_kwargs, base_pp, start = make_model(cfg, len(self.labels))
        if start:
            say.line(start)
        self.preprocess = eval_pp = eval_preprocess(base_pp, cfg.image_size, keep_margin=cfg.pretrained)
        train_pp = eval_pp if cfg.augment == "none" else folder_data.train_cache_preprocess(eval_pp)
        total = len(dataset.train.files) + len(dataset.val.files)
        share = len(_shard(dataset.train, dist).files) + len(_shard(dataset.val, dist).files)  # rank 0 decodes these
        with say.bar(f"decoding {total} images", share) as advance:
            self.train_set = _decode_shared(dataset.train, train_pp, workers, dist, advance)
            self.val_set = folder_data.decode_split(_shard(dataset.val, dist), eval_pp, workers, advance)
        skipped = dataset.unreadable + sum(distributed.all_gather(dist, self.train_set.skipped + self.val_set.skipped), [])
        if skipped:
            say.warn(folder_data.skipped_note(skipped))
        _check_after_decode(self.labels, self.train_set, dataset.train.folder)
        self.n_val = sum(distributed.all_gather(dist, len(self.val_set.labels)))
        if self.n_val == 0:
            raise DatasetError(f"no readable validation images ({dataset.val_source})")
        self.n_train, self.val_source = len(self.train_set.labels), dataset.val_source

        self.module = module.to(device).to(memory_format=torch.channels_last)
        check_input_size(self.module, self.arch, eval_pp.crop, eval_pp.channels, device)
        self.augmenter = Augmenter(cfg.augment, eval_pp.crop)
        self.normalize = Normalize(eval_pp, device)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def describe(self) -> str:
        return (f"{self.arch}: {len(self.labels)} classes, {self.n_train} training images, {self.n_val} validation "
                f"({self.val_source}), {self.preprocess.crop}px")

    def epoch_params(self, n, generator):
        return sample_params(n, generator, self.cfg.crop_scale, self.cfg.flip)

    def batch(self, idx, params, device):
        images = self.augmenter.on_host(self.train_set.images[idx], params)
        x = self.normalize(self.augmenter.on_device(images.to(device, non_blocking=True), params))
        return x, self.train_set.labels[idx].to(device, non_blocking=True)

    def loss(self, outputs, targets):
        loss = self.criterion(outputs.float(), targets)
        with torch.no_grad():  # summed on the device: no wait for it here
            sums = torch.stack([loss.detach().double() * len(targets), (outputs.argmax(1) == targets).sum().double()])
        return loss, sums

    def train_row(self, sums, seen):
        return {"train_loss": sums[0] / seen, "train_acc": sums[1] / seen}

    def evaluate(self, module, batch_size, amp_dtype):
        summary = evaluate(module, _batches(self.val_set, batch_size), self.preprocess, self.device, len(self.labels),
                           self.labels, criterion=self.criterion, amp_dtype=amp_dtype, dist=self.dist)
        self.k = summary.k
        return {"val_loss": summary.loss, "val_top1": summary.top1, "val_top5": summary.top5}, summary.confusion

    def epoch_line(self, row):
        return (f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  "
                f"val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.2%} top-{self.k} {row['val_top5']:.2%}")

    def best_line(self, score):
        return f"best val top-1 {score:.2%}"

    def plots(self, run_dir, rows, best, best_epoch):
        report.plot_curves(run_dir / "curves.png", rows)
        top1 = next(r["val_top1"] for r in rows if r["epoch"] == best_epoch)
        report.plot_confusion(run_dir / "confusion.png", best, self.labels,
                              f"{self.arch}, epoch {best_epoch}: val top-1 {top1:.2%}")
        return ["curves.png", "confusion.png"]


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
    normalize = Normalize(pp, device)
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


def make_model(cfg, num_classes: int) -> tuple[nn.Module, str, dict, Preprocess, str]:
    """(module, arch, arch_kwargs, the weights' or architecture's preprocessing, and a line
    saying which weights training starts from: "" for a new network)."""
    from visiontool.models import registry

    spec, fine_tune = weights_to_start_from(cfg.model)
    if cfg.pretrained or fine_tune:
        from visiontool.models.loader import load_model

        if spec is not None and spec.default_weights is None and spec.shipped_file is None:
            raise UsageError(f"{spec.name} has no pretrained weights: drop --pretrained to train it from scratch")
        # Everything but the classifier head comes from the weights; the head is new and sized
        # for the dataset's classes (the loader finds it by what changes with num_classes),
        # unless the weights have as many classes already.
        loaded = load_model(cfg.model, None, quiet=cfg.quiet, num_classes=num_classes)
        info = loaded.info
        require_task(cfg.model, info.task, registry.TASK_CLASSIFY)
        start = fine_tune_line(cfg.model, num_classes) if fine_tune else ""
        return loaded.module, info.arch, dict(info.extra.get("arch_kwargs") or {}), info.preprocess, start
    require_task(spec.name, spec.task, registry.TASK_CLASSIFY)
    module = registry.build(spec.arch, num_classes, **spec.arch_kwargs)
    return module, spec.arch, dict(spec.arch_kwargs), spec.preprocess, ""


def eval_preprocess(base: Preprocess, image_size: int | None, keep_margin: bool) -> Preprocess:
    """How checkpoints see images: the architecture's normalization at `image_size`.

    Pretrained weights keep their own resize/crop ratio (256/224 for torchvision's), which
    their features were tuned to. A model trained from scratch sees the whole centred square
    (resize == crop): with random resized crops for training, a center-crop margin at test time
    only throws away a quarter of each image (on 64 px textures it cost about a point).
    """
    size = image_size or base.crop
    if keep_margin:
        sized = base if size == base.crop else base.at_size(size)
        return replace(sized, resize=max(sized.resize, size))
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

Training = ClassifyTraining


def validate(loaded, model, data, device, batch_size, workers, say):
    from visiontool.train.validate import validate_classifier

    return validate_classifier(loaded, model, data, device, batch_size, workers, say)
