"""Result pictures: boxes where they belong, readable labels, safe files and distinct names."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from visiontool.render import (
    NameKeeper,
    class_colors,
    crop_detections,
    draw_detections,
    output_name,
    save_image,
    truth_vs_prediction,
)


def _det(box, index=0, score=0.9, label="cat"):
    return {"box": box, "label": label, "index": index, "score": score}


def _contrast(a, b) -> float:
    """WCAG contrast ratio of two RGB colours, written out here independently of the module."""

    def lum(rgb):
        c = np.asarray(rgb, float) / 255
        c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(c @ [0.2126, 0.7152, 0.0722])

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _changed(before, after):
    return np.any(before != after, axis=2)


def _bbox(mask):
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_class_colors_are_stable_distinct_and_saturated():
    few, many = class_colors(5), class_colors(80)
    assert few.shape == (5, 3) and few.dtype == np.uint8
    assert np.array_equal(few, many[:5])
    assert len({tuple(c) for c in many.tolist()}) == 80
    # Saturated: the strongest channel is well above the weakest for every class.
    assert (many.max(axis=1).astype(int) - many.min(axis=1) >= 70).all()
    assert class_colors(0).shape == (0, 3)


def test_box_edges_take_the_class_colour_and_the_rest_is_unchanged():
    image = np.full((200, 300, 3), 90, np.uint8)
    keep = image.copy()
    out = draw_detections(image, [_det([100, 80, 220, 170], index=3)])
    color = class_colors(4)[3]
    assert np.array_equal(image, keep) and out is not image  # input untouched
    for y in (80, 120, 169):
        assert np.array_equal(out[y, 100], color) and np.array_equal(out[y, 219], color)
    for x in (100, 160, 219):
        assert np.array_equal(out[80, x], color) and np.array_equal(out[169, x], color)
    # Well inside and well outside the box (the label sits above its top-left corner).
    assert np.array_equal(out[110:160, 110:210], keep[110:160, 110:210])
    assert np.array_equal(out[175:, :], keep[175:, :])
    assert np.array_equal(out[:, :95], keep[:, :95])
    assert np.array_equal(out[:, 225:], keep[:, 225:])


@pytest.mark.parametrize("background", [0, 255])
@pytest.mark.parametrize("index", [0, 1, 2, 4, 6, 14])
def test_label_has_class_colour_background_and_contrasting_text(background, index):
    image = np.full((240, 320, 3), background, np.uint8)
    out = draw_detections(image, [_det([60, 120, 260, 220], index=index, label="dog", score=0.93)])
    fill = class_colors(index + 1)[index].astype(int)
    top, bottom, left, right = _bbox(_changed(image, out)[:120])
    assert bottom == 120 and left == 60  # flush on the box's top-left corner, above it
    label = out[top:bottom, left:right].reshape(-1, 3).astype(int)
    is_fill = np.all(label == fill, axis=1)
    assert is_fill.mean() > 0.5  # a solid tag of the class colour ...
    text = label[~is_fill]
    assert len(text) > 20  # ... with text on it
    best = max((0, 0, 0), (255, 255, 255), key=lambda c: _contrast(c, fill))
    assert np.all(text == best, axis=1).sum() > 10
    # Every other pixel of the tag is a blend of fill and text (anti-aliased edges), nothing else.
    t = (text - fill) @ (np.array(best) - fill) / float((np.array(best) - fill) @ (np.array(best) - fill))
    blend = fill + np.clip(t, 0, 1)[:, None] * (np.array(best) - fill)
    assert np.abs(text - blend).max() <= 2


def test_label_looks_the_same_on_dark_and_light_images():
    det = [_det([60, 120, 260, 220], index=5)]
    dark = draw_detections(np.zeros((240, 320, 3), np.uint8), det)
    light = draw_detections(np.full((240, 320, 3), 255, np.uint8), det)
    top, bottom, left, right = _bbox(_changed(np.zeros_like(dark), dark)[:120])
    assert np.array_equal(dark[top:bottom, left:right], light[top:bottom, left:right])


def test_box_at_the_top_edge_gets_its_label_inside():
    image = np.zeros((200, 200, 3), np.uint8)
    color = class_colors(1)[0]
    at_top = draw_detections(image, [_det([40, 0, 160, 150])])
    lower = draw_detections(image, [_det([40, 60, 160, 210])])
    # Just inside the top-left corner: the tag's fill at the top edge, the image further down.
    assert np.array_equal(at_top[4, 44], color)
    assert np.array_equal(lower[64, 44], image[64, 44])
    assert _changed(image, lower)[:60].any()  # the lower box's label is above it


def test_boxes_partly_or_wholly_outside_are_clipped():
    image = np.full((64, 64, 3), 128, np.uint8)
    dets = [
        _det([-50, -50, 30, 30], index=1),
        _det([40, 20, 500, 80], index=2, score=0.5),
        _det([100, 100, 200, 200], index=3),  # wholly outside: nothing drawn
        _det([10.4, 10.6, 10.5, 10.7], index=4),  # degenerate: one pixel
    ]
    out = draw_detections(image, dets)
    assert out.shape == image.shape
    assert np.array_equal(out[27, 29], class_colors(2)[1])  # right edge of the first box, below its tag
    assert np.array_equal(out[50, 63], class_colors(3)[2])  # cut at the image's right border
    assert not np.any(np.all(out == class_colors(4)[3], axis=2))


def test_low_scores_are_drawn_first():
    image = np.zeros((100, 100, 3), np.uint8)
    box = [10, 30, 90, 90]
    out = draw_detections(image, [_det(box, index=1, score=0.95), _det(box, index=2, score=0.2)])
    assert np.array_equal(out[60, 10], class_colors(2)[1])


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        draw_detections(np.zeros((10, 10, 3), np.float32), [])
    with pytest.raises(ValueError):
        draw_detections(np.zeros((10, 10, 3), np.uint8), [_det([0, 0, float("nan"), 5])])


def test_crops_have_the_box_size_and_are_copies():
    image = np.arange(60 * 80 * 3, dtype=np.uint32).reshape(60, 80, 3).astype(np.uint8)
    crops = crop_detections(image, [
        _det([10, 5, 30, 45], index=2, label="a"),
        _det([70.2, 50.4, 120, 90], index=0, label="b"),  # clipped to the image
        _det([20, 20, 20, 20], index=1, label="c"),  # empty: still 1x1
    ])
    assert [(lab, i) for lab, i, _ in crops] == [("a", 2), ("b", 0), ("c", 1)]
    assert crops[0][2].shape == (40, 20, 3) and np.array_equal(crops[0][2], image[5:45, 10:30])
    assert crops[1][2].shape == (10, 10, 3)
    assert crops[2][2].shape == (1, 1, 3)
    crops[0][2][:] = 0
    assert image[5:45, 10:30].any()


@pytest.mark.parametrize(("name", "like", "magic"), [
    ("out.jpg", None, b"\xff\xd8\xff"),
    ("out.JPEG", None, b"\xff\xd8\xff"),
    ("out.png", None, b"\x89PNG"),
    ("out.webp", None, b"\x89PNG"),
    ("out.png", ".jpg", b"\xff\xd8\xff"),
    ("out.jpg", "png", b"\x89PNG"),
])
def test_save_image_picks_the_format_and_leaves_no_temp_file(tmp_path, name, like, magic):
    image = np.zeros((16, 24, 3), np.uint8)
    image[..., 0] = 200  # red, to catch a swapped channel order
    path = save_image(tmp_path / name, image, like=like)
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert back.shape == image.shape and np.abs(back.astype(int) - image).max() <= 3


def test_save_image_failure_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        save_image(tmp_path / "x.png", np.zeros((4, 4, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_output_name_follows_the_input_kind(tmp_path):
    assert output_name("a/photo.JPG", tmp_path) == tmp_path / "photo.jpg"
    assert output_name("a/photo.jpeg", tmp_path) == tmp_path / "photo.jpg"
    assert output_name("scan.tiff", tmp_path) == tmp_path / "scan.png"
    assert output_name("blob.dat", "out").name == "blob.png"


def test_name_keeper_gives_distinct_names(tmp_path):
    keeper = NameKeeper(tmp_path)
    names = [keeper.name(p) for p in ("a/x.jpg", "b/x.jpg", "c/x.png", "d/x_2.jpg", "e/X.jpg", "f/y.png")]
    assert [n.name for n in names] == ["x.jpg", "x_2.jpg", "x_3.png", "x_2_2.jpg", "X_4.jpg", "y.png"]
    assert len({n.name.lower() for n in names}) == len(names)
    assert all(n.parent == tmp_path for n in names)


def test_truth_vs_prediction_writes_a_grid(tmp_path):
    images = [np.full((60, 90, 3), 30 * i, np.uint8) for i in range(5)]
    truths = [[{"box": [10, 10, 50, 40], "index": i % 2}] for i in range(5)]
    preds = [[{"box": [12, 8, 52, 42], "index": i % 2, "score": 0.8}] for i in range(5)]
    path = truth_vs_prediction(images, truths, preds, ["cat", "dog"], tmp_path / "val_pred.png", cols=3, cell=64)
    assert [p.name for p in tmp_path.iterdir()] == ["val_pred.png"]
    sheet = cv2.imread(str(path))
    assert sheet.shape[1] >= 3 * 64 and sheet.shape[0] > 2 * 64  # 3 columns, 2 rows and a legend
    with pytest.raises(ValueError):
        truth_vs_prediction(images, truths[:2], preds, ["cat", "dog"], tmp_path / "bad.png")


def test_render_never_imports_torch():
    code = "import sys, visiontool.render; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
