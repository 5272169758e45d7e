"""Segmentation models behind one output convention: logits (N, C, H, W) at input resolution.

torchvision's segmentation models answer with a dict ({"out": ..., "aux": ...}); the project's
own ones (and checkpoints of `train --task segment`) with the logits tensor itself. The adapter
answers with the main head's logits for both, which the segment task, the ONNX export and the
ONNX backend all share.

A batch may also be a list of CHW images of different sizes (preprocessing that keeps the
aspect ratio): each runs alone, and the logits are padded with zeros to the largest height and
width of the batch (bottom and right), as the ONNX backend pads its per-image runs.
"""

from __future__ import annotations

import torch
from torch import nn


class SegmentationLogits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        out = out["out"] if isinstance(out, dict) else out
        # In the standard layout even when the network ran channels-last (the torch backend's
        # choice): torch reorders in parallel, several times faster than numpy would later.
        return out.contiguous()

    def forward(self, images):
        if isinstance(images, torch.Tensor):
            return self._logits(images)
        parts = [self._logits(im[None]) for im in images]
        height, width = max(p.shape[-2] for p in parts), max(p.shape[-1] for p in parts)
        out = parts[0].new_zeros((len(parts), parts[0].shape[1], height, width))
        for i, p in enumerate(parts):
            out[i, :, : p.shape[-2], : p.shape[-1]] = p[0]
        return out
