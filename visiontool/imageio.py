"""Decode any image file a user points at into an 8-bit RGB (or grayscale) PIL image.

Pillow is the decoder. Everything a camera, scanner or web page throws at us ends up as
the mode the model wants: EXIF orientation applied, palettes and transparency resolved,
16-bit samples scaled, CMYK converted. A file that cannot be decoded raises `DecodeError`
with a one-line reason, so the pipeline can record it as that file's error and go on.
No torch, no cv2: this module runs in decode workers and on the torch-free ONNX path.
"""

from __future__ import annotations

import contextlib

import os
import re
from typing import Final

import numpy as np
from PIL import Image, UnidentifiedImageError

from visiontool.errors import VisiontoolError

_OUTPUT_MODES: Final = ("RGB", "L")

# EXIF orientation tag value -> the transpose that shows the picture upright (EXIF 2.3, tag 0x0112).
_ORIENTATION_TAG: Final = 0x0112
_UPRIGHT: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES: Final = {5, 6, 7, 8}

# Leading bytes of the formats Pillow decodes. Each entry: (offset, signature).
_MAGIC: Final = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),  # PNG
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (0, b"BM"),  # BMP
    (0, b"II*\x00"),  # TIFF, little-endian
    (0, b"MM\x00*"),  # TIFF, big-endian
    (0, b"II+\x00"),  # BigTIFF
    (0, b"MM\x00+"),
    (0, b"\x00\x00\x01\x00"),  # ICO
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n"),  # JPEG 2000 (JP2)
    (0, b"\xff\x4f\xff\x51"),  # JPEG 2000 codestream
    (0, b"qoif"),  # QOI
    (0, b"8BPS"),  # Photoshop
    (0, b"DDS "),
    (0, b"\x0a\x05\x01"),  # PCX v5, RLE, 8 bits
    (0, b"icns"),
)
# Netpbm: P1..P7 (PBM, PGM, PPM, PAM) or Pf/PF (float PFM), whitespace, then a number or comment.
_NETPBM: Final = re.compile(rb"P[1-7fF]\s+[#0-9]|P7\s+WIDTH")
_SNIFF_BYTES: Final = 32

# Decompression bombs: a few bytes of PNG or GIF can declare 50,000 x 50,000 pixels (10 GB of
# RGB). Pictures above this many pixels are refused from their header, before any decoding. The
# default is where Pillow's own guard turns from a warning into an error (about 13,000 x 13,000);
# --max-pixels raises it for real gigapixel scans. Pillow's check is off so that ours, with a
# message that names the way out, is the one that speaks.
# VISIONTOOL_MAX_PIXELS sets it for every command (train and val too).
DEFAULT_MAX_PIXELS: Final = 2 * 89_478_485
ENV_MAX_PIXELS: Final = "VISIONTOOL_MAX_PIXELS"
_limit: dict = {"pixels": None}  # None: the environment's, else the default
Image.MAX_IMAGE_PIXELS = None


def set_max_pixels(pixels: int | None) -> None:
    """The largest picture `decode` accepts (None: VISIONTOOL_MAX_PIXELS, else the default). Set
    it before decoding workers start."""
    _limit["pixels"] = None if pixels is None else int(pixels)


