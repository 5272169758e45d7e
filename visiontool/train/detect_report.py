"""Plots of a detection run: precision-recall curves per class at IoU 0.5."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from visiontool.train.coco_eval import DetectionMetrics
from visiontool.train.report import _figure, _save

_MAX_LEGEND_CLASSES = 20  # beyond this a legend hides the curves; the mean still stands out


def plot_pr_curves(path: Path, metrics: DetectionMetrics, classes: Sequence[str]) -> None:
    """All classes' curves on one axes, thin, with their mean bold; written atomically."""
    fig = _figure(7, 6)
    ax = fig.subplots()
    recall = metrics.recall
    show_legend = len(classes) <= _MAX_LEGEND_CLASSES
    for k, name in enumerate(classes):
        curve = metrics.precision[k]
        if np.isnan(curve).all():
            continue  # no ground truth: no curve exists
        ap50 = metrics.per_class[str(name)]["ap50"]
        ax.plot(recall, curve, linewidth=1, alpha=0.8, label=f"{name} {ap50:.3f}" if show_legend else None)
    with_truth = metrics.precision[~np.isnan(metrics.precision).all(axis=1)]
    if len(with_truth):
        # The mean curve's average over the recall grid is mAP@0.5 itself.
        ax.plot(recall, with_truth.mean(axis=0), color="black", linewidth=3, label=f"all classes {metrics.map50:.3f}")
    ax.set(
        xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
        title=f"Precision-recall at IoU 0.5 (mAP@0.5 = {metrics.map50:.3f})",
    )
    ax.grid(alpha=0.3)
    if len(with_truth):
        ax.legend(loc="lower left", fontsize="small")
    _save(fig, path)
