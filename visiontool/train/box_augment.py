"""Detection training batches: decoded uint8 images of any size plus their boxes -> one
fixed-size normalized float batch (B, 3, S, S) whose boxes moved with the pixels.

Per image, one affine warp (OpenCV, on the uint8 pixels) does the geometry at once:
- scale jitter around "fit the long side to S" (or to `fit`; log-uniform in `scale`), with a mild
  independent aspect jitter;
- a random placement: an image smaller than S lands anywhere on a grey canvas, a larger one is
  cropped at a random window; boxes are clipped to the canvas and dropped when less than
  `min_visible` of their area stays in view (a sliver of an object teaches the wrong box);
- an optional horizontal flip (off by default: a mirrored digit is another glyph or none).
Mosaic (probability `mosaic`) tiles four images around a random centre, each warped as above
into its quadrant. Photometric jitter (brightness, contrast, saturation) runs on the whole
batch as tensor ops.

All random numbers come from the numpy Generator passed in, in a fixed order, so a seeded run
augments identically every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from visiontool.boxes import box_area

PAD_VALUE = 114


@dataclass(frozen=True)
class BoxAugment:
    size: int  # S, the side of the square training input
    mean: tuple[float, float, float]  # the model's input normalization (on [0, 1] pixels)
    std: tuple[float, float, float]
    scale: tuple[float, float] = (0.6, 1.6)  # relative to "long side fits `fit`", log-uniform
    # The long side the scale jitter is centred on (default: size). Larger than size trains on
    # crops at the resolution inference will letterbox to: a model trained on 256 crops of
    # scenes fitted to 512 runs at 512 with objects at the sizes it learned.
    fit: int | None = None
    aspect: float = 0.1  # width / height changes by up to this fraction
    flip: bool = False
    mosaic: float = 0.0  # probability that an image is a four-image mosaic
    min_visible: float = 0.4  # keep a clipped box when at least this much of its area stays
    brightness: float = 0.25  # additive, fraction of full range
    contrast: float = 0.3  # multiplicative about the image mean
    saturation: float = 0.4  # blend towards / away from grey

    def __call__(self, images: Sequence[np.ndarray], targets: Sequence[tuple[np.ndarray, np.ndarray]],
                 indices: Sequence[int], rng: np.random.Generator) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """images: the whole training set (HxWx3 uint8 each); targets: per image (boxes (n, 4)
        float xyxy pixels, labels (n,) int64); indices: this batch's images. A mosaic draws its
        three extra images from the whole set. Returns (x (B, 3, S, S) float32 normalized,
        [(boxes (k, 4) float32 tensor in input pixels, labels (k,) int64 tensor)] per image)."""
        s = self.size
        batch = np.empty((len(indices), s, s, 3), dtype=np.uint8)
        out_targets = []
        for j, i in enumerate(indices):
            if self.mosaic > 0 and rng.random() < self.mosaic:
                others = rng.integers(0, len(images), 3)
                b, l = self._mosaic(images, targets, [int(i), *map(int, others)], rng, batch[j])
            else:
                b, l = self._place(images[i], *targets[i], (0, 0, s, s), rng, batch[j])
            out_targets.append((torch.from_numpy(b), torch.from_numpy(l)))
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255)
        x = self._photometric(x, rng)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std).contiguous(memory_format=torch.channels_last), out_targets

    def _place(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, region: tuple[int, int, int, int],
               rng: np.random.Generator, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Warp one image into canvas[y0:y1, x0:x1] with random scale, placement and flip;
        return its surviving boxes in canvas pixels."""
        x0, y0, x1, y1 = region
        rw, rh = x1 - x0, y1 - y0
        h, w = image.shape[:2]
        u = rng.random(5)  # scale, aspect, x, y, flip: always five draws
        lo, hi = np.log(self.scale[0]), np.log(self.scale[1])
        base = (self.fit or self.size) / max(w, h)
        k = base * np.exp(lo + (hi - lo) * u[0])
        a = 1.0 + self.aspect * (2 * u[1] - 1)
        sx, sy = k * np.sqrt(a), k / np.sqrt(a)
        nw, nh = w * sx, h * sy
        # Smaller than the region: anywhere inside it; larger: any window of it.
        tx = min(0.0, rw - nw) + u[2] * abs(rw - nw)
        ty = min(0.0, rh - nh) + u[3] * abs(rh - nh)
        flip = self.flip and u[4] < 0.5
        # The map in pixel-edge coordinates (what boxes use): x' = +-sx * x + ex, y' = sy * y + ty.
        ex = tx + (nw if flip else 0.0)
        if k < 0.6:
            # Area averaging when shrinking hard, as the letterbox does for evaluation;
            # warpAffine alone would alias thin strokes away.
            src = cv2.resize(image, (max(1, int(round(nw))), max(1, int(round(nh)))), interpolation=cv2.INTER_AREA)
            ax, ay = nw / src.shape[1], nh / src.shape[0]
        else:
            src, ax, ay = image, sx, sy
        ax = -ax if flip else ax
        # OpenCV maps pixel centres (pixel i at i, not i + 0.5): shift the edge map by half a pixel.
        m = np.array([[ax, 0.0, ex + 0.5 * ax - 0.5], [0.0, ay, ty + 0.5 * ay - 0.5]], dtype=np.float64)
        canvas[y0:y1, x0:x1] = cv2.warpAffine(src, m, (rw, rh), flags=cv2.INTER_LINEAR,
                                              borderMode=cv2.BORDER_CONSTANT, borderValue=(PAD_VALUE,) * 3)
        if not len(boxes):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        b = np.asarray(boxes, dtype=np.float32)
        xs = b[:, [0, 2]] * sx
        if flip:
            xs = nw - xs[:, ::-1]
        moved = np.stack([xs[:, 0] + tx, b[:, 1] * sy + ty, xs[:, 1] + tx, b[:, 3] * sy + ty], axis=1)
        clipped = moved.copy()
        clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, rw)
        clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, rh)
        area = box_area(moved)
        keep = (box_area(clipped) >= self.min_visible * area) & (clipped[:, 2] - clipped[:, 0] >= 2) \
            & (clipped[:, 3] - clipped[:, 1] >= 2)
        clipped = clipped[keep]
        clipped[:, [0, 2]] += x0
        clipped[:, [1, 3]] += y0
        return clipped.astype(np.float32), np.asarray(labels, dtype=np.int64)[keep]

    def _mosaic(self, images, targets, which: list[int], rng: np.random.Generator,
                canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.size
        cx, cy = (int(s * (0.25 + 0.5 * v)) for v in rng.random(2))
        regions = [(0, 0, cx, cy), (cx, 0, s, cy), (0, cy, cx, s), (cx, cy, s, s)]
        bs, ls = [], []
        for i, region in zip(which, regions):
            b, l = self._place(images[i], *targets[i], region, rng, canvas)
            bs.append(b)
            ls.append(l)
        return np.concatenate(bs), np.concatenate(ls)

    def _photometric(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        n = len(x)
        u = torch.from_numpy(rng.random((n, 3)).astype(np.float32) * 2 - 1).view(n, 3, 1, 1, 1)
        grey = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        x = torch.lerp(grey, x, 1 + self.saturation * u[:, 2])
        mean = grey.mean(dim=(2, 3), keepdim=True)
        x = (x - mean) * (1 + self.contrast * u[:, 1]) + mean + self.brightness * u[:, 0]
        return x.clamp_(0, 1)
