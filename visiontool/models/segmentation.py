"""Segmentation models behind one output convention: logits (N, C, H, W) at input resolution.

torchvision's segmentation models answer with a dict ({"out": ..., "aux": ...}); the project's
own ones (and checkpoints of `train --task segment`) with the logits tensor itself. The adapter
answers with the main head's logits for both, which the segment task, the ONNX export and the
ONNX backend all share.

Images of different sizes (preprocessing that keeps the aspect ratio) come one at a time: the
backends run such a batch image by image (backends.stack_outputs).
"""

from __future__ import annotations

import torch
from torch import nn


class SegmentationLogits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        out = out["out"] if isinstance(out, dict) else out
        # In the standard layout even when the network ran channels-last (the torch backend's
        # choice): torch reorders in parallel, several times faster than numpy would later.
        return out.contiguous()
