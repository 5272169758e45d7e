"""GridDet, the project's own small object detector for the CPU.

One prediction grid at stride 8, anchor-free: every cell of the grid says how far the four
sides of an object's box lie from the cell's centre and how good a box of each class it sees
there. It is the FCOS idea (Z. Tian, C. Shen, H. Chen, T. He, "FCOS: Fully Convolutional
One-Stage Object Detection", ICCV 2019) cut down to one level, with the IoU-aware class score
of Generalized Focal Loss (X. Li et al., "Generalized Focal Loss", NeurIPS 2020) in place of
FCOS's separate centerness branch:

    INPUT 3xHxW -> stem s2 16 -> s4 32 -> s8 48 (+1 residual block) -> s16 96 (+2) -> s32 160 (+2)
                -> top-down FPN to s8, 64 channels
                -> two heads of two 3x3 convs: box (4 side distances) and class (C scores)
    OUTPUT (N, 4 + C, H/8, W/8)

Channel widths are multiplied by `width` (rounded to multiples of 8). One level is enough when
objects span 2.5x to 10x the stride (digits 20-80 px tall at stride 8); it spares the
multi-level assignment and doubles no head work. Convolutions are plain 3x3 conv-BN-ReLU: on a
CPU they train faster per useful FLOP than depthwise ones, and ReLU is the cheapest activation
to differentiate.

Output layout, channel by channel at each cell (i, j) whose centre is ((j + 0.5) * 8, (i + 0.5) * 8)
in input pixels:
    0..3  left, top, right, bottom distances from the centre to the box sides, before
          activation: distance in pixels = softplus(raw) * STRIDE
    4..   class logits: sigmoid(raw) estimates the IoU of the cell's box with an object of
          that class (0 where there is none)
Decoding (numpy, no torch) lives in `griddet_decode`; the training loss is `loss` below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCH = "griddet"
STRIDE = 8  # the output grid's step in input pixels
SIZE_MULTIPLE = 32  # input H and W must be multiples of this: the backbone halves five times
# Inputs are RGB scaled to [0, 1] and normalized with these; letterbox padding is grey 114,
# which is close to the mean, so padding looks like "nothing" after normalization.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PAD_VALUE = 114

_BASE = (16, 32, 48, 96, 160, 64)  # stem, s4, s8, s16, s32, neck/head
_BLOCKS = (1, 2, 2)  # residual blocks at s8, s16, s32


def _ch(c: int, width: float) -> int:
    return max(8, int(round(c * width / 8)) * 8)


def _cbr(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_cbr(c, c), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class GridDet(nn.Module):
    def __init__(self, num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        c0, c1, c2, c3, c4, cn = (_ch(c, width) for c in _BASE)
        self.stem = nn.Sequential(_cbr(3, c0, 2), _cbr(c0, c1, 2))
        self.s8 = nn.Sequential(_cbr(c1, c2, 2), *[_Residual(c2) for _ in range(_BLOCKS[0])])
        self.s16 = nn.Sequential(_cbr(c2, c3, 2), *[_Residual(c3) for _ in range(_BLOCKS[1])])
        self.s32 = nn.Sequential(_cbr(c3, c4, 2), *[_Residual(c4) for _ in range(_BLOCKS[2])])
        self.lat32 = _cbr(c4, cn, k=1)
        self.lat16 = _cbr(c3, cn, k=1)
        self.lat8 = _cbr(c2, cn, k=1)
        self.smooth16 = _cbr(cn, cn)
        self.smooth8 = _cbr(cn, cn)
        self.box_tower = nn.Sequential(_cbr(cn, cn), _cbr(cn, cn))
        self.cls_tower = nn.Sequential(_cbr(cn, cn), _cbr(cn, cn))
        self.box_out = nn.Conv2d(cn, 4, 1)
        self.cls_out = nn.Conv2d(cn, num_classes, 1)
        self._init_head()

    def _init_head(self) -> None:
        # Start every class score near 0.01 (the focal-loss prior): with thousands of empty
        # cells and a handful of objects, a 0.5 start floods the first steps with background loss.
        nn.init.normal_(self.cls_out.weight, std=0.01)
        nn.init.constant_(self.cls_out.bias, -4.6)
        # Start boxes at about 2 strides per side, the middle of the expected object sizes.
        nn.init.normal_(self.box_out.weight, std=0.01)
        nn.init.constant_(self.box_out.bias, 1.85)

    def forward(self, x: Tensor) -> Tensor:
        c8 = self.s8(self.stem(x))
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        # Nearest upsampling by a fixed factor of 2: an ONNX Resize with constant scales.
        p16 = self.smooth16(self.lat16(c16) + F.interpolate(self.lat32(c32), scale_factor=2.0, mode="nearest"))
        p8 = self.smooth8(self.lat8(c8) + F.interpolate(p16, scale_factor=2.0, mode="nearest"))
        return torch.cat([self.box_out(self.box_tower(p8)), self.cls_out(self.cls_tower(p8))], dim=1)


# ---------------------------------------------------------------------------------------------
# Training targets and loss

CENTER_RADIUS = 1.5  # positives: cells inside the box and within this many strides of its centre
BOX_WEIGHT = 2.0  # GIoU loss weight against the class loss (GFL's balance)


def grid_centers(h: int, w: int, device=None) -> Tensor:
    """(h * w, 2) cell centres (x, y) in input pixels, row-major like the flattened output."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).add_(0.5).mul_(STRIDE)


