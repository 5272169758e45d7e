"""Pictures of results: boxes and labels drawn on images, class masks, crops, output names,
review sheets.

numpy and OpenCV (Pillow for palette PNGs), never torch: results are drawn on the torch-free ONNX path too, and in
worker processes where importing torch would cost seconds per process. Images are HxWx3 uint8
RGB arrays throughout (OpenCV's BGR order appears only inside `save_image`).

A detection is a dict `{"box": [x1, y1, x2, y2], "label": str, "index": int, "score": float}`.
Box coordinates are pixel edges of the image it is drawn on: x1 is the left edge of the first
column covered and x2 the right edge of the last one, so a box covering a whole W x H image is
[0, 0, W, H]. `score` may be missing or None (ground truth): the label is then the name alone.

A class mask is an HxW uint8 array of class indices, 0 = background and 255 = ignore (pixels
without a label), coloured with `mask_palette`.
"""

from __future__ import annotations

import colorsys
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from PIL import Image

from visiontool.fsutil import atomic_write

JPEG_QUALITY = 95
_JPEG_SUFFIXES = (".jpg", ".jpeg")
_PNG_COMPRESSION = 3  # zlib level: files within a few % of level 9 at a fraction of the time
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK = (0, 0, 0)
_WHITE = (255, 255, 255)

# Review sheet (truth_vs_prediction) colours: a neutral dark frame keeps every class colour
# and both outline shades of the ground-truth boxes visible against it.
_SHEET_BACKGROUND = (24, 24, 27)
_CELL_PADDING = (48, 48, 52)
_LEGEND_TEXT = (230, 230, 230)
_TRUTH_TAG = (20, 20, 20)


# --------------------------------------------------------------------------- colours


def _class_color(index: int) -> tuple[int, int, int]:
    """Colour of one class index; depends on the index alone, so it never changes with n.

    Hues step by the golden-ratio fraction of the circle, which keeps any run of consecutive
    indices far apart on the hue wheel. After every full lap of 12 the saturation and
    brightness shift, so classes 12 apart are not twins.
    """
    if index < 0:
        raise ValueError(f"class index must be >= 0, not {index}")
    hue = (0.02 + index * 0.6180339887498949) % 1.0
    lap = index // 12
    saturation = (0.85, 1.0, 0.65)[lap % 3]
    value = (1.0, 0.8, 0.95, 0.7)[lap % 4]
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def class_colors(n: int) -> np.ndarray:
    """(n, 3) uint8 RGB: a distinct, saturated colour per class index 0..n-1.

    Row i is the same for every n, so class 3 keeps its colour whether a model has 5 or 500
    classes.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    return np.array([_class_color(i) for i in range(n)], dtype=np.uint8).reshape(n, 3)


def _relative_luminance(rgb: Sequence[int]) -> float:
    """WCAG 2 relative luminance of an sRGB colour, 0 (black) to 1 (white)."""

    def linear(c: float) -> float:
        c = c / 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_color(fill: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever has the higher contrast ratio against `fill` (WCAG 2)."""
    lum = _relative_luminance(fill)
    on_black = (lum + 0.05) / 0.05
    on_white = 1.05 / (lum + 0.05)
    return _BLACK if on_black >= on_white else _WHITE


# --------------------------------------------------------------------------- mask colours

IGNORE_INDEX = 255  # mask value of pixels without a label


def _voc_color(index: int) -> tuple[int, int, int]:
    """The PASCAL VOC colour of a mask value: its bits, three at a time, fill r, g and b from
    the top bit down. 0 is black, 1 dark red, 2 dark green, ...; 255 (ignore) comes out as
    VOC's own light cream (224, 224, 192), unlike any class colour of a small model.
    """
    r = g = b = 0
    for shift in range(7, -1, -1):
        r |= (index & 1) << shift
        g |= ((index >> 1) & 1) << shift
        b |= ((index >> 2) & 1) << shift
        index >>= 3
    return r, g, b


