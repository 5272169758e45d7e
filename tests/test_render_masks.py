"""Mask pictures: the VOC palette, coloured masks, overlays with a legend, palette PNG files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visiontool.render import (
    IGNORE_INDEX,
    classes_by_area,
    color_mask,
    mask_palette,
    overlay_mask,
    save_mask,
)


def test_palette_is_voc_and_stable():
    palette = mask_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    # The published PASCAL VOC colours of the first classes and of the ignore value.
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[15].tolist() == [192, 128, 128]  # VOC "person"
    assert palette[IGNORE_INDEX].tolist() == [224, 224, 192]
    assert np.array_equal(mask_palette(21), palette[:21])
    assert len({tuple(c) for c in palette.tolist()}) == 256
    with pytest.raises(ValueError):
        mask_palette(257)


def test_color_mask_looks_up_each_pixel():
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    out = color_mask(mask)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 1].tolist() == [128, 0, 0] and out[1, 1].tolist() == [224, 224, 192]
    with pytest.raises(ValueError):
        color_mask(mask.astype(np.int64))


def test_classes_by_area_largest_first():
    mask = np.zeros((10, 10), np.uint8)
    mask[:3] = 2  # 30 pixels
    mask[3:5] = 7  # 20 pixels
    assert classes_by_area(mask) == [(0, 50), (2, 30), (7, 20)]


def test_overlay_blends_labelled_pixels_keeps_background_and_draws_a_legend():
    image = np.full((120, 200, 3), 100, np.uint8)
    mask = np.zeros((120, 200), np.uint8)
    mask[60:, 120:] = 1
    mask[100:, :40] = IGNORE_INDEX
    out = overlay_mask(image, mask, ["background", "cat"], alpha=0.5)
    assert np.array_equal(image, np.full((120, 200, 3), 100, np.uint8))  # input untouched
    # Blended: halfway between grey 100 and the class colour (128, 0, 0).
    assert np.abs(out[110, 190].astype(int) - [114, 50, 50]).max() <= 1
    assert np.abs(out[110, 20].astype(int) - [162, 162, 146]).max() <= 1
    assert np.array_equal(out[50:60, 100:200], image[50:60, 100:200])  # background untouched
    # Legend top-left: a swatch in the class colour on a dark box, two lines (cat, ignore).
    corner = out[:40, :100].reshape(-1, 3)
    assert (corner == [128, 0, 0]).all(axis=1).any() and (corner == [224, 224, 192]).all(axis=1).any()
    assert (corner.max(axis=1) < 40).mean() > 0.3
    # alpha 0 keeps the pixels, alpha 1 paints the colour itself.
    assert np.array_equal(overlay_mask(image, mask, ["b", "c"], alpha=1.0)[110, 190], [128, 0, 0])
    assert np.array_equal(overlay_mask(image, mask, ["b", "c"], alpha=0.0)[110, 190], [100, 100, 100])


def test_overlay_of_background_only_is_the_image_and_bad_input_is_refused():
    image = np.full((30, 40, 3), 7, np.uint8)
    mask = np.zeros((30, 40), np.uint8)
    assert np.array_equal(overlay_mask(image, mask, ["background"]), image)
    with pytest.raises(ValueError, match="40x30"):
        overlay_mask(image, np.zeros((31, 40), np.uint8), ["background"])
    with pytest.raises(ValueError, match="alpha"):
        overlay_mask(image, mask, ["background"], alpha=1.5)


def test_legend_lists_classes_in_the_order_given_and_cuts_what_does_not_fit():
    image = np.zeros((40, 300, 3), np.uint8)  # room for about two lines
    mask = np.repeat(np.arange(1, 11, dtype=np.uint8), 30)[None].repeat(40, axis=0)
    out = overlay_mask(image, mask, [str(i) for i in range(11)], alpha=0.5)
    legend_colours = {tuple(c) for c in out[:40, :12].reshape(-1, 3).tolist()}
    assert tuple(mask_palette()[1].tolist()) in legend_colours  # first class shown
    assert tuple(mask_palette()[10].tolist()) not in legend_colours  # the rest folded into "+k more"


def test_save_mask_is_a_palette_png_of_the_indices(tmp_path):
    mask = (np.arange(35 * 50) % 23).astype(np.uint8).reshape(35, 50)
    mask[0, 0] = IGNORE_INDEX
    path = save_mask(tmp_path / "m.png", mask)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]
    with Image.open(path) as loaded:
        assert loaded.mode == "P" and loaded.size == (50, 35)
        assert np.array_equal(np.asarray(loaded), mask)
        rgb = np.asarray(loaded.convert("RGB"))
    assert np.array_equal(rgb, color_mask(mask))
