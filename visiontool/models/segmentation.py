"""Segmentation models behind one output convention: logits (N, C, H, W) at input resolution.

torchvision's segmentation models answer with a dict ({"out": ..., "aux": ...}); the project's
own ones (and checkpoints of `train --task segment`) with the logits tensor itself. The adapter
answers with the main head's logits for both, which the segment task, the ONNX export and the
ONNX backend all share.

A model may be run at several scales of its input (the checkpoint's "scales", set by
`train --task segment --scales`): the adapter resizes the input by each factor, runs the model,
resizes its logits back and answers with the log of the mean class probabilities, so the argmax
is the vote of the scales and a cross-entropy still reads the answer as logits. Inside the
adapter, the ONNX export holds the scales too: both backends segment alike.

Images of different sizes (preprocessing that keeps the aspect ratio) come one at a time: the
backends run such a batch image by image (backends.stack_outputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PROBABILITY_FLOOR = 1e-6


class SegmentationLogits(nn.Module):
    def __init__(self, model: nn.Module, scales: tuple[float, ...] = (1.0,)) -> None:
        super().__init__()
        self.model = model
        self.scales = tuple(scales)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["out"] if isinstance(out, dict) else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scales == (1.0,):
            out = self._logits(x)
        else:
            size = x.shape[-2:]
            total = None
            for scale in self.scales:
                scaled = x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
                logits = self._logits(scaled)
                if scale != 1:
                    logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
                probs = logits.float().softmax(1)
                total = probs if total is None else total + probs
            # a floor keeps the log finite (fp16 included), far below any class that could win
            out = torch.log((total / len(self.scales)).clamp_min(PROBABILITY_FLOOR))
        # In the standard layout even when the network ran channels-last (the torch backend's
        # choice): torch reorders in parallel, several times faster than numpy would later.
        return out.contiguous()
