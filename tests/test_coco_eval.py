"""COCO metrics from pycocotools on tiny cases whose answer is known by hand, with stdout kept
clean; COCO results rows; the precision-recall plot."""

from __future__ import annotations

import math

import numpy as np
import pytest

from visiontool.train.coco_eval import evaluate, to_coco_results
from visiontool.train.detect_report import plot_pr_curves

BOX = [0.0, 0.0, 100.0, 100.0]
OTHER = [200.0, 200.0, 300.0, 300.0]
# COCOeval reads precision at 101 recall points 0, 0.01, ..., 1; recall 0.5 reaches the first 51.
HALF_RECALL_AP = 51 / 101


def _truth(*boxes_labels):
    boxes = [b for b, _ in boxes_labels]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray([l for _, l in boxes_labels], dtype=np.int64)


def _preds(*rows):
    boxes = [b for b, _, _ in rows]
    return (
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray([s for _, s, _ in rows], dtype=np.float32),
        np.asarray([l for _, _, l in rows], dtype=np.int64),
    )


def test_perfect_predictions_score_one(capsys):
    truth = [_truth((BOX, 0), (OTHER, 1)), _truth((OTHER, 0))]
    preds = [_preds((BOX, 0.9, 0), (OTHER, 0.8, 1)), _preds((OTHER, 0.7, 0))]
    m = evaluate(truth, preds, ["a", "b"], sizes=[(400, 400), (400, 300)])
    assert m.map == pytest.approx(1.0) and m.map50 == pytest.approx(1.0) and m.map75 == pytest.approx(1.0)
    assert m.per_class["a"] == {"ap": pytest.approx(1.0), "ap50": pytest.approx(1.0), "instances": 2}
    assert len(m.stats) == 12
    assert capsys.readouterr().out == ""


def test_a_box_at_iou_061_passes_three_of_ten_thresholds():
    shifted = [24.0, 0.0, 124.0, 100.0]  # IoU 76*100 / (124*100) = 0.613
    m = evaluate([_truth((BOX, 0))], [_preds((shifted, 0.9, 0))], ["a"])
    assert m.map50 == pytest.approx(1.0)
    assert m.map == pytest.approx(0.3)  # matched at IoU 0.50, 0.55, 0.60 only
    assert m.map75 == pytest.approx(0.0)


def test_missing_detection_and_higher_scored_false_positive(capsys):
    truth = [_truth((BOX, 0), (OTHER, 0), (BOX, 1)), _truth()]
    preds = [
        # class 0: one of its two objects found -> recall 0.5 at precision 1
        # class 1: a false positive ranked above the true positive -> precision 0.5 at every recall
        _preds((BOX, 0.8, 0), (OTHER, 0.9, 1), (BOX, 0.7, 1)),
        # class 2 has no ground truth anywhere: its detections are not counted
        _preds((BOX, 0.5, 2)),
    ]
    m = evaluate(truth, preds, ["a", "b", "c"])
    assert m.per_class["a"]["ap"] == pytest.approx(HALF_RECALL_AP)
    assert m.per_class["b"]["ap"] == pytest.approx(0.5)
    assert math.isnan(m.per_class["c"]["ap"]) and m.per_class["c"]["instances"] == 0
    assert m.map50 == pytest.approx((HALF_RECALL_AP + 0.5) / 2)
    assert m.map == pytest.approx((HALF_RECALL_AP + 0.5) / 2)
    assert m.recall.shape == (101,) and m.precision.shape == (3, 101)
    np.testing.assert_allclose(m.precision[0], [1.0] * 51 + [0.0] * 50)
    np.testing.assert_allclose(m.precision[1], 0.5)
    assert np.isnan(m.precision[2]).all()

    table = m.table()
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in table
    assert "c              0       -        -  (no ground truth)" in table
    assert capsys.readouterr().out == ""


def test_empty_predictions_give_zero(capsys):
    m = evaluate([_truth((BOX, 0))], [_preds()], ["a"])
    assert m.map == 0.0 and m.map50 == 0.0
    assert m.per_class["a"]["ap"] == 0.0
    assert capsys.readouterr().out == ""


def test_crowd_regions_swallow_detections():
    crowd = [_truth((OTHER, 0))]
    preds = [_preds((BOX, 0.8, 0), (OTHER, 0.9, 0))]  # the higher-scored one lies on the crowd region
    assert evaluate([_truth((BOX, 0))], preds, ["a"]).map50 == pytest.approx(0.5)
    assert evaluate([_truth((BOX, 0))], preds, ["a"], crowd=crowd).map50 == pytest.approx(1.0)


def test_coco_results_rows_use_the_dataset_ids():
    preds = [_preds(([10.123, 20.0, 30.5, 60.256], 0.8765432, 1)), _preds()]
    assert to_coco_results(preds, [42, 43], [3, 7]) == [
        {"image_id": 42, "category_id": 7, "bbox": [10.12, 20.0, 20.38, 40.26], "score": 0.87654}
    ]


def test_pr_plot_is_written_atomically(tmp_path):
    truth = [_truth((BOX, 0), (OTHER, 0), (BOX, 1))]
    m = evaluate(truth, [_preds((BOX, 0.8, 0), (BOX, 0.7, 1))], ["a", "b", "c"])
    path = tmp_path / "plots" / "pr_curve.png"
    plot_pr_curves(path, m, ["a", "b", "c"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["pr_curve.png"]


def test_best_f1_operating_point_from_cocoevals_matching():
    # Sorted by score: a hit (P 1, R 1/2), a miss (P 1/2, R 1/2), a hit (P 2/3, R 1): the best
    # F1 (0.8) keeps all three, so the threshold is the lowest score.
    truth = [_truth((BOX, 0)), _truth((OTHER, 0))]
    preds = [_preds((BOX, 0.9, 0), (OTHER, 0.8, 0)), _preds((OTHER, 0.3, 0))]
    m = evaluate(truth, preds, ["a"])
    assert (m.conf, m.precision_at_conf, m.recall_at_conf) == (pytest.approx(0.3), pytest.approx(2 / 3), pytest.approx(1.0))
    assert "--conf 0.300 gives precision 0.667, recall 1.000" in m.table()
    # A wrong class is a miss: the best F1 is then the single hit alone.
    m = evaluate(truth, [_preds((BOX, 0.9, 0)), _preds((OTHER, 0.95, 1))], ["a", "b"])
    assert (m.conf, m.precision_at_conf, m.recall_at_conf) == (pytest.approx(0.9), pytest.approx(0.5), pytest.approx(0.5))
    assert math.isnan(evaluate(truth, [_preds(), _preds()], ["a"]).conf)
