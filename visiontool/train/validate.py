"""`visiontool val`: accuracy of any classifier on a labelled folder.

The folder is DATA/val/ (or valid/, validation/) when there is one, else DATA's own class
folders. For a checkpoint trained on a dataset without a val folder (DATA/train/, or the very
folder of class folders it trained on), the images are split again with the run's seed and
fraction, so `val` scores exactly the images training held out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from visiontool.errors import DatasetError
from visiontool.train import data as folder_data
from visiontool.train.metrics import Summary

_MAX_LISTED_LABELS = 8  # in the "does not know" message


@dataclass
class ValReport:
    model: str  # what was evaluated (as given)
    arch: str
    source: str  # which images: a folder, or the held-out split of one
    summary: Summary  # over the model's whole label space
    present: list[int]  # label indices that have images in the folder
    skipped: list[tuple[Path, str]]  # unreadable files (path, reason)

    def show(self) -> None:
        from visiontool.cli.val import show_classification

        show_classification(self.to_dict())

    def to_dict(self) -> dict:
        s = self.summary
        labels = [s.labels[i] for i in self.present]
        rows = [[s.confusion[i][j] for j in self.present] for i in self.present]
        other = [sum(s.confusion[i]) - sum(row) for i, row in zip(self.present, rows)]
        columns = labels + (["(other)"] if any(other) else [])
        if any(other):
            rows = [row + [o] for row, o in zip(rows, other)]
        return {
            "model": self.model,
            "arch": self.arch,
            "data": self.source,
            "images": s.count,
            "skipped": len(self.skipped),
            "top1": s.top1,
            "top5": s.top5,
            "top5_k": s.k,
            "per_class": [
                {"label": s.labels[i], "images": s.per_class_count[i], "accuracy": s.per_class[s.labels[i]]}
                for i in self.present
            ],
            "confusion": {"rows": labels, "columns": columns, "counts": rows},
        }


def validate(
    model: str,
    data: str | os.PathLike,
    weights: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    workers: int | None = None,
    offline: bool = False,
    quiet: bool = False,
):
    """The model's task's report (ValReport for classifiers); each task's training module
    knows its metrics and has the `validate` that computes them."""
    import importlib

    from visiontool.models.loader import load_model
    from visiontool.train.job import MODULES
    from visiontool.train.progress import Reporter

    say = Reporter(quiet)
    loaded = load_model(model, weights, offline=offline, quiet=quiet)
    task_module = importlib.import_module(MODULES[loaded.info.task])
    return task_module.validate(loaded, model, data, device, batch_size, workers, say)


def validate_classifier(loaded, model: str, data, device: str, batch_size: int, workers: int | None, say) -> ValReport:
    """Top-1, top-5, per class and the confusion matrix on a labelled folder."""
    import torch

    from visiontool.train import distributed
    from visiontool.train.classify import evaluate

    labels = list(loaded.info.labels)
    pp = loaded.info.preprocess
    split, classes, source, bad = _images(Path(data), model)
    index = {label: i for i, label in enumerate(labels)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        known = ", ".join(labels[:_MAX_LISTED_LABELS]) + (", ..." if len(labels) > _MAX_LISTED_LABELS else "")
        raise DatasetError(
            f"classes in {split.folder} that {model} was not trained on: {', '.join(unknown)} (it knows {known})"
        )
    target = folder_data.Split(split.folder, split.files, [index[classes[y]] for y in split.labels])
    with say.bar(f"decoding {len(target.files)} images", len(target.files)) as advance:
        cache = folder_data.decode_split(target, pp, workers or os.cpu_count() or 1, advance)
    skipped = bad + cache.skipped
    if skipped:
        say.warn(folder_data.skipped_note(skipped))
    if not len(cache.labels):
        raise DatasetError(f"no readable images in {split.folder}")
    dev = distributed.pick_device(device, distributed.Dist())
    module = loaded.module.to(dev).to(memory_format=torch.channels_last)
    batches = [(cache.images[i : i + batch_size], cache.labels[i : i + batch_size]) for i in range(0, len(cache.labels), batch_size)]
    with say.bar("evaluating", len(batches), unit="batch") as advance:
        def counted():
            for b in batches:
                yield b
                advance(1)

        summary = evaluate(module, counted(), pp, dev, len(labels), labels)
    present = sorted(set(target.labels))
    return ValReport(model, loaded.info.arch, source, summary, present, skipped)


def _images(root: Path, model: str) -> tuple[folder_data.Split, list[str], str, list]:
    """The labelled images to score, their class names (labels index them), a description of
    them, and files skipped while scanning."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    for name in folder_data.VAL_FOLDERS:
        if (root / name).is_dir():
            return _scan(root / name)
    options = _training_split_options(model)
    trained_here = options is not None and bool(options[2]) and Path(options[2]).resolve() == root.resolve()
    if (root / "train").is_dir() or trained_here:
        if options is None:
            raise DatasetError(
                f"no val/ folder in {root}: point DATA at a folder of class folders or at a dataset with val/"
            )
        fraction, seed, _ = options
        ds = folder_data.scan_dataset(root, fraction, seed)
        return ds.val, ds.classes, f"{root}: {ds.val_source}, held out in training", ds.unreadable
    return _scan(root)


def _scan(folder: Path) -> tuple[folder_data.Split, list[str], str, list]:
    images, bad = folder_data.scan_classes(folder)
    if not any(images.values()):
        raise DatasetError(f"no images found in {folder}")
    classes = sorted(images)
    return folder_data.flatten(folder, images, classes), classes, str(folder), bad


def _training_split_options(model: str) -> tuple[float, int, str] | None:
    """(val_fraction, seed, DATA) of the run that wrote checkpoint `model`, if it is one."""
    from visiontool import checkpoint

    if not Path(model).is_file():
        return None
    meta = checkpoint.read_meta(model) or {}
    options = (meta.get("train") or {}).get("options") or {}
    if "val_fraction" not in options or "seed" not in options:
        return None
    return float(options["val_fraction"]), int(options["seed"]), str(options.get("data") or "")
