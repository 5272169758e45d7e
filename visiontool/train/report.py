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
          "val_pixel_acc": "val pixel accuracy", "val_miou": "val mIoU",
          "train_content": "train, content", "train_style": "train, style", "val_content": "val, content",
          "val_style": "val, style"}


def plot_curves(path: Path, rows: list[dict], loss: tuple[str, ...] = ("train_loss", "val_loss"),
                score: tuple[str, ...] = ("train_acc", "val_top1", "val_top5"), score_name: str = "accuracy") -> None:
    """Losses (log scale) and scores per epoch: by default classification's loss (train and
    val) and accuracy (train, val top-1, val top-5); no score columns: the losses alone."""
    _save(curves_figure(rows, loss, score, score_name), path)


def curves_figure(rows: list[dict], loss: tuple[str, ...], score: tuple[str, ...], score_name: str):
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    fig = _figure(10 if score else 6, 4)
    axes = fig.subplots(1, 2) if score else [fig.subplots()]
    loss_ax = axes[0]
    epochs = [r["epoch"] for r in rows]
    for key in loss:
        loss_ax.plot(epochs, [r[key] for r in rows], "o-", label=_NAMES.get(key, key))
    loss_ax.set(xlabel="epoch", ylabel="loss (log scale)", title="Loss", yscale="log")  # early val spikes
    # Plain numbers at 1, 2 and 5 times powers of ten (0.2, 0.5, 1, 2) rather than 2x10^-1;
    # a range narrower than that gets evenly spaced ticks from the locator instead.
    loss_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    loss_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    loss_ax.yaxis.set_minor_formatter(NullFormatter())
    if score:
        score_ax = axes[1]
        for n, key in enumerate(score):
            score_ax.plot(epochs, [r[key] for r in rows], "o--" if n == 2 else "o-", label=_NAMES.get(key, key))
        score_ax.set(xlabel="epoch", ylabel=score_name, title=score_name[0].upper() + score_name[1:], ylim=(0, 1.02))
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_confusion(path: Path, confusion: list[list[int]], labels: list[str], title: str) -> None:
    """Confusion matrix, rows normalized to recall (colour), with counts in the cells."""
    _save(confusion_figure(confusion, labels, title), path)


# Sizes for laying out the confusion matrix, in inches: a cell, and one character of a
# 10 pt tick label or of the 12 pt title (generous averages for the default font).
_CELL = 0.45
_LABEL_CHAR = 0.09
_TITLE_CHAR = 0.115
_NAME_WIDTH = 28  # longer class names wrap onto a second line (where a cell has room) or end in "…"


def confusion_figure(confusion: list[list[int]], labels: list[str], title: str):
    import numpy as np

    counts = np.asarray(confusion, dtype=np.int64)
    n = len(labels)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = min(16.0, max(2.5, _CELL * n))  # the matrix itself
    cell = side / max(n, 1)
    named = n <= _MAX_TICK_LABELS
    lines = 2 if cell >= 0.4 else 1  # two 10 pt lines need 0.4 in of cell
    names = [_wrap(str(name), lines) for name in labels]
    longest = max((len(line) for name in names for line in name.splitlines()), default=0) if named else 0
    # Names across the top fit a cell side by side; longer ones stand on end.
    upright = named and longest * _LABEL_CHAR > 0.9 * cell
    margin = longest * _LABEL_CHAR + 0.6  # the names and the axis label beside them
    width = max(side + margin + 1.4, len(title) * _TITLE_CHAR + 0.4)  # 1.4: the colour bar
    height = side + (margin if upright else 0.8) + 0.6  # 0.6: the title
    fig = _figure(width, height)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ax.set(xlabel="predicted", ylabel="true")
    fig.suptitle(title)  # over the whole figure: the colour bar never covers it
    if named:
        ax.set_xticks(range(n), names, rotation=90 if upright else 0)
        ax.set_yticks(range(n), names)
    if n <= _MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=color, fontsize=8)
    return fig


def _wrap(name: str, lines: int) -> str:
    """`name` on at most `lines` lines of _NAME_WIDTH characters, ending in "…" when cut."""
    import textwrap

    chunks = textwrap.wrap(name, _NAME_WIDTH) or [name]
    if len(chunks) > lines:
        chunks = chunks[:lines]
        chunks[-1] = chunks[-1][: _NAME_WIDTH - 1] + "…"
    return "\n".join(chunks)
