"""The one preprocessing path: decoded PIL image -> normalized float32 CHW array.

Both backends and the training engine's evaluation use it, so a model sees the same
numbers whether it runs in PyTorch or onnxruntime. It reproduces torchvision's
`ImageClassification` transform (resize shorter side with antialiasing, center crop, scale to
[0, 1], normalize) using Pillow, which is what torchvision itself calls for PIL images.
No torch import here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


@dataclass(frozen=True)
class Preprocess:
    crop: int  # side of the square the model sees
    resize: int  # shorter side is resized to this before the center crop (== crop: no margin)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3  # 3: RGB, 1: grayscale
    interpolation: str = "bilinear"

    @property
    def mode(self) -> str:
        """The PIL mode images are decoded to."""
        return "L" if self.channels == 1 else "RGB"

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        d = dict(d)
        d["mean"] = tuple(float(x) for x in d["mean"])
        d["std"] = tuple(float(x) for x in d["std"])
        return cls(**d)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the shorter-side resize, rounded as torchvision does."""
        short, long = (width, height) if width <= height else (height, width)
        if short == self.resize:
            return width, height
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def __call__(self, img: Image.Image) -> np.ndarray:
        if img.mode != self.mode:
            img = img.convert(self.mode)
        size = self.resized_size(*img.size)
        if size != img.size:
            img = img.resize(size, _INTERPOLATION[self.interpolation], reducing_gap=None)
        w, h = img.size
        c = self.crop
        if w < c or h < c:  # torchvision pads with zeros before cropping; so do we
            padded = Image.new(img.mode, (max(w, c), max(h, c)))
            padded.paste(img, ((max(w, c) - w) // 2, (max(h, c) - h) // 2))
            img, (w, h) = padded, padded.size
        top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
        img = img.crop((left, top, left + c, top + c))
        pixels = np.asarray(img)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        # One CHW float32 array, then in-place steps: the same float32 operations in the same
        # order as torchvision (x / 255, - mean, / std), so the same bits, without temporaries.
        arr = np.empty((pixels.shape[2], *pixels.shape[:2]), dtype=np.float32)
        arr[...] = pixels.transpose(2, 0, 1)
        arr /= np.float32(255)
        arr -= np.asarray(self.mean, dtype=np.float32)[:, None, None]
        arr /= np.asarray(self.std, dtype=np.float32)[:, None, None]
        return arr