def mask_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 RGB: the colour of mask values 0..n-1, VOC-style (0 black, 255 = ignore cream).

    Row i is the same for every n, and a palette PNG written with it shows the same colours as
    the PASCAL VOC ground-truth masks.
    """
    if not 0 <= n <= 256:
        raise ValueError(f"a mask palette has 0 to 256 colours, not {n}")
    return np.array([_voc_color(i) for i in range(n)], dtype=np.uint8).reshape(n, 3)


_MASK_LUT = mask_palette(256)


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != np.uint8 or mask.ndim != 2 or mask.shape[0] < 1 or mask.shape[1] < 1:
        raise ValueError(f"a class mask must be a non-empty HxW uint8 array, not {mask.dtype} {mask.shape}")
    return mask


def color_mask(mask: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB picture of an HxW class-index mask in `mask_palette` colours."""
    mask = _as_mask(mask)
    return cv2.LUT(cv2.merge([mask, mask, mask]), _MASK_LUT.reshape(256, 1, 3))  # ~6x a numpy lookup


def classes_by_area(mask: np.ndarray) -> list[tuple[int, int]]:
    """(class index, pixel count) of every value present in `mask`, largest first (ties: lower
    index first)."""
    counts = np.bincount(_as_mask(mask).ravel(), minlength=256)
    present = np.flatnonzero(counts)
    order = sorted(present.tolist(), key=lambda i: (-int(counts[i]), i))
    return [(i, int(counts[i])) for i in order]


# --------------------------------------------------------------------------- geometry


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """A fresh, contiguous HxWx3 uint8 copy; grayscale HxW is expanded to three channels."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, not {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image must be HxWx3 RGB (or HxW gray), not shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.array(image, copy=True, order="C")


def _box_values(box) -> tuple[float, float, float, float]:
    values = [float(v) for v in box]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"box must be four finite numbers [x1, y1, x2, y2], not {box!r}")
    x1, y1, x2, y2 = values
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def _pixel_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer [x1, x2) x [y1, y2) pixel span of a box, clipped to the image, at least 1x1."""
    x1, y1, x2, y2 = _box_values(box)

    def span(lo: float, hi: float, size: int) -> tuple[int, int]:
        a = min(max(round(lo), 0), size - 1)
        b = min(max(round(hi), a + 1), size)
        return a, b

    x1i, x2i = span(x1, x2, width)
    y1i, y2i = span(y1, y2, height)
    return x1i, y1i, x2i, y2i


def _overlaps(box, width: int, height: int) -> bool:
    x1, y1, x2, y2 = _box_values(box)
    return x2 > 0 and y2 > 0 and x1 < width and y1 < height


# --------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class _Style:
    """Line and text sizes for one picture size, so every picture reads alike at its own scale."""

    line: int
    font_scale: float
    font_thickness: int

    @classmethod
    def for_size(cls, height: int, width: int) -> _Style:
        short = min(height, width)
        # Text grows slower than the picture: small pictures need relatively larger text to
        # stay legible, large ones would drown in labels scaled in proportion.
        font_scale = min(0.3 + short / 1500.0, 3.0)
        return cls(
            line=max(1, round(short / 280)),
            font_scale=font_scale,
            font_thickness=max(1, round(font_scale * 1.7)),
        )


def _label_patch(text: str, fill: Sequence[int], style: _Style) -> np.ndarray:
    """The label as its own small picture: `text` on a solid `fill`, in black or white."""
    # Hershey fonts cover ASCII only; anything else would come out as '?' per byte.
    text = text.encode("ascii", "replace").decode("ascii")
    (tw, th), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
    pad_x = max(2, round(th * 0.35))
    pad_y = max(1, round(th * 0.3))
    patch = np.empty((pad_y + th + baseline + pad_y, tw + 2 * pad_x, 3), np.uint8)
    patch[:] = fill
    cv2.putText(
        patch, text, (pad_x, pad_y + th), _FONT, style.font_scale,
        text_color(fill), style.font_thickness, cv2.LINE_AA,
    )
    return patch


def _paste(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """Copy `patch` onto `canvas` with its top-left at (top, left); whatever falls outside is cut."""
    h, w = canvas.shape[:2]
    ph, pw = patch.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + ph, h), min(left + pw, w)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]


