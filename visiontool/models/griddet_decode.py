"""GridDet's raw output -> boxes, scores, labels, in numpy (the ONNX path has no torch).

The layout is documented in `visiontool.models.griddet`; the constants are repeated here, not
imported, because importing that module imports torch.
"""

from __future__ import annotations

import numpy as np

from visiontool.boxes import batched_nms

STRIDE = 8  # griddet.STRIDE
PRE_NMS_TOPK = 1000  # candidates per image entering NMS; more only costs time


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warning for large |x|


def decode(raw: np.ndarray, conf: float = 0.25, iou: float = 0.6,
           max_det: int = 100) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """raw (N, 4 + C, H/8, W/8) -> per image (boxes (k, 4) float32 xyxy in input pixels,
    scores (k,) float32, labels (k,) int64), best score first, k <= max_det.

    A cell proposes its best class only: with every class above `conf` a candidate, one digit
    came out twice, as "1" and as a weaker "7", and held-out mAP@0.5 gained only 0.006.
    NMS is class-aware, so a box only suppresses boxes of its own class."""
    raw = np.asarray(raw, dtype=np.float32)
    n, ch, h, w = raw.shape
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    cx = (xs.reshape(-1) + 0.5) * STRIDE
    cy = (ys.reshape(-1) + 0.5) * STRIDE
    # score > conf  <=>  logit > log(conf / (1 - conf)); comparing logits skips most sigmoids
    thr = -np.inf if conf <= 0 else np.inf if conf >= 1 else float(np.log(conf / (1 - conf)))
    out = []
    for i in range(n):
        flat = raw[i].reshape(ch, h * w)
        logits = flat[4:]
        best = logits.argmax(axis=0)
        cell = np.flatnonzero(logits[best, np.arange(h * w)] > thr)
        cls = best[cell]
        scores = _sigmoid(logits[cls, cell])
        if scores.size > PRE_NMS_TOPK:
            top = np.argpartition(-scores, PRE_NMS_TOPK - 1)[:PRE_NMS_TOPK]
            cls, cell, scores = cls[top], cell[top], scores[top]
        d = _softplus(flat[:4, cell]) * STRIDE
        boxes = np.stack([cx[cell] - d[0], cy[cell] - d[1], cx[cell] + d[2], cy[cell] + d[3]], axis=1)
        keep = batched_nms(boxes, scores, cls, iou)[:max_det]
        out.append((boxes[keep].astype(np.float32), scores[keep].astype(np.float32), cls[keep].astype(np.int64)))
    return out
