"""Box geometry without torch: areas, IoU and non-maximum suppression.

Everything here is numpy, so the ONNX inference path, which has no torch, decodes boxes exactly
as training evaluation does (the letterbox itself is preprocess.py's). Boxes are float arrays
(n, 4) of x1, y1, x2, y2 in pixels, with x2/y2 the far edge (a box covering pixel columns 0..9
is x1=0, x2=10).
"""

from __future__ import annotations


import numpy as np


def box_area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 4) x (m, 4) -> (n, m) intersection over union."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / np.maximum(union, np.finfo(np.float32).tiny)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of kept boxes, best score first. A box is dropped
    when its IoU with a kept, better-scoring box is above `iou` (torchvision.ops.nms's rule)."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes.astype(np.float32, copy=False)
    areas = box_area(boxes)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        ious = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(ious > iou)]  # NaN (two empty boxes) keeps, as torchvision does
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float) -> np.ndarray:
    """Class-aware NMS: boxes only suppress boxes of their own label. Each label's boxes are
    shifted to a region of their own, so one NMS pass does all classes."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(boxes.max()) - min(float(boxes.min()), 0.0) + 1.0
    shifted = boxes + (labels.astype(np.float32) * span)[:, None]
    return nms(shifted, scores, iou)
