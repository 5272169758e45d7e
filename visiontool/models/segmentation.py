"""Segmentation models behind one output convention: logits (N, C, H, W) at input resolution.

torchvision's segmentation models answer with a dict ({"out": ..., "aux": ...}); the project's
own ones (and checkpoints of `train --task segment`) with the logits tensor itself. The adapter
answers with the main head's logits for both, which the segment task, the ONNX export and the
ONNX backend all share.

A model may be run at several scales of its input (the checkpoint's "scales", set by
`train --task segment --scales`): the adapter resizes the input by each factor, runs the model,
resizes its logits back and answers with the mean of the scales' log class probabilities (the
log of their geometric mean), so the argmax is the scales' joint answer and a cross-entropy still
reads it as logits. The geometric mean rather than the arithmetic one: a class must be likely at
every scale, which scored 0.002-0.005 mIoU higher on each of the shipped digit segmenter's sets
of test scenes (weights/README.md). Inside the adapter, the ONNX export holds the scales too: both
backends segment alike.

A checkpoint may also pass its class probabilities through a guided filter with the image as
the guide (its "guided_filter" radius, set by `train --task segment --guided-filter` or `weights
average --guided-filter`; models/guided_filter.py), which moves the classes' edges onto the image's.
The adapter then answers with the log of the filtered probabilities: the argmax is the filtered
answer, and a cross-entropy still reads them as logits.

Images of different sizes (preprocessing that keeps the aspect ratio) come one at a time: the
backends run such a batch image by image (backends.stack_outputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visiontool.models.guided_filter import guided_filter

PROBABILITY_FLOOR = 1e-6  # the guided filter's fits can dip just below zero; logs need a floor


class SegmentationLogits(nn.Module):
    def __init__(self, model: nn.Module, scales: tuple[float, ...] = (1.0,), guided_filter: int = 0) -> None:
        super().__init__()
        self.model = model
        self.scales = tuple(scales)
        self.guided_filter = guided_filter  # radius in pixels; 0: none

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
                # summed in float32 even where the network ran in fp16 (AMP, an fp16 export)
                log_probs = logits.float().log_softmax(1)
                total = log_probs if total is None else total + log_probs
            out = total / len(self.scales)
        if self.guided_filter:
            probs = guided_filter(x, out.float().softmax(1), self.guided_filter)
            out = probs.clamp_min(PROBABILITY_FLOOR).log()
        # In the standard layout even when the network ran channels-last (the torch backend's
        # choice): torch reorders in parallel, several times faster than numpy would later.
        return out.contiguous()
