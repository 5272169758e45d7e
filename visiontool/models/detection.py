"""torchvision's detectors behind one output convention.

In eval mode they take a list of CHW images of any size (resizing and normalizing inside) and
answer with a list of dicts. The adapter answers for the whole batch with three tensors,
padded to the most detections of any image in it:

    boxes  (B, M, 4) float   x1, y1, x2, y2 in the input image's pixels
    scores (B, M)    float   best first; 0 in padding
    labels (B, M)    int64   index into the weights' categories; -1 in padding

which the detect task, the ONNX export (at batch 1) and the ONNX backend all share.
"""

from __future__ import annotations

import torch
from torch import nn


class TorchvisionDetector(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images):
        if isinstance(images, torch.Tensor):
            images = list(images.unbind(0))
        found = self.model(images)
        if len(found) == 1:  # no padding: also what an exported (traced, batch 1) graph computes
            d = found[0]
            return d["boxes"][None], d["scores"][None], d["labels"][None]
        most = max(len(d["scores"]) for d in found)
        boxes = images[0].new_zeros((len(found), most, 4))
        scores = images[0].new_zeros((len(found), most))
        labels = torch.full((len(found), most), -1, dtype=torch.int64, device=images[0].device)
        for i, d in enumerate(found):
            n = len(d["scores"])
            boxes[i, :n], scores[i, :n], labels[i, :n] = d["boxes"], d["scores"], d["labels"]
        return boxes, scores, labels