def decode_boxes(raw_box: Tensor, centers: Tensor) -> Tensor:
    """(..., HW, 4) raw side distances + (HW, 2) centres -> (..., HW, 4) xyxy input pixels."""
    d = F.softplus(raw_box) * STRIDE
    return torch.cat([centers - d[..., :2], centers + d[..., 2:]], dim=-1)


def _pad_targets(targets: list[tuple[Tensor, Tensor]], device) -> tuple[Tensor, Tensor, Tensor]:
    m = max(1, max(len(b) for b, _ in targets))
    n = len(targets)
    boxes = torch.zeros(n, m, 4, device=device)
    labels = torch.zeros(n, m, dtype=torch.long, device=device)
    valid = torch.zeros(n, m, dtype=torch.bool, device=device)
    for i, (b, l) in enumerate(targets):
        k = len(b)
        if k:
            boxes[i, :k] = b.to(device, torch.float32)
            labels[i, :k] = l.to(device)
            valid[i, :k] = True
    return boxes, labels, valid


def assign(boxes: Tensor, valid: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """Which object each cell learns, for a padded batch.

    boxes (N, M, 4) xyxy, valid (N, M), centers (HW, 2) -> (positive (N, HW) bool,
    object index (N, HW) long). A cell is positive for an object when its centre is inside the
    box and within CENTER_RADIUS strides of the box centre; the box's own centre cell is always
    positive, so even a box thinner than a stride gets one. A cell claimed by two objects takes
    the smaller one (the larger has other cells)."""
    cx, cy = centers[:, 0], centers[:, 1]  # (HW,)
    x1, y1, x2, y2 = (boxes[..., k, None] for k in range(4))  # (N, M, 1)
    inside = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)
    gx, gy = (x1 + x2) / 2, (y1 + y2) / 2
    r = CENTER_RADIUS * STRIDE
    near = ((cx - gx).abs() < r) & ((cy - gy).abs() < r)
    own = ((gx / STRIDE).floor() == (cx / STRIDE).floor()) & ((gy / STRIDE).floor() == (cy / STRIDE).floor())
    cand = ((inside & near) | own) & valid[..., None]  # (N, M, HW)
    area = ((x2 - x1) * (y2 - y1)).expand_as(cand)
    cost = torch.where(cand, area, torch.full_like(area, float("inf")))
    best, idx = cost.min(dim=1)
    return torch.isfinite(best), idx


