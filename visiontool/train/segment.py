"""Semantic segmentation's part of training: image/mask pairs decoded once into memory,
random crops that move image and mask together, cross-entropy with an ignore index (plus the
auxiliary head's where the model has one), and pixel accuracy, per-class IoU and mIoU from one
confusion matrix per epoch.

Models see images at their own resolution: training takes square crops of --image-size px
(scaled a little, so objects vary in size), validation and inference the whole image. The
checkpoint's preprocessing says so (fit "none"), so `segment` feeds it what training scored.
With --scales, validation and the checkpoint segment each image at those scales and average;
with --guided-filter, they pass the class probabilities through a guided filter with the image as
the guide (models/segmentation.py). The best epoch is the one with the best val mIoU.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from visiontool.errors import DatasetError, UsageError
from visiontool.models.segmentation import SegmentationLogits
from visiontool.tasks.segment import checked_guided_radius, checked_scales
from visiontool.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from visiontool.train import report, segment_data
from visiontool.train.config import resolved_workers
from visiontool.train.job import Normalize, TaskTraining, check_input_size, fine_tune_line, spec_and_start
from visiontool.train.metrics import PixelConfusion, segmentation_scores
from visiontool.train.segment_data import IGNORE

DEFAULT_MODEL = "unet"
DEFAULT_CROP = {"unet": 160}  # training crop side when --image-size is not given; others: 320
SCALE_JITTER = (0.8, 1.25)  # crops are resized by a factor drawn log-uniformly from this range
# Share of crops placed around a pixel of a class drawn evenly from the classes in the image, the
# rest anywhere: small classes (digit strokes are 3% of the pixels of a digit scene) are seen
# often enough to be learned, as in nnU-Net's foreground oversampling.
CLASS_CENTRED = 0.5
AUX_WEIGHT = 0.5  # weight of the auxiliary head's loss (torchvision's FCN and DeepLabV3)
SHOWN_VAL_IMAGES = 6  # in val_predictions.png


class SegmentTraining(TaskTraining):
    task = "segment"
    columns = ("train_loss", "val_loss", "val_pixel_acc", "val_miou")
    best_metric = "val_miou"
    default_model = DEFAULT_MODEL
    # Small crops of a small model: many steps matter more than big batches on a CPU.
    default_batch_size = 16
    reads = frozenset({"pretrained", "scales", "guided_filter", "width"})

    def __init__(self, cfg, dist, device, say) -> None:
        self.cfg, self.dist, self.device = cfg, dist, device
        workers = resolved_workers(cfg.workers, dist.local_world)
        ds = segment_data.scan_segmentation(cfg.data, cfg.val_fraction, cfg.seed)
        if not ds.val:
            raise DatasetError(f"no validation images in {cfg.data} ({ds.val_source})")
        total = len(ds.train) + len(ds.val)
        with say.bar(f"decoding {total} images and masks", total) as advance:
            self.train_set = segment_data.decode(ds.train, workers, advance)
            self.val_set = segment_data.decode(ds.val, workers, advance)
        skipped = self.train_set.skipped + self.val_set.skipped
        if skipped:
            say.warn(f"skipped {len(skipped)} unreadable image{'s' * (len(skipped) > 1)} (first: {skipped[0][0]}: {skipped[0][1]})")
        if not self.train_set.images or not self.val_set.images:
            raise DatasetError(f"no readable {'training' if not self.train_set.images else 'validation'} images in {cfg.data}")
        self.labels = segment_data.settle_classes(ds, [self.train_set, self.val_set])
        self.val_source, self.n_train = ds.val_source, len(self.train_set.images)

        spec, start = spec_and_start(cfg.model, self.task, DEFAULT_MODEL)
        torch.manual_seed(cfg.seed)  # weights init: identical on every rank and every rerun
        self.arch = spec.arch
        self.crop = cfg.image_size or DEFAULT_CROP.get(spec.arch, 320)
        module, self.arch_kwargs, mean, std, (start_scales, start_guided) = _model(cfg, spec, len(self.labels), start)
        # validation and the checkpoint segment this way (a fine-tune keeps its start's)
        self.scales = checked_scales(cfg.scales) if cfg.scales else start_scales
        self.guided_filter = (checked_guided_radius(cfg.guided_filter) if cfg.guided_filter is not None
                              else start_guided)
        if start is not None:
            say.line(fine_tune_line(start, len(self.labels)))
        self.preprocess = Preprocess(crop=self.crop, resize=self.crop, mean=mean, std=std, fit="none")
        if hasattr(module, "set_class_prior") and not cfg.pretrained and start is None:
            counts = sum(np.bincount(m.ravel(), minlength=256)[: len(self.labels)] for m in self.train_set.masks)
            module.set_class_prior(torch.as_tensor(counts, dtype=torch.float32))
        self.module = module.to(device).to(memory_format=torch.channels_last)
        check_input_size(self.module, self.arch, self.crop, 3, device)
        self.normalize = Normalize(self.preprocess, device)

    def describe(self) -> str:
        widths = self.arch_kwargs.get("widths")
        arch = f"{self.arch} (widths {', '.join(map(str, widths))})" if widths else self.arch
        return (f"{arch}: {len(self.labels)} classes, {self.n_train} training images, {len(self.val_set.images)} "
                f"validation ({self.val_source}), {self.crop}px crops")

    def epoch_params(self, n, generator):
        """Per sample: scale, crop position x and y (0..1), flip (1: mirror), whether the crop is
        centred on a class, and which class and pixel (0..1)."""
        u = torch.rand(n, 7, generator=generator, dtype=torch.float64)
        lo, hi = math.log(SCALE_JITTER[0]), math.log(SCALE_JITTER[1])
        u[:, 0] = torch.exp(lo + (hi - lo) * u[:, 0])
        u[:, 3] = ((u[:, 3] < 0.5) & self.cfg.flip).double()
        u[:, 4] = (u[:, 4] < CLASS_CENTRED).double()
        return u

    def batch(self, idx, params, device):
        pairs = [random_crop(self.train_set.images[i], self.train_set.masks[i], p.tolist(), self.crop)
                 for i, p in zip(idx.tolist(), params)]
        x = torch.stack([a for a, _ in pairs]).to(device, non_blocking=True)
        y = torch.stack([m for _, m in pairs]).to(device, non_blocking=True)
        return self.normalize(x), y.long()

    def forward(self, net, x, targets):
        return _outputs(net(x))

    def loss(self, outputs, targets):
        main, aux = outputs
        loss = F.cross_entropy(main.float(), targets, ignore_index=IGNORE)
        if aux is not None:
            loss = loss + AUX_WEIGHT * F.cross_entropy(aux.float(), targets, ignore_index=IGNORE)
        return loss, (loss.detach().double() * len(targets)).view(1)

    def evaluate(self, module, batch_size, amp_dtype):
        # each rank scores every world-th image; one all-reduce sums the confusion matrices
        mine = range(self.dist.rank, len(self.val_set.images), self.dist.world)
        if self.scales != (1.0,) or self.guided_filter:
            module = SegmentationLogits(module, self.scales, self.guided_filter)
        confusion, loss_sum, preds = predict_split(module, self.val_set, self.normalize, len(self.labels), self.device,
                                                   amp_dtype, keep=SHOWN_VAL_IMAGES, indices=mine)
        if self.dist.enabled:
            loss = torch.tensor(loss_sum, dtype=torch.float64, device=self.device)
            confusion.all_reduce()
            torch.distributed.all_reduce(loss)
            loss_sum = float(loss)
        scores = segmentation_scores(confusion.confusion)
        scored = max(1, sum(scores.pixels))
        row = {"val_loss": loss_sum / scored, "val_pixel_acc": scores.pixel_accuracy, "val_miou": scores.miou}
        # what the plots need of the best epoch, as tensors and lists (state.pt is read back with
        # weights_only=True)
        return row, {"confusion": confusion.confusion.cpu().tolist(), "shown": list(mine[: len(preds)]), "preds": preds}

    def meta(self) -> dict:
        return {**super().meta(), **({"scales": list(self.scales)} if self.scales != (1.0,) else {}),
                **({"guided_filter": self.guided_filter} if self.guided_filter else {})}

    def epoch_line(self, row):
        return (f"train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f} pixel acc "
                f"{row['val_pixel_acc']:.2%} mIoU {row['val_miou']:.3f}")

    def best_line(self, score):
        return f"best val mIoU {score:.3f}"

    def plots(self, run_dir, rows, best, best_epoch):
        report.plot_curves(run_dir / "curves.png", rows, loss=("train_loss", "val_loss"),
                           score=("val_pixel_acc", "val_miou"), score_name="score")
        shown = best["shown"]
        truth_vs_prediction([self.val_set.images[i] for i in shown], [self.val_set.masks[i] for i in shown],
                            [p.numpy() for p in best["preds"]], self.labels, run_dir / "val_predictions.png")
        return ["curves.png", "val_predictions.png"]


Training = SegmentTraining


def _model(cfg, spec, num_classes: int, start: str | None):
    """(module, arch_kwargs, mean, std, (scales, guided filter radius)): the project's UNet, or a
    torchvision model with its classifier (and auxiliary classifier) sized for the classes, from
    scratch or --pretrained; or the network of `start` (a checkpoint or a shipped model) to
    fine-tune, its head sized for the classes where their number differs, with the way it reads
    an image (its scales and guided filter)."""
    from visiontool.models import registry, unet
    from visiontool.models.loader import load_model

    if cfg.width and (start is not None or spec.arch != unet.ARCH):
        raise UsageError(f"--width sets the channels of a UNet trained from scratch; {cfg.model} has its own")
    if start is not None:
        loaded = load_model(start, None, quiet=cfg.quiet, num_classes=num_classes)
        pp = loaded.info.preprocess
        return (getattr(loaded.module, "model", loaded.module), dict(loaded.info.extra.get("arch_kwargs") or {}),
                pp.mean, pp.std, (getattr(loaded.module, "scales", (1.0,)), getattr(loaded.module, "guided_filter", 0)))
    if spec.arch == unet.ARCH:
        if cfg.pretrained:
            raise UsageError(f"{spec.name} has no pretrained weights: drop --pretrained to train it from scratch")
        # the checkpoint records the sizes, so a later change of the defaults cannot break it
        kwargs = {"widths": list(unet.WIDTHS), "dilations": list(unet.DILATIONS), **spec.arch_kwargs}
        if cfg.width:  # the first level's channels; the deeper levels keep their ratios to it
            kwargs["widths"] = unet.scaled_widths(cfg.width)
        return registry.build(spec.arch, num_classes, **kwargs), kwargs, unet.MEAN, unet.STD, ((1.0,), 0)
    kwargs = {"aux_loss": True} if "lraspp" not in spec.arch else {}
    if cfg.pretrained:
        loaded = load_model(cfg.model, None, quiet=cfg.quiet, num_classes=num_classes)
        module = getattr(loaded.module, "model", loaded.module)  # the network, not its inference adapter
        kwargs = dict(loaded.info.extra.get("arch_kwargs") or {})
    else:
        module = registry.build(spec.arch, num_classes, **kwargs)
    return module, kwargs, IMAGENET_MEAN, IMAGENET_STD, ((1.0,), 0)


def _outputs(raw):
    """(main logits, auxiliary logits or None): torchvision's models answer with a dict."""
    if isinstance(raw, dict):
        return raw["out"], raw.get("aux")
    return raw, None


