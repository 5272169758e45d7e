"""Box geometry without torch: IoU, non-maximum suppression, and the letterbox that puts an
image of any size into the detector's square input and maps boxes back.

Everything here is numpy (plus OpenCV's resize for the letterbox image), so the ONNX inference
path, which has no torch, decodes and places boxes exactly as training evaluation does.
Boxes are float arrays (n, 4) of x1, y1, x2, y2 in pixels, with x2/y2 the far edge
(a box covering pixel columns 0..9 is x1=0, x2=10).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
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


@dataclass(frozen=True)
class Letterbox:
    """Where an image of (width, height) lands in a (size_w, size_h) input: scaled by `scale`,
    then shifted right by `pad_x` and down by `pad_y` pixels."""

    scale: float
    pad_x: int
    pad_y: int
    width: int  # the original image's
    height: int

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Original-image pixels -> input pixels."""
        out = np.asarray(boxes, dtype=np.float32) * self.scale
        out[:, [0, 2]] += self.pad_x
        out[:, [1, 3]] += self.pad_y
        return out

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Input pixels -> original-image pixels, clipped to the image."""
        out = np.asarray(boxes, dtype=np.float32).copy()
        out[:, [0, 2]] -= self.pad_x
        out[:, [1, 3]] -= self.pad_y
        out /= self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out


def letterbox_geometry(width: int, height: int, size: int | tuple[int, int]) -> Letterbox:
    """The largest scale that fits (width, height) into size (a square side, or (w, h)),
    centred; the same numbers `letterbox` uses."""
    sw, sh = (size, size) if isinstance(size, int) else size
    scale = min(sw / width, sh / height)
    nw, nh = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    return Letterbox(scale, (sw - nw) // 2, (sh - nh) // 2, width, height)


def letterbox(image: np.ndarray, size: int | tuple[int, int], pad_value: int = 114) -> tuple[np.ndarray, Letterbox]:
    """Resize an HxWxC uint8 image to fit size (square side or (w, h)) keeping its aspect
    ratio, centre it on a pad_value canvas. Returns (canvas, geometry)."""
    h, w = image.shape[:2]
    g = letterbox_geometry(w, h, size)
    sw, sh = (size, size) if isinstance(size, int) else size
    nw, nh = max(1, int(round(w * g.scale))), max(1, int(round(h * g.scale)))
    if (nw, nh) != (w, h):
        # Area averaging when shrinking keeps thin strokes; bilinear when growing.
        interp = cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
        if image.ndim == 2:
            image = image[:, :, None]
    canvas = np.full((sh, sw, image.shape[2]), pad_value, dtype=np.uint8)
    canvas[g.pad_y:g.pad_y + nh, g.pad_x:g.pad_x + nw] = image
    return canvas, g
