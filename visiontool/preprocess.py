"""The one preprocessing path: decoded PIL image -> normalized float32 CHW array, plus the
geometry that maps the model's pixel coordinates back to the original image.

Both backends and the training engine's evaluation use it, so a model sees the same
numbers whether it runs in PyTorch or onnxruntime. Four ways to fit an image to the model:
- "crop": torchvision's `ImageClassification` transform (resize shorter side with
  antialiasing, center crop, scale to [0, 1], normalize), reproduced with Pillow, which is
  what torchvision itself calls for PIL images: the same bits;
- "letterbox": the longer side scaled to `crop`, the rest padded with the mean colour (which
  normalizes to 0), so nothing of the image is lost (detectors);
- "none": the image at its own size (models that resize inside, like torchvision's detectors,
  or that take any size, like UNet checkpoints);
- "shorter": the shorter side resized to `resize`, the longer in proportion, no crop
  (torchvision's `SemanticSegmentation` transform: segmentation models see the whole image;
  style networks, which take any size, run at a chosen scale).
No torch import here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


FITS = ("crop", "letterbox", "none", "shorter")
# "none": the smallest side taken. Segmentation models may read an image at down to 1/4 of its
# size (their scales; a guided filter's fits at 1/2), and a side of 0 px is no image.
MIN_SIDE = 4


class ImageTooSmall(ValueError):
    """An image smaller than the model can read: that image's error, not the run's."""


class Geometry(NamedTuple):
    """Where an original image landed in the model's input: input = original * scale + offset."""

    width: int  # original size, after EXIF orientation
    height: int
    scale_x: float
    scale_y: float
    left: float
    top: float

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """(n, 4) x1, y1, x2, y2 in input pixels -> original pixels, clipped to the image."""
        out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
        out[:, 0::2] = ((out[:, 0::2] - self.left) / self.scale_x).clip(0, self.width)
        out[:, 1::2] = ((out[:, 1::2] - self.top) / self.scale_y).clip(0, self.height)
        return out


@dataclass(frozen=True)
class Preprocess:
    crop: int  # side of the square the model sees ("shorter": its shorter side, as resize; "none": unused)
    resize: int  # shorter side is resized to this before the center crop (== crop: no margin)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3  # 3: RGB, 1: grayscale
    interpolation: str = "bilinear"
    fit: str = "crop"  # crop | letterbox | none (see the module docstring)

    def __post_init__(self) -> None:
        if self.fit not in FITS:  # metadata from a file handed over: say what is wrong, once
            raise ValueError(f"preprocessing fit {self.fit!r} is not one of {', '.join(FITS)}")

    @property
    def mode(self) -> str:
        """The PIL mode images are decoded to."""
        return "L" if self.channels == 1 else "RGB"

    @property
    def square(self) -> bool:
        """Whether every image becomes a crop x crop input; False: the input's shape follows the
        image ("none", "shorter"), so an exported graph needs dynamic height and width."""
        return self.fit in ("crop", "letterbox")

    @property
    def draft(self) -> tuple[int, int] | None:
        """The smallest decoded size this preprocessing needs (JPEGs may decode at a reduced
        DCT scale down to it); None: full size."""
        if self.fit == "none":
            return None
        side = self.resize if self.fit in ("crop", "shorter") else self.crop
        return (side, side)

    def at_size(self, size: int) -> "Preprocess":
        """The same preprocessing for a model input of side `size`: a crop keeps its
        resize/crop ratio (256/224 stays 256/224), a letterbox fills `size`, "shorter" resizes
        the shorter side to `size`, "none" has no size."""
        if self.fit == "none":
            return self
        resize = size if self.fit in ("letterbox", "shorter") else round(size * self.resize / self.crop)
        return replace(self, crop=size, resize=resize)

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
        return self.apply(img)[0]

    def apply(self, img: Image.Image, original: tuple[int, int] | None = None) -> tuple[np.ndarray, Geometry]:
        """(input array, geometry). `original`: the image's size before a reduced-size decode,
        so that the geometry maps back to the pixels the user sees (default: what `decode` noted)."""
        original = original or img.info.get("original_size")
        if img.mode != self.mode:
            img = img.convert(self.mode)
        w0, h0 = img.size
        ow, oh = original or img.size
        fit = {"crop": self._crop, "letterbox": self._letterbox, "none": self._as_is, "shorter": self._shorter}[self.fit]
        img, sx, sy, left, top = fit(img)
        return self._normalize(img), Geometry(ow, oh, sx * w0 / ow, sy * h0 / oh, left, top)

    def _crop(self, img: Image.Image):
        w0, h0 = img.size
        size = self.resized_size(w0, h0)
        if size != img.size:
            img = img.resize(size, _INTERPOLATION[self.interpolation], reducing_gap=None)
        w, h = img.size
        c = self.crop
        pad_x = pad_y = 0
        if w < c or h < c:  # torchvision pads with zeros before cropping; so do we
            padded = Image.new(img.mode, (max(w, c), max(h, c)))
            pad_x, pad_y = (max(w, c) - w) // 2, (max(h, c) - h) // 2
            padded.paste(img, (pad_x, pad_y))
            img = padded
        top, left = int(round((img.size[1] - c) / 2.0)), int(round((img.size[0] - c) / 2.0))
        img = img.crop((left, top, left + c, top + c))
        return img, size[0] / w0, size[1] / h0, pad_x - left, pad_y - top

    def _letterbox(self, img: Image.Image):
        w0, h0 = img.size
        c = self.crop
        scale = c / max(w0, h0)
        w, h = max(1, round(w0 * scale)), max(1, round(h0 * scale))
        if (w, h) != img.size:
            img = img.resize((w, h), _INTERPOLATION[self.interpolation], reducing_gap=None)
        fill = tuple(round(m * 255) for m in self.mean)
        canvas = Image.new(img.mode, (c, c), fill if len(fill) > 1 else fill[0])
        left, top = (c - w) // 2, (c - h) // 2
        canvas.paste(img, (left, top))
        return canvas, w / w0, h / h0, left, top

    def _shorter(self, img: Image.Image):
        w0, h0 = img.size
        size = self.resized_size(w0, h0)
        if size != img.size:
            img = img.resize(size, _INTERPOLATION[self.interpolation], reducing_gap=None)
        return img, size[0] / w0, size[1] / h0, 0, 0

    def _as_is(self, img: Image.Image):
        if min(img.size) < MIN_SIDE:
            raise ImageTooSmall(f"image too small: {img.size[0]} x {img.size[1]} pixels; this model reads images "
                                f"at their own size and needs at least {MIN_SIDE} pixels a side")
        return img, 1.0, 1.0, 0, 0

    def _normalize(self, img: Image.Image) -> np.ndarray:
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

