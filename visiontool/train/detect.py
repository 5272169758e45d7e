"""Detection's part of training: a YOLO or COCO dataset decoded once into memory, batches
whose boxes move with the pixels, the detector's own loss, and COCO mAP from pycocotools.

Validation runs the model exactly as `detect` does: the checkpoint's letterbox preprocessing
(pipeline.load_one), the torch-free decoder, boxes mapped back to original pixels, then
COCOeval against the dataset's boxes. The best epoch is the one with the best mAP@0.5:0.95.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from visiontool.errors import DatasetError, UsageError
from visiontool.preprocess import Preprocess
from visiontool.train import detect_data, report
from visiontool.train.coco_eval import STAT_NAMES
from visiontool.train.job import TaskTraining, check_input_size, fine_tune_line, spec_and_start

DEFAULT_MODEL = "griddet"
VAL_CONF = 0.001  # mAP ranks every candidate: the score threshold is for users, not for COCOeval
VAL_IOU = 0.6
VAL_MAX_DET = 100
CACHE_SCALE = 1.6  # training images are cached with the long side at most this x the input side
TRAIN_CROP = 256  # side of the training crops (at most the input side)
SCALE_JITTER = (0.6, 1.5)  # object scale range of the crops, around "fits the input side"
# Share of training images that are four-image mosaics: on digit scenes it gave +2.7 points of
# mAP@0.5 and +3.1 of mAP@0.5:0.95 in 10 epochs (benchmarks/detector_recipe.py).
MOSAIC = 0.5
SHOWN_VAL_IMAGES = 8  # in val_predictions.png


class DetectTraining(TaskTraining):
    task = "detect"
    columns = ("train_loss", "train_box", "train_cls", "val_map50", "val_map")
    best_metric = "val_map"
    train_sums = 3  # loss, box loss, class loss (sums over images)
    grad_clip = 10.0  # early GIoU gradients of badly placed boxes can be large
    # Short CPU runs need steps more than big batches: 16 gave the benchmark's figures.
    default_batch_size = 16
    default_model = DEFAULT_MODEL
    conf = float("nan")  # the last evaluation's best-F1 score threshold

    def __init__(self, cfg, dist, device, say) -> None:
        from visiontool.models import griddet
        from visiontool.train.box_augment import BoxAugment

        self.cfg, self.dist, self.device = cfg, dist, device
        workers = cfg.workers or max(1, (os.cpu_count() or 1) // dist.local_world)
        data = detect_data.scan_detection(cfg.data, cfg.val_fraction, cfg.seed)
        for note in data.notes:
            say.line(note)
        self.labels, self.data = list(data.classes), data
        if not data.val:
            raise DatasetError(f"no validation images in {cfg.data} ({data.val_source})")

        spec, start = spec_and_start(cfg.model, self.task, DEFAULT_MODEL)
        torch.manual_seed(cfg.seed)
        self.kit = (_GridDet if spec.arch == griddet.ARCH else _Torchvision)(cfg, spec, self.labels, start)
        self.arch, self.arch_kwargs, self.preprocess = spec.arch, self.kit.arch_kwargs, self.kit.preprocess
        self.labels, size = self.kit.labels, self.kit.size
        if start is not None:
            say.line(fine_tune_line(start, len(self.labels)))
        module = self.kit.module
        side = round(CACHE_SCALE * size)
        with say.bar(f"decoding {len(data.train) + len(data.val)} images", len(data.train) + len(data.val)) as advance:
            with ThreadPoolExecutor(workers) as pool:
                train = list(pool.map(lambda s: _cached(s, side, advance), data.train))
                val = list(pool.map(lambda s: _val_input(s, self.preprocess, advance), data.val))
        bad = [(s.path, err) for s, (_, _, err) in zip(data.train, train) if err] + \
              [(s.path, err) for s, (_, _, err) in zip(data.val, val) if err]
        if bad:
            say.warn(f"skipped {len(bad)} unreadable image{'s' * (len(bad) > 1)} (first: {bad[0][0]}: {bad[0][1]})")
        self.images = [img for img, _, err in train if not err]
        self.targets = [t for _, t, err in train if not err]
        self.val_samples = [s for s, (_, _, err) in zip(data.val, val) if not err]
        self.val_inputs = [(a, g) for a, g, err in val if not err]
        if not self.images or not self.val_inputs:
            raise DatasetError(f"no readable {'training' if not self.images else 'validation'} images in {cfg.data}")
        self.n_train = len(self.images)

        self.module = module.to(device).to(memory_format=torch.channels_last)
        if self.kit.fixed_size:
            check_input_size(self.module, self.arch, size, 3, device)
        # Training sees crops of TRAIN_CROP px cut from images scaled as inference will see them
        # (fitted to the input side): 2.5x cheaper steps than whole 416 px inputs, same object sizes.
        self.augment = BoxAugment(size=min(size, TRAIN_CROP), fit=size, scale=SCALE_JITTER, mosaic=MOSAIC,
                                  mean=self.kit.mean, std=self.kit.std, flip=cfg.flip)

    @property
    def image_size(self) -> int:
        return self.kit.size

    def describe(self) -> str:
        boxes = sum(len(t[1]) for t in self.targets)
        return (f"{self.arch}: {len(self.labels)} classes, {self.n_train} training images ({boxes} boxes, "
                f"{self.data.format} format), {len(self.val_inputs)} validation ({self.data.val_source}), "
                f"{self.kit.size}px")

    def epoch_params(self, n, generator):
        return torch.randint(0, 2**31 - 1, (n, 1), generator=generator)

    def batch(self, idx, params, device):
        rng = np.random.default_rng(params[:, 0].tolist())  # this slice's draws, from the epoch's
        x, targets = self.augment(self.images, self.targets, idx.tolist(), rng)
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        return x, [(b.to(device), l.to(device)) for b, l in targets]

    def forward(self, net, x, targets):
        return self.kit.forward(net, x, targets)

    def loss(self, outputs, targets):
        total, box, cls = self.kit.loss(outputs, targets)
        n = len(targets)
        with torch.no_grad():
            sums = torch.stack([total.detach().double() * n, box.detach().double() * n, cls.detach().double() * n])
        return total, sums

    def train_row(self, sums, seen):
        return {"train_loss": sums[0] / seen, "train_box": sums[1] / seen, "train_cls": sums[2] / seen}

    def evaluate(self, module, batch_size, amp_dtype):
        from visiontool.train import coco_eval

        from visiontool.models import registry

        shown = registry.for_inference(self.arch, module)  # torchvision's: boxes, scores, labels
        preds = predict(shown, self.arch, self.val_inputs, batch_size, self.device, amp_dtype)
        truth = [(s.boxes, s.labels) for s in self.val_samples]
        metrics = coco_eval.evaluate(truth, preds, self.labels, crowd=[(s.crowd_boxes, s.crowd_labels) for s in self.val_samples])
        # What the plots need of this epoch, as plain lists: state.pt (for --resume) holds it and
        # is read back with weights_only=True, which allows nothing else.
        best = {"map50": metrics.map50, "map": metrics.map, "map75": metrics.map75, "per_class": metrics.per_class,
                "recall": metrics.recall.tolist(), "precision": metrics.precision.tolist(),
                "preds": [[b.tolist(), s.tolist(), lab.tolist()] for b, s, lab in preds[:SHOWN_VAL_IMAGES]]}
        self.conf = metrics.conf  # meta() records it with the checkpoint of this epoch
        return {"val_map50": _finite(metrics.map50), "val_map": _finite(metrics.map)}, best

    def meta(self):
        # detect's default --conf for this checkpoint (tasks/detect.py)
        return {**super().meta(), **({"conf": round(self.conf, 4)} if math.isfinite(self.conf) else {})}

    def epoch_line(self, row):
        return (f"train loss {row['train_loss']:.4f} (box {row['train_box']:.3f}, cls {row['train_cls']:.3f})  "
                f"val mAP@0.5 {row['val_map50']:.3f} mAP@0.5:0.95 {row['val_map']:.3f}")

    def best_line(self, score):
        return f"best val mAP@0.5:0.95 {score:.3f}"

    def plots(self, run_dir, rows, best, best_epoch):
        from visiontool import render
        from visiontool.imageio import decode
        from visiontool.train.detect_report import plot_pr_curves

        report.plot_curves(run_dir / "curves.png", rows, loss=("train_loss", "train_box", "train_cls"),
                           score=("val_map50", "val_map"), score_name="mAP")
        from visiontool.train.coco_eval import DetectionMetrics

        metrics = DetectionMetrics(best["map50"], best["map"], best["map75"], best["per_class"], [],
                                   np.asarray(best["recall"]), np.asarray(best["precision"]))
        plot_pr_curves(run_dir / "pr_curves.png", metrics, self.labels)
        shown = self.val_samples[: len(best["preds"])]
        images = [np.asarray(decode(s.path, "RGB")) for s in shown]
        truths = [_rows(s.boxes, np.ones(len(s.boxes)), s.labels, self.labels) for s in shown]
        found = [_rows(np.asarray(b).reshape(-1, 4), sc, lab, self.labels) for b, sc, lab in best["preds"]]
        render.truth_vs_prediction(images, truths, found, self.labels, run_dir / "val_predictions.png")
        return ["curves.png", "pr_curves.png", "val_predictions.png"]


Training = DetectTraining


class _GridDet:
    """The project's own detector: letterboxed input of a fixed side, its own loss."""

    fixed_size = True

    def __init__(self, cfg, spec, classes: list[str], start: str | None) -> None:
        from visiontool.models import griddet, registry
        from visiontool.models.loader import load_model

        # A checkpoint or shipped model to fine-tune: its weights, the class head sized for these
        # classes (the loader finds it by what changes with the number of classes).
        loaded = None if start is None else load_model(start, None, quiet=cfg.quiet, num_classes=len(classes))
        self.size = cfg.image_size or (loaded.info.preprocess if loaded else spec.preprocess).crop
        if self.size % griddet.SIZE_MULTIPLE:
            raise UsageError(f"--image-size {self.size}: {spec.arch} needs a multiple of {griddet.SIZE_MULTIPLE}")
        kwargs = loaded.info.extra.get("arch_kwargs") if loaded else spec.arch_kwargs
        self.mean, self.std, self.labels, self.arch_kwargs = griddet.MEAN, griddet.STD, classes, dict(kwargs or {})
        self.preprocess = Preprocess(crop=self.size, resize=self.size, mean=griddet.MEAN, std=griddet.STD, fit="letterbox")
        self.module = loaded.module if loaded else registry.build(spec.arch, len(classes), **self.arch_kwargs)
        self.loss_fn = griddet.loss

    def forward(self, net, x, targets):
        return net(x)

    def loss(self, outputs, targets):
        total, parts = self.loss_fn(outputs.float(), targets)
        return total, parts["box"], parts["cls"]


