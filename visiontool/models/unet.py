"""UNet, the project's own small semantic segmentation model for the CPU.

The U-Net shape (O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
Biomedical Image Segmentation", MICCAI 2015): an encoder that halves the resolution step by step,
a decoder that doubles it back, and at each step the encoder's map of the same size joined to
the decoder's, so fine edges and wide context meet in one prediction:

    INPUT 3xHxW -> s1 w0 -> s2 w1 -> s4 w2 -> s8 w3 -> s16 w4          (encoder, two 3x3 convs each)
                          decoder: up to s8 + skip -> ... -> up to s1 + skip
    OUTPUT (N, C, H, W) class logits at the input's resolution

A digit's class is known only from the whole digit, so the deepest level also has dilated
residual 3x3 convs (`dilations`, at stride 16 a dilation of 4 spans 144 px): each pixel sees far
enough to tell a 3 from an 8 without more levels or wider maps.

Cut down for a CPU: narrow encoder levels (`widths`), one 3x3 conv per decoder level, and the
first level a single conv, since full-resolution maps cost the most per channel. Convolutions are
plain 3x3 conv-BN-ReLU. Each decoder step upsamples to the exact size of its skip map, so any
H and W work (odd sizes too) without padding, and the ONNX graph keeps height and width dynamic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCH = "unet"
# Inputs are RGB scaled to [0, 1] and normalized with ImageNet's statistics.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
WIDTHS = (16, 24, 48, 96, 160)  # channels at strides 1, 2, 4, 8, 16 (wide deep levels cost little)
DILATIONS = (2, 4)  # the context convs at stride 16


def scaled_widths(first: int) -> list[int]:
    """WIDTHS with `first` channels at full resolution, each deeper level in the same ratio to it."""
    return [max(1, round(w * first / WIDTHS[0])) for w in WIDTHS]


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _DilatedResidual(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, dilation, dilation, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.conv(x))


class UNet(nn.Module):
    def __init__(self, num_classes: int = 21, widths: tuple[int, ...] | list[int] = WIDTHS, in_channels: int = 3,
                 dilations: tuple[int, ...] | list[int] = DILATIONS) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        # encoder: level 0 at full resolution, each next level a stride-2 conv then a 3x3 conv
        self.down = nn.ModuleList([_cbr(in_channels, widths[0])])
        for cin, cout in zip(widths, widths[1:]):
            self.down.append(nn.Sequential(_cbr(cin, cout, stride=2), _cbr(cout, cout)))
        self.context = nn.Sequential(*(_DilatedResidual(widths[-1], int(d)) for d in dilations))
        # decoder: from the deepest level up, one conv over [upsampled deeper map, skip map]
        self.up = nn.ModuleList(
            _cbr(deeper + skip, skip) for deeper, skip in zip(widths[:0:-1], widths[-2::-1])
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        # Class scores also from the stride-4 decoder map, upsampled and added to the full-resolution
        # head's (FCN's score fusion): which class a stroke belongs to is known in the deep, wide
        # maps, and it reaches the output without squeezing through the narrow top levels.
        self.coarse_level = min(2, len(widths) - 1)
        self.coarse_head = nn.Conv2d(widths[self.coarse_level], num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.coarse_head.weight)  # starts silent: the first scores are the head's prior
        nn.init.zeros_(self.coarse_head.bias)

    @torch.no_grad()
    def set_class_prior(self, frequencies: Tensor) -> None:
        """Start the head at the classes' pixel frequencies (log priors as biases): the first
        steps then learn where objects are, not that the background is the common class."""
        self.head.bias.copy_(torch.log(frequencies.clamp(min=1e-6) / frequencies.sum()))

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for level in self.down:
            x = level(x)
            skips.append(x)
        x = self.context(skips.pop())
        coarse = None
        for conv in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = conv(torch.cat([x, skip], dim=1))
            if len(skips) == self.coarse_level:
                coarse = self.coarse_head(x)
        out = self.head(x)
        if coarse is None:  # fewer than three levels: the deepest map is the coarse one
            return out
        return out + F.interpolate(coarse, size=out.shape[-2:], mode="bilinear", align_corners=False)