def box_iou_pairs(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """IoU and GIoU of matched xyxy boxes (K, 4) x (K, 4)."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(1) + 1e-7
    return iou, iou - (hull - union) / hull


def loss(raw: Tensor, targets: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, dict[str, Tensor]]:
    """Training loss of a GridDet output.

    raw: (N, 4 + C, H/8, W/8) from `GridDet.forward`; targets: per image (boxes (n, 4) xyxy in
    input pixels, labels (n,) int64). Returns (total, {"cls", "box", "pos"}):
    cls is the quality focal loss of the class scores against the IoU of each positive cell's
    predicted box (0 for other cells and classes), box is the GIoU loss of positive cells, both
    per positive cell; pos is the mean number of positive cells per image (a diagnostic)."""
    n, ch, h, w = raw.shape
    c = ch - 4
    flat = raw.flatten(2).transpose(1, 2)  # (N, HW, 4 + C)
    centers = grid_centers(h, w, raw.device)
    boxes, labels, valid = _pad_targets(targets, raw.device)
    pos, idx = assign(boxes, valid, centers)
    num_pos = pos.sum().clamp(min=1).float()

    pred = decode_boxes(flat[..., :4][pos], centers.expand(n, -1, -1)[pos])
    gt = boxes.gather(1, idx[..., None].expand(-1, -1, 4))[pos]
    iou, giou = box_iou_pairs(pred, gt)
    # Weight each positive's box loss by how confident the class head is there (GFL): cells that
    # will score high are the ones whose boxes survive NMS, so their boxes matter most.
    logits = flat[..., 4:]
    cls_target = torch.zeros_like(logits)
    gt_labels = labels.gather(1, idx)[pos]
    pos_logits = logits[pos]
    weight = pos_logits.detach().sigmoid().gather(1, gt_labels[:, None]).squeeze(1).clamp(min=0.1)
    box_loss = ((1 - giou) * weight).sum() / weight.sum().clamp(min=1e-6)

    cls_target[pos] = F.one_hot(gt_labels, c).to(logits.dtype) * iou.detach().clamp(min=0.01)[:, None]
    p = logits.sigmoid()
    qfl = F.binary_cross_entropy_with_logits(logits, cls_target, reduction="none") * (p - cls_target).abs().pow(2)
    cls_loss = qfl.sum() / num_pos
    total = cls_loss + BOX_WEIGHT * box_loss
    parts = {"cls": cls_loss.detach(), "box": box_loss.detach(), "pos": pos.sum().float() / n}
    return total, parts


def encode(targets: list[tuple[Tensor, Tensor]], num_classes: int, height: int, width: int) -> Tensor:
    """The ideal raw output for `targets` at input size (height, width): each positive cell holds
    its object's exact side distances and a class logit of +12 (score ~1); other cells -12.
    Decoding it must give the targets back; the tests use it to pin down the layout."""
    h, w = height // STRIDE, width // STRIDE
    centers = grid_centers(h, w)
    boxes, labels, valid = _pad_targets(targets, torch.device("cpu"))
    pos, idx = assign(boxes, valid, centers)
    n = len(targets)
    out = torch.full((n, h * w, 4 + num_classes), -12.0)
    gt = boxes.gather(1, idx[..., None].expand(-1, -1, 4))
    d = torch.cat([centers - gt[..., :2], gt[..., 2:] - centers], dim=-1) / STRIDE
    # inverse softplus; sides a positive cell cannot see (centre outside the box) get ~0
    d = d.clamp(min=1e-4)
    raw_box = torch.where(d > 20, d, torch.log(torch.expm1(d)))
    out[..., :4] = torch.where(pos[..., None], raw_box, out[..., :4])
    cls = torch.where(F.one_hot(labels.gather(1, idx), num_classes).bool() & pos[..., None], 12.0, -12.0)
    out[..., 4:] = cls
    return out.transpose(1, 2).reshape(n, 4 + num_classes, h, w)