class _Torchvision:
    """torchvision's detectors: class 0 is the background, images in [0, 1] (they normalize
    and resize inside, to --image-size here), losses computed inside the model."""

    fixed_size = False

    def __init__(self, cfg, spec, classes: list[str], start: str | None) -> None:
        from visiontool.models import registry
        from visiontool.models.loader import load_model

        self.size = cfg.image_size or 512  # a CPU-sized default; the COCO recipes use 800
        self.mean, self.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.labels = ["__background__", *classes]
        self.arch_kwargs = {"min_size": self.size, "max_size": self.size} if "ssd" not in spec.arch else {}
        self.preprocess = registry.DETECTOR_PREPROCESS
        if cfg.pretrained or start:  # COCO weights or a checkpoint's, with the heads sized for these classes
            loaded = load_model(start or cfg.model, None, quiet=cfg.quiet, num_classes=len(self.labels))
            self.module = getattr(loaded.module, "model", loaded.module)
            for key, value in self.arch_kwargs.items():  # train and infer at --image-size
                setattr(self.module.transform, key, (value,) if key == "min_size" else value)
        else:
            self.module = registry.build(spec.arch, len(self.labels), **self.arch_kwargs)

    def forward(self, net, x, targets):
        if not net.training:
            return net(list(x))
        return net(list(x), [{"boxes": b, "labels": l + 1} for b, l in targets])

    def loss(self, outputs, targets):
        box = sum(v for k, v in outputs.items() if "box" in k)
        cls = sum(v for k, v in outputs.items() if "box" not in k)
        return box + cls, torch.as_tensor(box), torch.as_tensor(cls)


