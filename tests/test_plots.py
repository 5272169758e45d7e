"""The run's plots read whole: class names never overlap and the title is never covered
(measured on the drawn figure), epochs are whole numbers and the log axis shows plain numbers."""

from __future__ import annotations

import numpy as np
import pytest

from visiontool.train import report


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _overlap(a, b, slack: float = 1.0) -> bool:
    return a.x0 + slack < b.x1 and b.x0 + slack < a.x1 and a.y0 + slack < b.y1 and b.y0 + slack < a.y1


def _inside(box, outer) -> bool:
    return box.x0 >= outer.x0 - 1 and box.y0 >= outer.y0 - 1 and box.x1 <= outer.x1 + 1 and box.y1 <= outer.y1 + 1


def _labels(axis):
    """The labelled major ticks within the axis' view."""
    low, high = sorted(axis.get_view_interval())
    return [t for loc, t in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
            if low <= loc <= high and t.get_visible() and t.get_text()]


LONG = [
    "a rather long class name with words",
    "another_class_name_without_any_spaces_at_all",
    "short",
    "golden retriever (long-haired)",
    "x",
    "yet another long one, about dogs",
]


@pytest.mark.parametrize("n", [3, 6, 25])
def test_confusion_names_never_overlap_and_the_title_is_whole(n):
    labels = [f"{LONG[i % len(LONG)]} {i}" for i in range(n)]
    counts = np.random.default_rng(0).integers(0, 30, (n, n)).tolist()
    title = "mobilenet_v3_small, epoch 12: val top-1 87.50%"
    fig = report.confusion_figure(counts, labels, title)
    renderer = _drawn(fig)
    figure_box = fig.bbox
    ax, colorbar = fig.axes

    for axis in (ax.xaxis, ax.yaxis):
        ticks = _labels(axis)
        assert len(ticks) == n
        boxes = [t.get_window_extent(renderer) for t in ticks]
        for i in range(n):
            assert _inside(boxes[i], figure_box), ticks[i].get_text()
            for j in range(i + 1, n):
                assert not _overlap(boxes[i], boxes[j]), (ticks[i].get_text(), ticks[j].get_text())
        # every name is there, from its start (long ones wrap or end in "…")
        assert all(t.get_text().replace("\n", " ").startswith(name[:20]) for t, name in zip(ticks, labels))

    (title_text,) = [t for t in fig.texts if t.get_text() == title]
    title_box = title_text.get_window_extent(renderer)
    assert _inside(title_box, figure_box)
    assert not _overlap(title_box, colorbar.get_tightbbox(renderer))
    assert not _overlap(title_box, ax.get_tightbbox(renderer))


def test_confusion_writes_a_png(tmp_path):
    report.plot_confusion(tmp_path / "confusion.png", [[3, 1], [0, 4]], ["cat", "dog"], "lenet5, epoch 1")
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("epochs, losses", [(3, (2.3, 0.9, 0.4)), (25, np.geomspace(3.0, 0.02, 25)),
                                            (4, (0.34, 0.33, 0.31, 0.30))])
def test_curves_have_whole_epochs_and_plain_numbers_on_the_log_axis(epochs, losses):
    rows = [{"epoch": e + 1, "train_loss": losses[e], "val_loss": losses[e] * 1.1, "train_acc": 0.5,
             "val_top1": 0.5, "val_top5": 0.9} for e in range(epochs)]
    fig = report.curves_figure(rows, ("train_loss", "val_loss"), ("train_acc", "val_top1", "val_top5"), "accuracy")
    renderer = _drawn(fig)
    loss_ax, score_ax = fig.axes
    for ax in (loss_ax, score_ax):
        low, high = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if low <= t <= high]
        assert shown and all(float(t).is_integer() for t in shown), shown
        assert [t.get_text() for t in _labels(ax.xaxis)] == [str(int(t)) for t in shown]
    assert loss_ax.get_yscale() == "log"
    texts = [t.get_text() for t in _labels(loss_ax.yaxis)]
    assert len(texts) >= 2, texts  # a narrow range still gets values to read
    for text in texts:
        assert "$" not in text and "10^" not in text, text
        float(text.replace("\N{MINUS SIGN}", "-"))  # a plain number such as 0.5, 2 or 0.32
