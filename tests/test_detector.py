"""GridDet: output layout, target encoding <-> numpy decoding, the loss, NMS against torchvision,
box-aware augmentation and the letterbox geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from visiontool.boxes import batched_nms, box_iou, nms
from visiontool.models import griddet
from visiontool.models.griddet_decode import decode
from visiontool.train.box_augment import BoxAugment


def _targets():
    return [
        (torch.tensor([[10.0, 12.0, 40.0, 52.0], [60.0, 8.0, 90.0, 30.0]]), torch.tensor([3, 7])),
        (torch.tensor([[5.0, 30.0, 33.0, 90.0]]), torch.tensor([0])),
    ]


def test_output_shape_non_square(one_thread):
    model = griddet.GridDet(10, width=0.5).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 96, 160))
    assert out.shape == (2, 4 + 10, 96 // griddet.STRIDE, 160 // griddet.STRIDE)


def test_encoded_targets_decode_to_the_same_boxes():
    targets = _targets()
    raw = griddet.encode(targets, 10, height=96, width=128)
    assert raw.shape == (2, 14, 12, 16)
    dets = decode(raw.numpy(), conf=0.5, iou=0.6, max_det=100)
    for (boxes, labels), (pb, ps, pl) in zip(targets, dets):
        assert len(pb) == len(boxes)
        order = np.argsort(pb[:, 0])
        truth = np.argsort(boxes[:, 0].numpy())
        np.testing.assert_allclose(pb[order], boxes.numpy()[truth], atol=1.0)
        np.testing.assert_array_equal(pl[order], labels.numpy()[truth])
        assert np.all(ps > 0.99) and np.all(np.diff(ps) <= 0)


def test_decode_matches_torch_box_decoding():
    torch.manual_seed(0)
    raw = torch.randn(1, 14, 8, 8) * 2
    boxes, scores, labels = decode(raw.numpy(), conf=0.0, iou=1.0, max_det=10_000)[0]
    flat = raw.flatten(2).transpose(1, 2)[0]
    ref = griddet.decode_boxes(flat[:, :4], griddet.grid_centers(8, 8))
    ref_scores = flat[:, 4:].sigmoid()
    cells = [int(np.nonzero(np.all(np.isclose(ref.numpy(), b, atol=1e-4), axis=1))[0][0]) for b in boxes[:20]]
    np.testing.assert_allclose(scores[:20], ref_scores[cells, labels[:20]].numpy(), rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_torchvision(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (300, 2)).astype(np.float32)
    wh = rng.uniform(5, 60, (300, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.permutation(300).astype(np.float32) / 300  # distinct: the order is defined
    labels = rng.integers(0, 4, 300)
    for thr in (0.3, 0.5, 0.7):
        np.testing.assert_array_equal(
            nms(boxes, scores, thr), torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy())
        np.testing.assert_array_equal(
            batched_nms(boxes, scores, labels, thr),
            torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), thr).numpy())
    np.testing.assert_allclose(box_iou(boxes[:20], boxes[20:40]),
                               torchvision.ops.box_iou(torch.from_numpy(boxes[:20]), torch.from_numpy(boxes[20:40])).numpy(),
                               rtol=1e-5, atol=1e-7)


def test_loss_decreases_on_a_fixed_batch(one_thread):
    torch.manual_seed(0)
    model = griddet.GridDet(10, width=0.5)
    x = torch.randn(2, 3, 96, 128)
    targets = _targets()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        total, parts = griddet.loss(model(x), targets)
        assert set(parts) == {"cls", "box", "pos"} and torch.isfinite(total)
        first = float(total.detach()) if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert float(total.detach()) < 0.5 * first


def test_loss_without_objects_is_finite():
    raw = torch.randn(2, 14, 4, 4, requires_grad=True)
    empty = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    total, parts = griddet.loss(raw, [empty, empty])
    total.backward()
    assert torch.isfinite(total) and float(parts["pos"]) == 0


@pytest.mark.parametrize("flip", [False, True])
def test_augmentation_moves_boxes_with_pixels(flip):
    rng = np.random.default_rng(0)
    images, targets = [], []
    for k in range(6):
        h, w = (120, 200) if k % 2 else (180, 140)
        image = np.zeros((h, w, 3), np.uint8)
        x0, y0 = 20 + 5 * k, 30
        image[y0:y0 + 50, x0:x0 + 40] = 255  # a white block on black, 40x50 px
        images.append(image)
        targets.append((np.array([[x0, y0, x0 + 40, y0 + 50]], np.float32), np.array([k])))
    aug = BoxAugment(128, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), scale=(0.8, 1.5), flip=flip,
                     brightness=0.0, contrast=0.0, saturation=0.0)
    seen = 0
    for _ in range(5):
        x, out = aug(images, targets, np.arange(6), rng)
        assert x.shape == (6, 3, 128, 128) and x.dtype == torch.float32
        for img, (boxes, labels), k in zip(x, out, range(6)):
            white = img[0].numpy() > 0.5
            if not len(boxes):
                continue
            seen += 1
            assert labels.tolist() == [k]
            x0, y0, x1, y1 = boxes[0].tolist()
            ys, xs = np.nonzero(white)
            # the block's pixels are exactly the (clipped) box, within a pixel of interpolation
            assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1
            assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1
    assert seen > 20


def test_augmentation_is_reproducible_and_mosaic_keeps_targets():
    images = [np.random.default_rng(i).integers(0, 255, (100, 150, 3), dtype=np.uint8) for i in range(4)]
    targets = [(np.array([[10, 10, 60, 70]], np.float32), np.array([i])) for i in range(4)]
    aug = BoxAugment(96, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), mosaic=1.0)
    a = aug(images, targets, [0, 1], np.random.default_rng(5))
    b = aug(images, targets, [0, 1], np.random.default_rng(5))
    assert torch.equal(a[0], b[0])
    for (ba, la), (bb, lb) in zip(a[1], b[1]):
        assert torch.equal(ba, bb) and torch.equal(la, lb)
        assert ((ba >= 0) & (ba <= 96)).all()


@pytest.mark.parametrize("shape", [(120, 200), (300, 100), (64, 64)])
def test_letterbox_round_trip(shape):
    from PIL import Image

    from visiontool.preprocess import Preprocess

    h, w = shape
    prep = Preprocess(crop=128, resize=128, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fit="letterbox")
    canvas, g = prep.apply(Image.new("RGB", (w, h), (200, 200, 200)))
    assert canvas.shape == (3, 128, 128)
    boxes = np.array([[0, 0, w, h], [w * 0.2, h * 0.3, w * 0.5, h * 0.9]], np.float32)
    inside = boxes * [g.scale_x, g.scale_y, g.scale_x, g.scale_y] + [g.left, g.top, g.left, g.top]
    # the whole image maps onto the part of the canvas that is not padding
    ys, xs = np.nonzero(np.abs(canvas[0] - 200 / 255) < 1e-3)
    assert abs(inside[0, 0] - xs.min()) <= 1 and abs(inside[0, 2] - xs.max() - 1) <= 1
    assert abs(inside[0, 1] - ys.min()) <= 1 and abs(inside[0, 3] - ys.max() - 1) <= 1
    np.testing.assert_allclose(g.to_original(inside), boxes, atol=1e-3)


def test_module_constants():
    assert griddet.ARCH == "griddet" and len(griddet.MEAN) == len(griddet.STD) == 3
    assert griddet.SIZE_MULTIPLE % griddet.STRIDE == 0


def test_onnx_export_runs_at_other_sizes(tmp_path, one_thread):
    ort = pytest.importorskip("onnxruntime")
    model = griddet.GridDet(3, width=0.5).eval()
    path = tmp_path / "griddet.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 64, 96),), str(path), opset_version=17, dynamo=False,
                      input_names=["x"], output_names=["raw"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "raw": {0: "n", 2: "gh", 3: "gw"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 96, 160)
    got = session.run(None, {"x": x.numpy()})[0]
    with torch.inference_mode():
        want = model(x).numpy()
    assert got.shape == want.shape == (2, 7, 12, 20)
    np.testing.assert_allclose(got, want, atol=1e-4)