def predict(module, arch: str, inputs, batch_size: int, device, amp_dtype=None):
    """Per image (boxes in original pixels, scores, labels) from preprocessed (array, geometry)
    pairs, decoded as `detect` decodes them (images of different sizes run one at a time)."""
    from visiontool.tasks.detect import found_boxes

    was_training = module.training
    module.eval()
    same = len({a.shape for a, _ in inputs}) == 1
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size if same else 1):
            chunk = inputs[start : start + (batch_size if same else 1)]
            x = torch.from_numpy(np.stack([a for a, _ in chunk])).to(device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext():
                raw = module(x)
            outputs = [o.float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy()
                       for o in (raw if isinstance(raw, (tuple, list)) else [raw])]
            for (boxes, scores, labels, _), (_, geometry) in zip(found_boxes(outputs, arch, VAL_CONF, VAL_IOU, VAL_MAX_DET), chunk):
                out.append((geometry.to_original(boxes), scores, labels))
    module.train(was_training)
    return out


@dataclass
class DetectionReport:
    model: str
    arch: str
    source: str  # which images
    images: int
    metrics: object  # coco_eval.DetectionMetrics
    skipped: list[tuple[Path, str]]

    def to_dict(self) -> dict:
        m = self.metrics
        return {"model": self.model, "arch": self.arch, "data": self.source, "images": self.images,
                "skipped": len(self.skipped), "map50": _finite(m.map50), "map": _finite(m.map), "map75": _finite(m.map75),
                "per_class": [{"label": k, **{n: _finite(x) if isinstance(x, float) else x for n, x in v.items()}}
                              for k, v in m.per_class.items() if v["instances"]],
                "best_f1": {"conf": _finite(m.conf), "precision": _finite(m.precision_at_conf),
                            "recall": _finite(m.recall_at_conf)},
                "cocoeval": dict(zip(STAT_NAMES, m.stats))}

    def show(self) -> None:
        from rich.console import Console

        Console(highlight=False).print(f"{self.model} ({self.arch}) on {self.source}: {self.images} images\n"
                                       + self.metrics.table(), markup=False, soft_wrap=True)


def validate(loaded, model: str, data, device, batch_size: int, workers: int | None, say) -> DetectionReport:
    """COCOeval of a detector on a dataset's val split, as `detect` runs it."""
    from visiontool.train import coco_eval, distributed

    ds = detect_data.scan_detection(data)
    labels = list(loaded.info.labels)
    unknown = [c for c in ds.classes if c not in labels]
    if unknown:
        raise DatasetError(f"classes in {data} that {model} does not detect: {', '.join(unknown[:8])} "
                           f"(it knows {', '.join(l for l in labels[:12] if l not in ('__background__', 'N/A'))})")
    to_model = np.array([labels.index(c) for c in ds.classes], dtype=np.int64)
    with say.bar(f"decoding {len(ds.val)} images", len(ds.val)) as advance:
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            read = list(pool.map(lambda s: _val_input(s, loaded.info.preprocess, advance), ds.val))
    skipped = list(ds.unreadable) + [(s.path, err) for s, (_, _, err) in zip(ds.val, read) if err]
    kept = [(s, (a, g)) for s, (a, g, err) in zip(ds.val, read) if not err]
    if not kept:
        raise DatasetError(f"no readable validation images in {data} ({ds.val_source})")
    dev = distributed.pick_device(device, distributed.Dist())
    module = loaded.module.to(dev)
    with say.bar("evaluating", len(kept)):
        preds = predict(module, loaded.info.arch, [x for _, x in kept], batch_size, dev)
    truth = [(s.boxes, to_model[s.labels]) for s, _ in kept]
    crowd = [(s.crowd_boxes, to_model[s.crowd_labels]) for s, _ in kept]
    metrics = coco_eval.evaluate(truth, preds, labels, crowd=crowd)
    return DetectionReport(model, loaded.info.arch, f"{data} ({ds.val_source})", len(kept), metrics, skipped)


def _cached(sample, side: int, advance):
    """(uint8 HxWx3 with the long side at most `side`, (boxes scaled alike, labels), error)."""
    from visiontool.imageio import DecodeError, decode

    try:
        img = decode(sample.path, "RGB", draft=(side, side))
        w, h = img.info.get("original_size", img.size)
        scale = min(1.0, side / max(w, h))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if size != img.size:
            img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
        boxes = (sample.boxes * np.array([size[0] / w, size[1] / h] * 2, dtype=np.float32)).astype(np.float32)
        return np.asarray(img), (boxes, sample.labels.astype(np.int64)), None
    except DecodeError as err:
        return None, None, str(err)
    finally:
        advance(1)


def _val_input(sample, pp: Preprocess, advance):
    from visiontool.pipeline import load_one

    array, geometry, _, error = load_one(str(sample.path), pp)
    advance(1)
    return array, geometry, error


def _rows(boxes, scores, labels, names) -> list[dict]:
    return [{"box": [float(v) for v in b], "label": names[int(lab)] if 0 <= int(lab) < len(names) else str(int(lab)),
             "index": int(lab), "score": float(s)} for b, s, lab in zip(boxes, scores, labels)]


def _finite(value: float) -> float:
    return 0.0 if value != value else float(value)  # nan (no ground truth at all) counts as 0
