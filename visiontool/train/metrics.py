"""Classification metrics from a confusion matrix and top-k counts; segmentation's from a
pixel confusion matrix.

Everything is a sum (counts, loss sums), so shards evaluated by several processes add up with
one all-reduce into exactly the single-process numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class Accumulator:
    """Sums over batches: confusion matrix (rows: true class, columns: predicted), top-k hits,
    loss sum and count, all as tensors on the compute device (no sync per batch)."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", k: int = 5):
        self.num_classes = num_classes
        self.k = min(k, num_classes)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.topk = torch.zeros((), dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor | None = None) -> None:
        logits = logits.detach().float()
        pred = logits.argmax(dim=1)
        index = targets * self.num_classes + pred
        self.confusion += torch.bincount(index, minlength=self.num_classes**2).view(self.num_classes, -1)
        top = logits.topk(self.k, dim=1).indices
        self.topk += (top == targets[:, None]).any(dim=1).sum()
        if loss_sum is not None:
            self.loss_sum += loss_sum.detach().double()

    def all_reduce(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for t in (self.confusion, self.topk, self.loss_sum):
                dist.all_reduce(t)

    def summary(self, labels: list[str]) -> "Summary":
        confusion = self.confusion.cpu()
        count = int(confusion.sum())
        per_class_count = confusion.sum(dim=1)
        correct = confusion.diag()
        per_class = {
            labels[i]: (float(correct[i]) / int(per_class_count[i]) if per_class_count[i] else None)
            for i in range(self.num_classes)
        }
        return Summary(
            count=count,
            top1=float(correct.sum()) / count if count else 0.0,
            top5=float(self.topk) / count if count else 0.0,
            k=self.k,
            loss=float(self.loss_sum) / count if count else float("nan"),
            labels=list(labels),
            per_class=per_class,
            per_class_count=[int(c) for c in per_class_count],
            confusion=confusion.tolist(),
        )


@dataclass
class Summary:
    count: int  # images evaluated
    top1: float  # share of images whose best guess is right
    top5: float  # share whose true class is among the k best guesses (k = min(5, classes))
    k: int
    loss: float  # mean loss (nan when not computed)
    labels: list[str]
    per_class: dict[str, float | None]  # recall per true class; None when a class has no images
    per_class_count: list[int]
    confusion: list[list[int]]  # [true][predicted] counts

    def to_dict(self) -> dict:
        return {
            "images": self.count,
            "top1": self.top1,
            "top5": self.top5,
            "top5_k": self.k,
            "loss": None if self.loss != self.loss else self.loss,
            "per_class": [
                {"label": label, "images": n, "accuracy": self.per_class[label]}
                for label, n in zip(self.labels, self.per_class_count)
            ],
            "labels": self.labels,
            "confusion": self.confusion,
        }


class PixelConfusion:
    """Semantic segmentation's one confusion matrix over all pixels of a split (rows: true
    class, columns: predicted), summed on the compute device; pixels marked `ignore` are left
    out. Pixel accuracy, per-class IoU and mIoU all come from it (`segmentation_scores`)."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", ignore: int = 255):
        self.num_classes, self.ignore = num_classes, ignore
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: integer class maps of the same shape."""
        keep = target != self.ignore
        index = target[keep].long() * self.num_classes + pred[keep].long()
        self.confusion += torch.bincount(index, minlength=self.num_classes**2).view(self.num_classes, -1)

    def all_reduce(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.confusion)


@dataclass
class SegmentationScores:
    pixel_accuracy: float  # share of scored pixels whose predicted class is the true one
    iou: list[float | None]  # per class: TP / (TP + FP + FN); None where the class is neither true nor predicted
    miou: float  # mean of the per-class IoUs that are not None
    pixels: list[int]  # true pixels per class


def segmentation_scores(confusion) -> SegmentationScores:
    """Scores of a [true][predicted] pixel confusion matrix (a tensor or nested lists)."""
    c = torch.as_tensor(confusion, dtype=torch.float64).cpu()
    tp = c.diag()
    union = c.sum(0) + c.sum(1) - tp
    total = float(c.sum())
    iou = [float(t / u) if u > 0 else None for t, u in zip(tp, union)]
    known = [v for v in iou if v is not None]
    return SegmentationScores(pixel_accuracy=float(tp.sum()) / total if total else 0.0, iou=iou,
                              miou=sum(known) / len(known) if known else 0.0,
                              pixels=[int(v) for v in c.sum(1)])
