"""Decoding: every kind of file a user has ends up as upright 8-bit RGB/L, or one clear error."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from visiontool.errors import VisiontoolError
from visiontool.imageio import DecodeError, decode, looks_like_image


def _marked(size=(8, 4)) -> Image.Image:
    """Blue image with a red top-left pixel, to track where that corner ends up."""
    im = Image.new("RGB", size, (0, 0, 255))
    im.putpixel((0, 0), (255, 0, 0))
    return im


def _with_orientation(im: Image.Image, path, value: int, **kw) -> None:
    exif = Image.Exif()
    exif[0x0112] = value
    im.save(path, exif=exif, **kw)


def _px(im: Image.Image) -> list:
    """Pixels in row order: ints for "L", tuples for "RGB"."""
    a = np.asarray(im)
    return a.ravel().tolist() if a.ndim == 2 else [tuple(p) for p in a.reshape(-1, a.shape[2]).tolist()]


# Where the stored top-left pixel shows up once the picture is upright, for a W x H stored image.
_CORNER = {
    1: lambda w, h: (0, 0),
    2: lambda w, h: (w - 1, 0),
    3: lambda w, h: (w - 1, h - 1),
    4: lambda w, h: (0, h - 1),
    5: lambda w, h: (0, 0),
    6: lambda w, h: (h - 1, 0),
    7: lambda w, h: (h - 1, w - 1),
    8: lambda w, h: (0, w - 1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    path = tmp_path / "o.png"
    _with_orientation(_marked((8, 4)), path, orientation)
    im = decode(path)
    assert im.mode == "RGB"
    assert im.size == ((4, 8) if orientation >= 5 else (8, 4))
    arr = np.asarray(im)
    x, y = _CORNER[orientation](8, 4)
    assert tuple(arr[y, x]) == (255, 0, 0)
    assert (arr[..., 0] == 255).sum() == 1


def test_tiff_orientation_tag_is_applied(tmp_path):
    path = tmp_path / "scan.tif"
    _with_orientation(_marked((8, 4)), path, 8)
    im = decode(path)
    assert im.size == (4, 8) and im.getpixel((0, 7)) == (255, 0, 0)


def test_exif_rotated_jpeg_has_swapped_size_and_red_corner_top_right(tmp_path):
    im = Image.new("RGB", (64, 32), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 16, 16))
    path = tmp_path / "camera.jpg"
    _with_orientation(im, path, 6, quality=95)
    out = decode(path)
    assert out.size == (32, 64)
    r, g, b = out.getpixel((32 - 4, 4))
    assert r > 200 and g < 50 and b < 60
    r, g, b = out.getpixel((4, 4))
    assert r < 60 and b > 200


def test_grayscale_and_rgb_convert_both_ways(tmp_path):
    Image.new("L", (3, 3), 77).save(tmp_path / "g.png")
    assert decode(tmp_path / "g.png").getpixel((1, 1)) == (77, 77, 77)
    assert decode(tmp_path / "g.png", mode="L").getpixel((1, 1)) == 77
    Image.new("RGB", (3, 3), (255, 0, 0)).save(tmp_path / "c.png")
    gray = decode(tmp_path / "c.png", mode="L")
    assert gray.mode == "L" and gray.getpixel((0, 0)) == 76  # ITU-R 601 luma of pure red


def test_rgba_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (3, 1))
    im.putdata([(0, 0, 0, 0), (255, 0, 0, 255), (0, 0, 255, 128)])
    im.save(tmp_path / "a.png")
    px = _px(decode(tmp_path / "a.png"))
    assert px[0] == (255, 255, 255)
    assert px[1] == (255, 0, 0)
    assert all(abs(a - b) <= 1 for a, b in zip(px[2], (127, 127, 255)))


def test_gray_alpha_is_composited_on_white_in_gray(tmp_path):
    im = Image.new("LA", (2, 1))
    im.putdata([(0, 0), (40, 255)])
    im.save(tmp_path / "la.png")
    out = decode(tmp_path / "la.png", mode="L")
    assert out.mode == "L" and _px(out) == [255, 40]


def test_palette_with_transparent_index(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putdata([0, 1])
    im.save(tmp_path / "p.gif", transparency=0)
    im.save(tmp_path / "p.png", transparency=0)
    for name in ("p.gif", "p.png"):
        assert _px(decode(tmp_path / name)) == [(255, 255, 255), (0, 255, 0)], name


def test_palette_with_per_entry_alpha(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putdata([0, 1])
    im.save(tmp_path / "p.png", transparency=bytes([128, 255]))
    half_red, blue = _px(decode(tmp_path / "p.png"))
    assert half_red[0] == 255 and abs(half_red[1] - 127) <= 1 and abs(half_red[2] - 127) <= 1
    assert blue == (0, 0, 255)


def test_palette_without_transparency(tmp_path):
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    im.save(tmp_path / "p.bmp")
    assert decode(tmp_path / "p.bmp").getpixel((2, 2)) == (10, 200, 30)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16_bit_gray_scales_to_8_bit(tmp_path, ext):
    a = np.array([[65535, 32768], [0, 257]], dtype=np.uint16)
    path = tmp_path / f"deep.{ext}"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode.startswith("I")  # the file really is 16-bit
    gray = np.asarray(decode(path, mode="L"))
    assert gray.tolist() == [[255, 128], [0, 1]]
    rgb = np.asarray(decode(path))
    assert rgb.shape == (2, 2, 3) and rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [128] * 3


def test_32_bit_int_and_float_tiff(tmp_path):
    Image.fromarray(np.array([[0, 1 << 20]], dtype=np.int32)).save(tmp_path / "i.tif")
    assert _px(decode(tmp_path / "i.tif", mode="L")) == [0, 255]
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    assert _px(decode(tmp_path / "f.tif", mode="L")) == [0, 128, 255]


def test_cmyk_jpeg_pure_red(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)
    assert Image.open(path).info.get("adobe") is not None  # Adobe-style (inverted) CMYK
    r, g, b = decode(path).getpixel((8, 8))
    assert r > 245 and g < 10 and b < 10


def test_one_bit_image(tmp_path):
    im = Image.new("1", (2, 1))
    im.putdata([0, 255])
    im.save(tmp_path / "bw.png")
    assert _px(decode(tmp_path / "bw.png")) == [(0, 0, 0), (255, 255, 255)]
    assert _px(decode(tmp_path / "bw.png", mode="L")) == [0, 255]


def test_truncated_jpeg_raises_decode_error_with_one_line(tmp_path):
    path = tmp_path / "cut.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError) as err:
        decode(path)
    assert str(err.value) == "truncated or corrupt image data"
    assert err.value.path == str(path)
    assert isinstance(err.value, VisiontoolError) and err.value.exit_code == 1


def test_text_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list\n")
    assert not looks_like_image(path)
    with pytest.raises(DecodeError, match=r"^not an image \(unrecognised content\)$"):
        decode(path)


def test_missing_folder_and_empty_files(tmp_path):
    with pytest.raises(DecodeError, match="^file not found$"):
        decode(tmp_path / "nope.png")
    with pytest.raises(DecodeError, match="folder"):
        decode(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DecodeError, match=r"^empty file \(0 bytes\)$"):
        decode(tmp_path / "empty.png")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_permission_denied(tmp_path):
    path = tmp_path / "locked.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(DecodeError, match="^permission denied$"):
            decode(path)
    finally:
        path.chmod(0o644)


def test_unreadable_file_reports_permission_denied(tmp_path, monkeypatch):
    # Root can read anything, so the OS refusal is simulated where the file is opened.
    import visiontool.imageio as imageio

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imageio, "open", refuse, raising=False)
    with pytest.raises(DecodeError, match="^permission denied$"):
        decode(tmp_path / "locked.png")


def test_draft_decodes_big_jpeg_at_reduced_scale(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (640, 480), (200, 30, 30)).save(path)
    small = decode(path, draft=(100, 100))
    assert small.size == (160, 120)  # 1/4 scale: the largest that stays >= 100 on both sides
    assert small.info["original_size"] == (640, 480)
    r, g, b = small.getpixel((80, 60))
    assert abs(r - 200) < 6 and abs(g - 30) < 6 and abs(b - 30) < 6
    assert decode(path).size == (640, 480)
    assert decode(path, draft=(1000, 1000)).size == (640, 480)  # never upscaled or cut
    gray = decode(path, mode="L", draft=(300, 200))
    assert gray.mode == "L" and gray.size == (320, 240)


def test_draft_counts_in_upright_orientation(tmp_path):
    path = tmp_path / "side.jpg"
    _with_orientation(Image.new("RGB", (640, 200), (0, 128, 0)), path, 6)
    out = decode(path, draft=(100, 300))  # upright 200x640: halving keeps >= 100x300
    assert out.size == (100, 320)
    assert out.info["original_size"] == (200, 640)


def test_draft_is_ignored_for_other_formats(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "p.png")
    assert decode(tmp_path / "p.png", draft=(8, 8)).size == (64, 64)


def test_decode_rejects_programming_errors():
    with pytest.raises(ValueError):
        decode("x.png", mode="RGBA")
    with pytest.raises(ValueError):
        decode("x.png", draft=(0, 10))


def test_looks_like_image_by_content(tmp_path):
    base = Image.new("RGB", (4, 4), (1, 2, 3))
    for fmt, ext in [("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("BMP", "bmp"),
                     ("TIFF", "tif"), ("WEBP", "webp"), ("PPM", "ppm")]:
        path = tmp_path / f"img_{ext}.dat"  # the name gives nothing away
        base.save(path, format=fmt)
        assert looks_like_image(path), fmt
    Image.new("L", (4, 4)).save(tmp_path / "g.dat", format="PPM")  # PGM
    assert looks_like_image(tmp_path / "g.dat")
    (tmp_path / "t.png").write_text("P3 is not enough\n")
    (tmp_path / "e.png").write_bytes(b"")
    assert not looks_like_image(tmp_path / "t.png")
    assert not looks_like_image(tmp_path / "e.png")
    assert not looks_like_image(tmp_path / "missing.png")


def test_decoding_and_source_expansion_import_no_torch_or_cv2():
    code = ("import sys, visiontool.imageio, visiontool.sources; "
            "print(sorted(m for m in ('torch', 'torchvision', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
