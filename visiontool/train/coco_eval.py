"""Detection metrics computed by pycocotools' COCOeval, the reference every paper and model zoo
quotes, so a visiontool mAP is the number users compare with elsewhere.

Ground truth and detections are handed to pycocotools as in-memory COCO objects (no temporary
files). pycocotools prints progress ("creating index...", "DONE") with print(); it is kept off
stdout, which this project reserves for machine-readable rows. The summary it prints is kept as
text for `DetectionMetrics.table()`.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

# The 12 COCOeval stats, in pycocotools' order.
STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)


@dataclass
class DetectionMetrics:
    map50: float  # AP at IoU 0.5, mean over classes with ground truth (nan when there is none)
    map: float  # AP averaged over IoU 0.5:0.95
    map75: float
    per_class: dict[str, dict[str, float]]  # name -> {"ap": AP 0.5:0.95, "ap50": AP 0.5, "instances": n}
    stats: list[float]  # COCOeval.stats as pycocotools gives them (-1 where undefined)
    recall: np.ndarray = field(repr=False)  # (101,) the recall grid of the curves
    precision: np.ndarray = field(repr=False)  # (K, 101) interpolated precision at IoU 0.5; nan without ground truth
    summary: str = field(default="", repr=False)  # COCOeval.summarize()'s own text
    # The score threshold with the best F1 at IoU 0.5 over all detections, and its precision and
    # recall: what `detect --conf` should be for this model (nan without detections or truth).
    conf: float = float("nan")
    precision_at_conf: float = float("nan")
    recall_at_conf: float = float("nan")

    def table(self) -> str:
        """COCOeval's summary, then one line per class."""
        width = max([5, *(len(name) for name in self.per_class)])
        lines = [self.summary.rstrip("\n"), "", f"{'class':<{width}}  {'instances':>9}  {'AP50':>6}  {'AP50-95':>7}"]
        for name, row in self.per_class.items():
            if math.isnan(row["ap"]):
                lines.append(f"{name:<{width}}  {row['instances']:>9d}  {'-':>6}  {'-':>7}  (no ground truth)")
            else:
                lines.append(f"{name:<{width}}  {row['instances']:>9d}  {row['ap50']:>6.3f}  {row['ap']:>7.3f}")
        lines.append(f"{'all':<{width}}  {sum(r['instances'] for r in self.per_class.values()):>9d}  "
                     f"{self.map50:>6.3f}  {self.map:>7.3f}")
        if not math.isnan(self.conf):
            lines += ["", f"best F1 at IoU 0.5: --conf {self.conf:.3f} gives precision {self.precision_at_conf:.3f}, "
                          f"recall {self.recall_at_conf:.3f}"]
        return "\n".join(lines)


