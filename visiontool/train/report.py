"""What a run leaves behind besides checkpoints: results.csv and two PNG plots.

matplotlib is imported only when a plot is drawn, and through its object API with the Agg
canvas, so no GUI backend or global pyplot state is involved.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from visiontool.fsutil import atomic_write

_MAX_ANNOTATED_CLASSES = 30  # beyond this, confusion cells are colour only
_MAX_TICK_LABELS = 60


def write_results(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    """Rewrite results.csv with one row per finished epoch (atomic: never a half-written row)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row[k]) for k in columns})
    with atomic_write(path) as tmp:
        tmp.write_text(buf.getvalue())


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_results(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in rows]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png")


_NAMES = {"train_loss": "train", "val_loss": "val", "train_box": "train, box", "train_cls": "train, class",
          "train_acc": "train top-1", "val_top1": "val top-1", "val_top5": "val top-5",
          "val_map50": "val mAP@0.5", "val_map": "val mAP@0.5:0.95",
          "train_content": "train, content", "train_style": "train, style", "val_content": "val, content",
          "val_style": "val, style"}


def plot_curves(path: Path, rows: list[dict], loss: tuple[str, ...] = ("train_loss", "val_loss"),
                score: tuple[str, ...] = ("train_acc", "val_top1", "val_top5"), score_name: str = "accuracy") -> None:
    """Losses (log scale) and scores per epoch: by default classification's loss (train and
    val) and accuracy (train, val top-1, val top-5); no score columns: the losses alone."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(10 if score else 6, 4)
    axes = fig.subplots(1, 2) if score else [fig.subplots()]
    loss_ax = axes[0]
    epochs = [r["epoch"] for r in rows]
    for key in loss:
        loss_ax.plot(epochs, [r[key] for r in rows], "o-", label=_NAMES.get(key, key))
    loss_ax.set(xlabel="epoch", ylabel="loss (log scale)", title="Loss", yscale="log")  # early val spikes
    if score:
        score_ax = axes[1]
        for n, key in enumerate(score):
            score_ax.plot(epochs, [r[key] for r in rows], "o--" if n == 2 else "o-", label=_NAMES.get(key, key))
        score_ax.set(xlabel="epoch", ylabel=score_name, title=score_name[0].upper() + score_name[1:], ylim=(0, 1.02))
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def plot_confusion(path: Path, confusion: list[list[int]], labels: list[str], title: str) -> None:
    """Confusion matrix, rows normalized to recall (colour), with counts in the cells."""
    import numpy as np

    counts = np.asarray(confusion, dtype=np.int64)
    n = len(labels)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = min(20.0, max(4.0, 0.45 * n + 2.5))
    fig = _figure(side + 1, side)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= _MAX_TICK_LABELS:
        ax.set_xticks(range(n), labels, rotation=90 if n > 8 else 0)
        ax.set_yticks(range(n), labels)
    if n <= _MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=color, fontsize=8)
    _save(fig, path)