def random_crop(image: np.ndarray, mask: np.ndarray, params, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A size x size crop of an HxWx3 uint8 image and its HxW mask, cut at the same place and
    scaled by the same factor (image bilinear, mask nearest), mirrored alike. Where the window
    reaches past a small image, the image is black and the mask says ignore.

    params: (scale, x, y, flip, centred, class, pixel); x and y in 0..1 place the window in the
    image, or, when centred is 1, place a pixel of the class drawn by `class` (among the classes
    present) and `pixel` within the window's middle half."""
    scale, u, v, flip, centred, pick_class, pick_pixel = params
    window = max(1, round(size / scale))
    h, w = mask.shape
    x0 = int(round(u * (w - window))) if w > window else -int(round(u * (window - w)))
    y0 = int(round(v * (h - window))) if h > window else -int(round(v * (window - h)))
    if centred:
        present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256)[:IGNORE])
        ys, xs = np.nonzero(mask == present[min(int(pick_class * len(present)), len(present) - 1)])
        j = min(int(pick_pixel * len(ys)), len(ys) - 1)
        x0 = int(np.clip(xs[j] - round(window * (0.25 + 0.5 * u)), min(0, w - window), max(0, w - window)))
        y0 = int(np.clip(ys[j] - round(window * (0.25 + 0.5 * v)), min(0, h - window), max(0, h - window)))
    img = np.zeros((window, window, 3), np.uint8)
    lab = np.full((window, window), IGNORE, np.uint8)
    sx, sy = max(x0, 0), max(y0, 0)
    ex, ey = min(x0 + window, w), min(y0 + window, h)
    img[sy - y0 : ey - y0, sx - x0 : ex - x0] = image[sy:ey, sx:ex]
    lab[sy - y0 : ey - y0, sx - x0 : ex - x0] = mask[sy:ey, sx:ex]
    if window != size:  # OpenCV: one thread, no tensor work per sample (torch's threads stay with the model)
        import cv2

        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
        # INTER_NEAREST_EXACT samples at pixel centres, as INTER_LINEAR does; INTER_NEAREST
        # floors, which moves the mask up to half a pixel right and down of its image, and a
        # model trained on that draws every edge shifted at full scale.
        lab = cv2.resize(lab, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
    if flip:
        img, lab = img[:, ::-1], lab[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float(), torch.from_numpy(np.ascontiguousarray(lab))


def predict_split(module, split: segment_data.Decoded, normalize: Normalize, num_classes: int, device,
                  amp_dtype=None, keep: int = 0, indices=None):
    """(PixelConfusion, summed cross-entropy over scored pixels, class maps of the first `keep`
    images) of the split's images at `indices` (default all), each at its own size, as
    `segment` runs the model."""
    confusion = PixelConfusion(num_classes, device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    preds = []
    was_training = module.training
    module.eval()
    with torch.inference_mode():
        for n, i in enumerate(range(len(split.images)) if indices is None else indices):
            image, mask = split.images[i], split.masks[i]
            x = normalize(torch.from_numpy(image).permute(2, 0, 1)[None].to(device))
            y = torch.from_numpy(mask).to(device)[None].long()
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext():
                logits = _outputs(module(x))[0].float()
            pred = logits.argmax(1)
            confusion.update(pred, y)
            valid = y != IGNORE
            if valid.any():
                loss_sum += F.cross_entropy(logits, y, ignore_index=IGNORE, reduction="sum").double()
            if n < keep:
                preds.append(pred[0].to(torch.uint8).cpu())
    module.train(was_training)
    return confusion, float(loss_sum), preds


def truth_vs_prediction(images, truths, preds, labels: list[str], path: Path) -> None:
    """One row per validation image: the image, its true mask, the predicted mask, the masks in
    mask colours of `segment`'s masks, with a legend of the classes shown."""
    from matplotlib.patches import Patch

    from visiontool.render import mask_palette

    colors = mask_palette(256)
    fig = report._figure(9, 2.6 * len(images) + 0.6)
    axes = fig.subplots(len(images), 3, squeeze=False)
    for row, image, truth, pred in zip(axes, images, truths, preds):
        for ax, picture, title in zip(row, (image, colors[truth], colors[pred]), ("image", "true", "predicted")):
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
    present = sorted(set(np.unique(np.concatenate([np.unique(m) for m in [*truths, *preds]])).tolist()) - {IGNORE})
    fig.legend(handles=[Patch(color=colors[i] / 255, label=labels[i]) for i in present if i < len(labels)],
               loc="outside lower center", ncol=min(8, max(1, len(present))), fontsize=8)
    report._save(fig, path)


@dataclass
class SegmentationReport:
    model: str
    arch: str
    source: str  # which images
    images: int
    labels: list[str]
    confusion: list[list[int]]  # [true][predicted] pixels
    skipped: list[tuple[Path, str]]

    def to_dict(self) -> dict:
        s = segmentation_scores(self.confusion)
        return {"model": self.model, "arch": self.arch, "data": self.source, "images": self.images,
                "skipped": len(self.skipped), "pixel_accuracy": s.pixel_accuracy, "miou": s.miou,
                "per_class": [{"label": label, "index": i, "pixels": n, "iou": iou}
                              for i, (label, n, iou) in enumerate(zip(self.labels, s.pixels, s.iou))],
                "confusion": self.confusion}

    def show(self) -> None:
        from rich.console import Console
        from rich.table import Table

        d = self.to_dict()
        console = Console(highlight=False)
        console.print(f"{self.model} ({self.arch}) on {self.source}: {self.images} images\n"
                      f"pixel accuracy {d['pixel_accuracy']:.2%}   mIoU {d['miou']:.3f}", markup=False, soft_wrap=True)
        table = Table("class", "index", "pixels", "IoU", title="Per class")
        for row in d["per_class"]:
            table.add_row(row["label"], str(row["index"]), str(row["pixels"]),
                          "-" if row["iou"] is None else f"{row['iou']:.3f}")
        console.print(table)


def validate(loaded, model: str, data, device, batch_size: int, workers: int | None, say) -> SegmentationReport:
    """Pixel accuracy, per-class IoU and mIoU of a segmentation model on a dataset's val split
    (for a checkpoint trained without val/, the pairs its run held out), or on one folder of
    images/ and masks/."""
    from visiontool.train import distributed
    from visiontool.train.validate import _training_split_options

    options = _training_split_options(model)
    ds = segment_data.scan_segmentation(data, *(options[:2] if options else (0.2, 0)))
    if ds.held_out and options is None:
        raise DatasetError(f"no val/ folder in {data}: point DATA at a dataset with val/ or at a folder of images/ and masks/")
    with say.bar(f"decoding {len(ds.val)} images and masks", len(ds.val)) as advance:
        split = segment_data.decode(ds.val, workers or resolved_workers(None), advance)
    if not split.images:
        raise DatasetError(f"no readable validation images in {data} ({ds.val_source})")
    labels = list(loaded.info.labels)
    classes = segment_data.settle_classes(ds, [split])
    if ds.named:  # mask value k is classes.txt's line k: score it as the model's class of that name
        unknown = [c for c in classes if c not in labels]
        if unknown:
            raise DatasetError(f"classes in {data} that {model} does not know: {', '.join(unknown[:8])} "
                               f"(it knows {', '.join(labels[:12])})")
        lut = np.full(256, IGNORE, np.uint8)
        lut[: len(classes)] = [labels.index(c) for c in classes]
        split.masks = [lut[m] for m in split.masks]
    elif len(classes) > len(labels):
        raise DatasetError(f"masks in {data} hold class index {len(classes) - 1}; {model} has {len(labels)} classes")
    dev = distributed.pick_device(device, distributed.Dist())
    module = loaded.module.to(dev).to(memory_format=torch.channels_last)
    with say.bar("evaluating", len(split.images)):
        confusion, _, _ = predict_split(module, split, Normalize(loaded.info.preprocess, dev), len(labels), dev)
    source = str(data) if ds.val_source == str(ds.root) else f"{data} ({ds.val_source})"
    return SegmentationReport(model, loaded.info.arch, source, len(split.images), labels,
                              confusion.confusion.cpu().tolist(), split.skipped)