def _xywh(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def _as_stat(value: float) -> float:
    return float("nan") if value < 0 else float(value)


def evaluate(
    truth: Sequence[tuple],
    preds: Sequence[tuple],
    classes: Sequence[str],
    sizes: Sequence[tuple[int, int]] | None = None,
    crowd: Sequence[tuple] | None = None,
) -> DetectionMetrics:
    """COCO bbox metrics of `preds` against `truth`, image by image.

    truth: per image (boxes (n, 4) xyxy pixels, labels (n,) class index).
    preds: per image (boxes (k, 4) xyxy, scores (k,), labels (k,)).
    sizes: per image (width, height); COCOeval does not need them for boxes, they are recorded
    for completeness. crowd: per image (boxes, labels) of crowd regions: detections inside them
    are neither true nor false positives, as in COCOeval.
    Classes without ground truth get AP nan and are left out of the means.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(preds) != len(truth):
        raise ValueError(f"{len(truth)} images of ground truth but {len(preds)} of predictions")
    if sizes is not None and len(sizes) != len(truth):
        raise ValueError(f"{len(truth)} images of ground truth but {len(sizes)} sizes")
    if crowd is not None and len(crowd) != len(truth):
        raise ValueError(f"{len(truth)} images of ground truth but {len(crowd)} of crowd regions")

    images = []
    for i in range(len(truth)):
        image = {"id": i + 1}  # COCO ids start at 1: COCOeval reads id 0 as "no match"
        if sizes is not None:
            image["width"], image["height"] = int(sizes[i][0]), int(sizes[i][1])
        images.append(image)
    categories = [{"id": k + 1, "name": str(name)} for k, name in enumerate(classes)]
    instances = np.zeros(len(classes), dtype=np.int64)

    gt_anns = []

    def add_truth(image_id: int, boxes, labels, iscrowd: int) -> None:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        for box, label in zip(_xywh(boxes).tolist(), labels.tolist()):
            if not 0 <= label < len(classes):
                raise ValueError(f"class index {label} out of range 0-{len(classes) - 1}")
            gt_anns.append({
                "id": len(gt_anns) + 1, "image_id": image_id, "category_id": label + 1,
                "bbox": box, "area": box[2] * box[3], "iscrowd": iscrowd,
            })
            if not iscrowd:
                instances[label] += 1

    for i, (boxes, labels) in enumerate(truth):
        add_truth(i + 1, boxes, labels, 0)
        if crowd is not None:
            add_truth(i + 1, *crowd[i], 1)

    dt_anns = []
    for i, (boxes, scores, labels) in enumerate(preds):
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        for box, score, label in zip(_xywh(boxes).tolist(), scores.tolist(), labels.tolist()):
            dt_anns.append({
                "id": len(dt_anns) + 1, "image_id": i + 1, "category_id": label + 1,
                "bbox": box, "area": box[2] * box[3], "score": score, "iscrowd": 0,
            })

    summary = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):
        # Both built directly rather than through COCO.loadRes, which cannot take an empty list
        # of detections; the fields are the ones loadRes would set for boxes.
        gt = COCO()
        gt.dataset = {"images": images, "categories": categories, "annotations": gt_anns}
        gt.createIndex()
        dt = COCO()
        dt.dataset = {"images": images, "categories": categories, "annotations": dt_anns}
        dt.createIndex()
        coco_eval = COCOeval(gt, dt, iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        with contextlib.redirect_stdout(summary):
            coco_eval.summarize()

    # precision: [IoU threshold, recall point, class, area range, max detections]; area "all"
    # and 100 detections per image are the ones the headline AP uses.
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    per_class, curves = {}, np.full((len(classes), precision.shape[1]), np.nan)
    for k, name in enumerate(classes):
        p = precision[:, :, k]
        has_truth = bool((p > -1).any())
        if has_truth:
            curves[k] = p[0]
        per_class[str(name)] = {
            "ap": float(p[p > -1].mean()) if has_truth else float("nan"),
            "ap50": float(p[0][p[0] > -1].mean()) if has_truth else float("nan"),
            "instances": int(instances[k]),
        }
    stats = [float(s) for s in coco_eval.stats]
    conf, p_at, r_at = operating_point(coco_eval)
    return DetectionMetrics(
        map50=_as_stat(stats[1]), map=_as_stat(stats[0]), map75=_as_stat(stats[2]),
        per_class=per_class, stats=stats,
        recall=np.asarray(coco_eval.params.recThrs, dtype=np.float64), precision=curves,
        summary=summary.getvalue(), conf=conf, precision_at_conf=p_at, recall_at_conf=r_at,
    )


def operating_point(coco_eval) -> tuple[float, float, float]:
    """(score threshold, precision, recall) with the best F1 at IoU 0.5, from COCOeval's own
    matching (area "all", 100 detections per image), pooled over classes; nan when undefined."""
    every_area = coco_eval.params.areaRng[0]
    scores, hits, truths = [], [], 0
    for e in coco_eval.evalImgs:
        if e is None or e["aRng"] != every_area:
            continue
        counted = ~np.asarray(e["dtIgnore"][0], dtype=bool)  # IoU 0.5 is the first threshold
        scores.append(np.asarray(e["dtScores"], dtype=np.float64)[counted])
        hits.append(np.asarray(e["dtMatches"][0])[counted] > 0)
        truths += int((~np.asarray(e["gtIgnore"], dtype=bool)).sum())
    if not scores or truths == 0 or not sum(len(s) for s in scores):
        return float("nan"), float("nan"), float("nan")
    scores, hits = np.concatenate(scores), np.concatenate(hits)
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], np.cumsum(hits[order])
    precision, recall = tp / np.arange(1, len(tp) + 1), tp / truths
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    last_of_score = np.r_[scores[1:] != scores[:-1], True]  # a threshold keeps every tie
    best = int(np.flatnonzero(last_of_score)[np.argmax(f1[last_of_score])])
    return float(scores[best]), float(precision[best]), float(recall[best])


def to_coco_results(preds: Sequence[tuple], image_ids: Sequence[int], category_ids: Sequence[int]) -> list[dict]:
    """Detections as COCO results rows (the format of `detect --coco-json`), with the dataset's
    own image and category ids: bbox [x, y, width, height] rounded to 0.01 px, score to 1e-5."""
    if len(preds) != len(image_ids):
        raise ValueError(f"{len(preds)} images of predictions but {len(image_ids)} image ids")
    rows = []
    for (boxes, scores, labels), image_id in zip(preds, image_ids):
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        for (x, y, w, h), score, label in zip(_xywh(boxes).tolist(), scores.tolist(), labels.tolist()):
            rows.append({
                "image_id": int(image_id),
                "category_id": int(category_ids[label]),
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                "score": round(score, 5),
            })
    return rows