def max_pixels() -> int:
    if _limit["pixels"] is not None:
        return _limit["pixels"]
    value = os.environ.get(ENV_MAX_PIXELS, "").strip().replace(",", "").replace("_", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_PIXELS


# A file that hangs its decoder (or takes minutes to decode) must cost one error row, not the
# run: inference gives each image this many seconds to decode (--decode-timeout,
# VISIONTOOL_DECODE_TIMEOUT), then reports it and goes on (pipeline.py enforces it).
DEFAULT_DECODE_TIMEOUT: Final = 60.0
ENV_DECODE_TIMEOUT: Final = "VISIONTOOL_DECODE_TIMEOUT"
_limit["seconds"] = None


def set_decode_timeout(seconds: float | None) -> None:
    """Seconds an image may take to decode in inference (None: VISIONTOOL_DECODE_TIMEOUT, else
    the default). Set it before decoding workers start."""
    _limit["seconds"] = None if seconds is None else float(seconds)


def decode_timeout() -> float:
    if _limit["seconds"] is not None:
        return _limit["seconds"]
    try:
        value = float(os.environ.get(ENV_DECODE_TIMEOUT, ""))
    except ValueError:
        return DEFAULT_DECODE_TIMEOUT
    return value if value > 0 else DEFAULT_DECODE_TIMEOUT


def timeout_message(seconds: float) -> str:
    return f"decoding took longer than {seconds:g} s (--decode-timeout raises the limit)"


class DecodeError(VisiontoolError):
    """A file that could not be decoded. `str(err)` is the one-line reason; `err.path` the file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(reason)
        self.path = os.fspath(path)
        self.reason = reason


def _is_image_header(head: bytes) -> bool:
    if any(head.startswith(sig, off) for off, sig in _MAGIC):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    if _NETPBM.match(head):
        return True
    # ISO media (AVIF, HEIC) announce their brand in an 'ftyp' box at offset 4.
    return head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1")


def sniff(path: str | os.PathLike) -> bool | None:
    """True/False: does the file start like an image? None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return None
    return _is_image_header(head)


def looks_like_image(path: str | os.PathLike) -> bool:
    """Whether `path` holds an image, judged by its content (magic bytes), not its name."""
    return bool(sniff(path))


def decode(
    path: str | os.PathLike,
    mode: str = "RGB",
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Read `path` into a fully loaded, upright PIL image of `mode` ("RGB" or "L").

    `draft=(w, h)`: the caller will shrink the image to about this size anyway, so a JPEG at
    least that big may be decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder itself (the
    result is never smaller than `draft` on either side, in upright orientation). Other
    formats ignore it. None decodes at full size. Either way `image.info["original_size"]` is
    the full-resolution upright (width, height).

    Transparency is composited onto white, not black and not dropped: the colour under a fully
    transparent pixel is undefined (often black, sometimes left-over garbage), and transparent
    logos, icons and product shots are made to be seen on a light page, which is how every
    viewer and browser shows them and how people labelled them.

    Raises DecodeError (one-line reason) for any file that cannot be decoded, and ValueError
    only for a `mode` or `draft` the caller got wrong.
    """
    if mode not in _OUTPUT_MODES:
        raise ValueError(f"mode must be one of {_OUTPUT_MODES}, not {mode!r}")
    if draft is not None and (len(draft) != 2 or min(draft) < 1):
        raise ValueError(f"draft must be (width, height) with positive sides, not {draft!r}")
    # Opened here, not by Pillow, so the descriptor is closed even for multi-frame files
    # (GIF, TIFF) whose decoder would keep it open for seeking.
    with _reading(path, "data"), open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise DecodeError(path, "empty file (0 bytes)")
        im = Image.open(f)
        stored_size = im.size
        _check_pixels(path, *stored_size)
        if draft is not None and im.format in ("JPEG", "MPO"):
            _jpeg_draft(im, mode, draft)
        im.load()

    orientation = _orientation(im)
    try:
        im = _to_mode(im, mode)
    except ValueError:
        raise DecodeError(path, f"unsupported colour mode {im.mode}") from None
    if orientation in _UPRIGHT:
        im = im.transpose(_UPRIGHT[orientation])
    w, h = stored_size
    # Full-resolution upright size, for mapping results (boxes) back when `draft` shrank it.
    im.info["original_size"] = (h, w) if orientation in _SWAPS_SIDES else (w, h)
    return im


def _check_pixels(path, width: int, height: int) -> None:
    limit = max_pixels()
    if width * height > limit:
        raise DecodeError(path, f"image too large: {width} x {height} = {width * height:,} pixels, above the limit of "
                                f"{limit:,} that guards against decompression bombs (raise it with --max-pixels or "
                                f"{ENV_MAX_PIXELS})")


@contextlib.contextmanager
def _reading(path, part: str):
    """Turns whatever opening or decoding a file raises into a DecodeError with a one-line reason."""
    try:
        yield
    except DecodeError:
        raise
    except FileNotFoundError:
        raise DecodeError(path, "file not found") from None
    except PermissionError:
        raise DecodeError(path, "permission denied") from None
    except IsADirectoryError:
        raise DecodeError(path, "is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise DecodeError(path, "not an image (unrecognised content)") from None
    except Image.DecompressionBombError as e:
        raise DecodeError(path, f"image too large to decode safely ({e})") from None
    except MemoryError:
        raise DecodeError(path, "not enough memory to decode the image") from None
    except Exception:  # noqa: BLE001 - Pillow's plugins signal bad data with many exception types
        raise DecodeError(path, f"truncated or corrupt image {part}") from None


def upright_size(path: str | os.PathLike) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of the picture as `decode` shows it, read from the
    file's header alone: no pixel data is decoded, so a dataset's sizes cost one small read each.

    Raises DecodeError (one-line reason) when the header cannot be read.
    """
    with _reading(path, "header"), open(path, "rb") as f:
        im = Image.open(f)
        w, h = im.size
        orientation = _orientation(im)
    return (h, w, orientation) if orientation in _SWAPS_SIDES else (w, h, orientation)


def _jpeg_draft(im: Image.Image, mode: str, size: tuple[int, int]) -> None:
    """Ask the JPEG decoder for a reduced DCT scale (and, for "L", the luma plane only)."""
    w, h = size
    if _orientation(im) in _SWAPS_SIDES:
        w, h = h, w  # the file stores the picture on its side; draft works in stored pixels
    im.draft("L" if mode == "L" else "RGB", (w, h))


def _orientation(im: Image.Image) -> int:
    # Only parse EXIF when the file carries it: parsing costs time on every image otherwise.
    if "exif" not in im.info and not hasattr(im, "tag_v2"):
        return 1
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost the pixels
        return 1
    return value if isinstance(value, int) else 1


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
    """Convert a loaded image of any Pillow mode to 8-bit `mode`, copying only when needed."""
    src = im.mode
    if src == mode:
        if "transparency" not in im.info:
            return im
    if src in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = Image.fromarray(_to_uint8(np.asarray(im)), "L")
        return gray if mode == "L" else gray.convert("RGB")
    if src in ("RGBa", "La"):  # premultiplied: undo before compositing
        im = im.convert("RGBA" if src == "RGBa" else "LA")
        src = im.mode
    elif "transparency" in im.info or src == "PA" or (src == "P" and _palette_mode(im) == "RGBA"):
        # A palette or colour key with transparency becomes a real alpha channel first.
        gray = src in ("L", "1") or (src == "P" and _palette_mode(im) == "L")
        im = im.convert("LA" if gray else "RGBA")
        src = im.mode
    if src in ("RGBA", "LA"):
        return _on_white(im, mode)
    if mode == "L" and src == "LAB":  # Pillow only knows LAB -> RGB
        im = im.convert("RGB")
    return im.convert(mode)


def _palette_mode(im: Image.Image) -> str | None:
    return im.palette.mode if im.palette is not None else None


def _on_white(im: Image.Image, mode: str) -> Image.Image:
    """Alpha-blend onto a white background; blend in the source's own channels, then convert."""
    base = "L" if im.mode == "LA" else "RGB"
    out = Image.new(base, im.size, (255,) * len(base))
    out.paste(im.convert(base), mask=im.getchannel("A"))
    return out if base == mode else out.convert(mode)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale high-bit-depth gray samples to 0..255.

    Integer samples are 16-bit (how Pillow holds 16-bit PNG, TIFF and PGM): v -> round(v / 257),
    so 65535 -> 255 and 32768 -> 128. Integers beyond 16 bits have no agreed full scale and are
    stretched from 0 to their maximum. Floats are taken as 0..1 when they fit, else as 0..255.
    """
    if a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float32, copy=False))
        scale = 255.0 if a.size and float(a.max()) <= 1.0 else 1.0
        return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    a = a.astype(np.int64, copy=False)
    top = int(a.max()) if a.size else 0
    if top > 65535:
        return np.clip((a * 255 + top // 2) // top, 0, 255).astype(np.uint8)
    return ((np.clip(a, 0, 65535) + 128) // 257).astype(np.uint8)