def _draw_frame(canvas: np.ndarray, span: tuple[int, int, int, int], color, thickness: int) -> None:
    """Rectangle outline drawn inward from the box edges.

    Inward, not centred on the edge: the outline never covers pixels outside the box, and a box
    that fills the image, or is cut by the image border, still shows its whole outline.
    """
    x1, y1, x2, y2 = span
    t = min(thickness, max(1, (x2 - x1 + 1) // 2), max(1, (y2 - y1 + 1) // 2))
    canvas[y1 : y1 + t, x1:x2] = color
    canvas[y2 - t : y2, x1:x2] = color
    canvas[y1:y2, x1 : x1 + t] = color
    canvas[y1:y2, x2 - t : x2] = color


def _draw_dashed_frame(canvas: np.ndarray, span: tuple[int, int, int, int], thickness: int) -> None:
    """Outline in alternating white and black dashes: visible on any image, unlike any one colour."""
    x1, y1, x2, y2 = span
    t = min(thickness, max(1, (x2 - x1 + 1) // 2), max(1, (y2 - y1 + 1) // 2))
    dash = max(4, 4 * thickness)
    frame = np.zeros(canvas.shape[:2], bool)
    frame[y1:y2, x1:x2] = True
    frame[y1 + t : y2 - t, x1 + t : x2 - t] = False
    rows, cols = np.nonzero(frame)
    # Dash phase by position along the edge (x on the horizontal edges, y on the vertical ones).
    along = np.where((rows < y1 + t) | (rows >= y2 - t), cols - x1, rows - y1)
    white = (along // dash) % 2 == 0
    canvas[rows[white], cols[white]] = _WHITE
    canvas[rows[~white], cols[~white]] = _BLACK


def _label_text(det: dict) -> str:
    label = str(det.get("label", det.get("index", "")))
    score = det.get("score")
    return label if score is None else f"{label} {float(score):.2f}"


def _draw_one(canvas: np.ndarray, det: dict, style: _Style) -> None:
    h, w = canvas.shape[:2]
    if not _overlaps(det["box"], w, h):
        return
    span = _pixel_box(det["box"], w, h)
    color = _class_color(int(det["index"]))
    _draw_frame(canvas, span, color, style.line)
    patch = _label_patch(_label_text(det), color, style)
    x1, y1 = span[0], span[1]
    lh, lw = patch.shape[:2]
    # Above the box, flush with its outline; inside it when there is no room above.
    top = y1 - lh if y1 - lh >= 0 else y1
    left = min(x1, max(w - lw, 0))
    _paste(canvas, patch, top, left)


def _by_score(detections: Iterable[dict]) -> list[dict]:
    """Lowest score first, so the most confident boxes and labels end up on top."""
    return sorted(detections, key=lambda d: float(d.get("score") or 0.0))


def draw_detections(image: np.ndarray, detections: list[dict]) -> np.ndarray:
    """A new RGB image with each detection's box and "<label> <score>" tag in its class colour.

    Line width and text size follow the image size. Boxes reaching past the image are cut at
    its border; boxes wholly outside are not drawn. `image` is left untouched.
    """
    canvas = _as_rgb(image)
    style = _Style.for_size(*canvas.shape[:2])
    for det in _by_score(detections):
        _draw_one(canvas, det, style)
    return canvas


def crop_detections(image: np.ndarray, detections: list[dict]) -> list[tuple[str, int, np.ndarray]]:
    """(label, class index, crop) per detection, in the given order.

    Each crop is a copy of the box's pixels, clipped to the image and at least 1x1, so it stays
    valid after `image` changes and can always be saved.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be HxWx3 RGB (or HxW gray), not shape {image.shape}")
    h, w = image.shape[:2]
    crops = []
    for det in detections:
        x1, y1, x2, y2 = _pixel_box(det["box"], w, h)
        label = str(det.get("label", det["index"]))
        crops.append((label, int(det["index"]), image[y1:y2, x1:x2].copy()))
    return crops


def _mask_legend(entries: Sequence[tuple[str, tuple[int, int, int]]], style: _Style, height: int) -> np.ndarray:
    """A dark box listing a colour swatch and a name per entry, one per line, as tall as fits
    `height`; entries that do not fit become a last "+k more" line."""
    (_, th), baseline = cv2.getTextSize("Ag", _FONT, style.font_scale, style.font_thickness)
    line = th + baseline + max(2, th // 3)
    pad = max(3, th // 2)
    fits = max(1, (height - 2 * pad) // line)
    lines = [(name, color) for name, color in entries]
    if len(lines) > fits:
        more = len(lines) - (fits - 1)
        lines = lines[: fits - 1] + [(f"+{more} more", None)]
    swatch = th + baseline
    widths = [cv2.getTextSize(name.encode("ascii", "replace").decode("ascii"), _FONT,
                              style.font_scale, style.font_thickness)[0][0] for name, _ in lines]
    box = np.empty((2 * pad + len(lines) * line, 3 * pad + swatch + max(widths), 3), np.uint8)
    box[:] = _SHEET_BACKGROUND
    for k, (name, color) in enumerate(lines):
        top = pad + k * line
        if color is not None:
            box[top : top + swatch, pad : pad + swatch] = color
        cv2.putText(box, name.encode("ascii", "replace").decode("ascii"),
                    (2 * pad + swatch, top + th), _FONT, style.font_scale, _LEGEND_TEXT,
                    style.font_thickness, cv2.LINE_AA)
    return box


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    labels: Sequence[str],
    alpha: float = 0.5,
    *,
    background: int | None = 0,
    present: Sequence[int] | None = None,
) -> np.ndarray:
    """A new RGB image: `mask`'s class colours blended over `image`, with a legend top-left.

    Each labelled pixel becomes (1 - alpha) * image + alpha * colour; pixels of class
    `background` stay as they were, so the picture shows what was found (None colours them
    too). Ignore pixels (255) are blended in the ignore colour. The legend names the classes
    present, in the order of `present` (default: largest area first), `labels[i]` naming class
    i (its number when there is no such label). `image` and `mask` must have one size.
    """
    canvas = _as_rgb(image)
    mask = _as_mask(mask)
    if mask.shape != canvas.shape[:2]:
        raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                         f"{canvas.shape[1]}x{canvas.shape[0]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    if present is None:
        present = [i for i, _ in classes_by_area(mask)]
    shown = [int(i) for i in present if i != background]
    if not shown:
        return canvas
    blended = cv2.addWeighted(canvas, 1.0 - alpha, color_mask(mask), alpha, 0.0)
    if background is not None:
        cv2.copyTo(canvas, (mask == background).view(np.uint8), blended)
    canvas = blended

    def name(i: int) -> str:
        if i == IGNORE_INDEX:
            return "ignore"
        return str(labels[i]) if 0 <= i < len(labels) else str(i)

    style = _Style.for_size(*canvas.shape[:2])
    legend = _mask_legend([(name(i), tuple(int(c) for c in _MASK_LUT[i])) for i in shown],
                          style, canvas.shape[0])
    _paste(canvas, legend, 0, 0)
    return canvas


# --------------------------------------------------------------------------- files


def _is_jpeg_name(name: str) -> bool:
    name = name.lower()
    return name.endswith(_JPEG_SUFFIXES) or name in ("jpg", "jpeg")


def save_image(path: str | os.PathLike, image_rgb: np.ndarray, like: str | None = None) -> Path:
    """Write an RGB (or gray) uint8 image as JPEG (quality 95) or PNG; returns the path.

    The format follows `like` when given (a file name, a suffix such as ".jpg", or "png"),
    else `path`'s suffix: .jpg/.jpeg (any case) is JPEG, everything else PNG. The file is
    encoded in memory and renamed into place, so it is either whole or absent.
    """
    path = Path(path)
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise ValueError(f"image must be HxWx3 RGB or HxW gray uint8, not {image.dtype} {image.shape}")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if _is_jpeg_name(like if like is not None else path.name):
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, _PNG_COMPRESSION])
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image for {path}")
    with atomic_write(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path


def save_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a class-index mask as a palette PNG; returns the path.

    Pixel values are the class indices themselves (mode "P"), so any reader that loads the raw
    values gets the mask back, while viewers show it in `mask_palette` colours. Written
    atomically: the file is whole or absent.
    """
    path = Path(path)
    mask = _as_mask(mask)
    picture = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    picture.putpalette(_MASK_LUT.tobytes())
    with atomic_write(path) as tmp:
        picture.save(tmp, format="PNG", compress_level=_PNG_COMPRESSION)
    return path


def output_name(input_path: str | os.PathLike, save_dir: str | os.PathLike) -> Path:
    """Where the picture drawn for `input_path` goes: same stem, .jpg for JPEG inputs, else .png.

    JPEG in, JPEG out keeps photos small; anything else becomes PNG, which is lossless and
    reads everywhere (unlike the input's own format, which may be TIFF, WebP or a raw .dat).
    """
    src = Path(input_path)
    suffix = ".jpg" if src.suffix.lower() in _JPEG_SUFFIXES else ".png"
    return Path(save_dir) / f"{src.stem}{suffix}"


class NameKeeper:
    """Hands out output names for one run so that no two inputs share a stem.

    Inputs from different folders can share a stem (a/x.jpg, b/x.png); the first keeps "x" and
    later ones become "x_2", "x_3", ... Names are compared case-insensitively, because X.jpg and
    x.jpg are one file on macOS and Windows. Stems rather than whole names are kept unique, so
    files that go with a picture (a labels file, crops) can use the same stem safely.
    Not thread-safe: call it from the thread that writes the results.
    """

    def __init__(self, save_dir: str | os.PathLike):
        self.save_dir = Path(save_dir)
        self._taken: set[str] = set()

    def stem(self, input_path: str | os.PathLike) -> str:
        """A stem no earlier call returned: the input's own when free, else with _2, _3, ..."""
        base = Path(input_path).stem
        stem, n = base, 1
        # A numbered stem can itself be taken by an input really named like that (x_2.jpg).
        while stem.casefold() in self._taken:
            n += 1
            stem = f"{base}_{n}"
        self._taken.add(stem.casefold())
        return stem

    def name(self, input_path: str | os.PathLike) -> Path:
        """`output_name` for `input_path`, with a stem no earlier call in this run was given."""
        natural = output_name(input_path, self.save_dir)
        return natural.with_name(self.stem(input_path) + natural.suffix)


# --------------------------------------------------------------------------- review sheet


def _letterbox(image: np.ndarray, side: int) -> tuple[np.ndarray, float, int, int]:
    """`image` scaled to fit a side x side cell, centred on padding; returns (cell, scale, dx, dy)."""
    image = _as_rgb(image)
    h, w = image.shape[:2]
    scale = min(side / w, side / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interpolation)
    cell = np.empty((side, side, 3), np.uint8)
    cell[:] = _CELL_PADDING
    dx, dy = (side - nw) // 2, (side - nh) // 2
    cell[dy : dy + nh, dx : dx + nw] = resized
    return cell, scale, dx, dy


def _moved(det: dict, scale: float, dx: int, dy: int) -> dict:
    x1, y1, x2, y2 = _box_values(det["box"])
    return {**det, "box": [x1 * scale + dx, y1 * scale + dy, x2 * scale + dx, y2 * scale + dy]}


def _named(det: dict, classes: Sequence[str]) -> dict:
    if "label" in det:
        return det
    index = int(det["index"])
    return {**det, "label": classes[index] if 0 <= index < len(classes) else str(index)}


def _draw_truth(canvas: np.ndarray, det: dict, style: _Style) -> None:
    """Dashed outline with a small dark name tag at its bottom-left corner, inside the box.

    The tag sits at the bottom so it does not collide with the prediction labels, which sit on
    top edges.
    """
    h, w = canvas.shape[:2]
    if not _overlaps(det["box"], w, h):
        return
    span = _pixel_box(det["box"], w, h)
    _draw_dashed_frame(canvas, span, style.line)
    patch = _label_patch(str(det["label"]), _TRUTH_TAG, style)
    lh, lw = patch.shape[:2]
    left = min(span[0], max(w - lw, 0))
    _paste(canvas, patch, max(span[3] - lh, 0), left)


def _legend(width: int, style: _Style, count: int) -> np.ndarray:
    """One line explaining the two kinds of box, with a sample of each."""
    (_, th), baseline = cv2.getTextSize("Ag", _FONT, style.font_scale, style.font_thickness)
    height = th + baseline + 2 * max(6, th // 2)
    strip = np.empty((height, width, 3), np.uint8)
    strip[:] = _SHEET_BACKGROUND
    sample = max(12, th + baseline)
    top = (height - sample) // 2
    text_y = (height + th - baseline) // 2
    x = max(8, th)
    items = (("truth", None), ("prediction + score", _class_color(0)))
    for text, color in items:
        span = (x, top, x + 2 * sample, top + sample)
        if color is None:
            _draw_dashed_frame(strip, span, max(1, style.line))
        else:
            _draw_frame(strip, span, color, max(1, style.line))
        x += 2 * sample + max(6, th // 2)
        cv2.putText(strip, text, (x, text_y), _FONT, style.font_scale, _LEGEND_TEXT,
                    style.font_thickness, cv2.LINE_AA)
        (tw, _), _ = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
        x += tw + 3 * max(8, th)
    note = f"{count} validation image{'s' if count != 1 else ''}"
    (tw, _), _ = cv2.getTextSize(note, _FONT, style.font_scale, style.font_thickness)
    if x + tw + max(8, th) <= width:
        cv2.putText(strip, note, (width - tw - max(8, th), text_y), _FONT, style.font_scale,
                    _LEGEND_TEXT, style.font_thickness, cv2.LINE_AA)
    return strip


def truth_vs_prediction(
    images: Sequence[np.ndarray],
    truths: Sequence[list[dict]],
    preds: Sequence[list[dict]],
    classes: Sequence[str],
    path: str | os.PathLike,
    cols: int = 4,
    *,
    cell: int = 320,
) -> Path:
    """Write a PNG grid: each image letterboxed into an equal cell, truths and predictions on it.

    truths[i] and preds[i] are image i's boxes in its own pixels. Ground truth is a dashed
    white-and-black outline with its class name; predictions are drawn like `draw_detections`
    (class colour, name and score). A label may be left out of a dict: classes[index] names it.
    A legend line tops the sheet. Written atomically; returns `path`.
    """
    n = len(images)
    if n == 0:
        raise ValueError("truth_vs_prediction needs at least one image")
    if len(truths) != n or len(preds) != n:
        raise ValueError(f"got {n} images, {len(truths)} truth lists and {len(preds)} prediction lists")
    if cols < 1 or cell < 16:
        raise ValueError(f"cols must be >= 1 and cell >= 16, not cols={cols}, cell={cell}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    gap = max(2, cell // 80)
    style = _Style.for_size(cell, cell)
    legend = _legend(cols * cell + (cols + 1) * gap, style, n)
    sheet = np.empty((legend.shape[0] + rows * (cell + gap), legend.shape[1], 3), np.uint8)
    sheet[:] = _SHEET_BACKGROUND
    sheet[: legend.shape[0]] = legend
    for i, (image, truth, pred) in enumerate(zip(images, truths, preds)):
        canvas, scale, dx, dy = _letterbox(image, cell)
        for det in truth:
            _draw_truth(canvas, _moved(_named(det, classes), scale, dx, dy), style)
        for det in _by_score(pred):
            _draw_one(canvas, _moved(_named(det, classes), scale, dx, dy), style)
        r, c = divmod(i, cols)
        top = legend.shape[0] + r * (cell + gap)
        left = gap + c * (cell + gap)
        sheet[top : top + cell, left : left + cell] = canvas
    return save_image(path, sheet, like=".png")


# --------------------------------------------------------------------------- contact sheet


def contact_sheet(
    grid: Sequence[Sequence[np.ndarray | None]],
    path: str | os.PathLike,
    *,
    tags: Sequence[Sequence[str | None]] | None = None,
    title: str | None = None,
    cell: int = 192,
) -> Path:
    """Write a PNG of images in rows: each letterboxed into an equal cell, an optional name tag
    at its top-left corner (tags[r][c]) and an optional title line on top. A None cell is left
    empty. Rows may differ in length. Written atomically; returns `path`."""
    if not grid or not any(len(row) for row in grid):
        raise ValueError("contact_sheet needs at least one image")
    if cell < 16:
        raise ValueError(f"cell must be >= 16, not {cell}")
    cols = max(len(row) for row in grid)
    gap = max(2, cell // 80)
    style = _Style.for_size(cell, cell)
    width = cols * cell + (cols + 1) * gap
    head = np.empty((0, width, 3), np.uint8)
    if title:
        (_, th), baseline = cv2.getTextSize("Ag", _FONT, style.font_scale, style.font_thickness)
        head = np.empty((th + baseline + 2 * max(6, th // 2), width, 3), np.uint8)
        head[:] = _SHEET_BACKGROUND
        cv2.putText(head, title.encode("ascii", "replace").decode("ascii"), (gap + max(4, th // 2), head.shape[0] // 2 + th // 2),
                    _FONT, style.font_scale, _LEGEND_TEXT, style.font_thickness, cv2.LINE_AA)
    sheet = np.empty((head.shape[0] + len(grid) * (cell + gap) + gap * (not title), width, 3), np.uint8)
    sheet[:] = _SHEET_BACKGROUND
    sheet[: head.shape[0]] = head
    top0 = head.shape[0] if title else gap
    for r, row in enumerate(grid):
        for c, image in enumerate(row):
            if image is None:
                continue
            canvas = _letterbox(image, cell)[0]
            tag = tags[r][c] if tags is not None and r < len(tags) and c < len(tags[r]) else None
            if tag:
                _paste(canvas, _label_patch(tag, _TRUTH_TAG, style), 0, 0)
            top, left = top0 + r * (cell + gap), gap + c * (cell + gap)
            sheet[top : top + cell, left : left + cell] = canvas
    return save_image(path, sheet, like=".png")
