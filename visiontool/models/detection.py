"""torchvision's detectors behind one output convention.

In eval mode they take a list of CHW images of any size (resizing and normalizing inside) and
answer with a list of dicts. The adapter answers for the whole batch with three tensors,
padded to the most detections of any image in it:

    boxes  (B, M, 4) float   x1, y1, x2, y2 in the input image's pixels
    scores (B, M)    float   best first; 0 in padding
    labels (B, M)    int64   index into the weights' categories; -1 in padding
    masks  (B, M, H, W) float  Mask R-CNN only: each detection's mask probability per pixel

which the detect task, the ONNX export (at batch 1) and the ONNX backend all share.
"""

from __future__ import annotations

import torch
from torch import nn


class TorchvisionDetector(nn.Module):
    takes_image_lists = True  # torchvision's detectors take a list of differently sized images

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images):
        if isinstance(images, torch.Tensor):
            images = list(images.unbind(0))
        found = self.model(images)
        masks = "masks" in found[0]
        if len(found) == 1:  # no padding: also what an exported (traced, batch 1) graph computes
            d = found[0]
            return (d["boxes"][None], d["scores"][None], d["labels"][None]) + ((d["masks"][:, 0][None],) if masks else ())
        most = max(len(d["scores"]) for d in found)
        boxes = images[0].new_zeros((len(found), most, 4))
        scores = images[0].new_zeros((len(found), most))
        labels = torch.full((len(found), most), -1, dtype=torch.int64, device=images[0].device)
        for i, d in enumerate(found):
            n = len(d["scores"])
            boxes[i, :n], scores[i, :n], labels[i, :n] = d["boxes"], d["scores"], d["labels"]
        if not masks:
            return boxes, scores, labels
        # Images of a batch differ in size: masks are padded to the largest (bottom and right).
        height, width = max(im.shape[-2] for im in images), max(im.shape[-1] for im in images)
        out = images[0].new_zeros((len(found), most, height, width))
        for i, d in enumerate(found):
            m = d["masks"][:, 0]
            out[i, : len(m), : m.shape[-2], : m.shape[-1]] = m
        return boxes, scores, labels, out

    def set_input_size(self, size: int) -> None:
        """Resize images inside to `size` on the shorter side (the longer at most 1333/800 of it,
        torchvision's ratio) instead of the size the weights were trained at."""
        transform = self.model.transform
        if hasattr(transform, "min_size"):
            transform.min_size, transform.max_size = (size,), round(size * 1333 / 800)
