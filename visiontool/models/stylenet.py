"""StyleNet, the feed-forward style transfer network: one trained network paints one style.

Source: J. Johnson, A. Alahi, L. Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution", ECCV 2016, supplementary material, Table 1 ("image transformation network"):

    INPUT 3xHxW -> 9x9 conv 32 -> 3x3 conv 64, stride 2 -> 3x3 conv 128, stride 2   (encoder)
                -> 5 residual blocks of two 3x3 convs, 128                          (body)
                -> upsample x2, 3x3 conv 64 -> upsample x2, 3x3 conv 32             (decoder)
                -> 9x9 conv 3
    OUTPUT 3xHxW

Three changes the paper's authors and others made later are taken over: instance norm instead
of batch norm (D. Ulyanov, A. Vedaldi, V. Lempitsky, "Instance Normalization", 2016: it removes
each image's contrast, which style training needs), reflection padding instead of zero padding
(no dark frame), and nearest-neighbour upsampling followed by a convolution instead of the
paper's fractionally strided convolutions (A. Odena, V. Dumoulin, C. Olah, "Deconvolution and
Checkerboard Artifacts", Distill 2016: no checkerboard pattern).

Any height and width: each upsampling goes back to the size of the encoder level it mirrors
(not a fixed factor of 2), so odd sizes come out as they went in; this also lets an ONNX graph
keep batch, height and width dynamic. Input RGB in [0, 1]; the output is RGB in [0, 1]
(clamped in eval mode; in training the raw values pass, so saturated pixels still get
gradients). `width` sets the first layer's channels (32 is the paper's; the other layers
scale along), `blocks` the residual blocks (5 is the paper's).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

ARCH = "stylenet"


def conv_block(c_in: int, c_out: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Reflection pad, convolution, instance norm (affine), ReLU."""
    layers = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(c_in, c_out, kernel, stride),
              nn.InstanceNorm2d(c_out, affine=True)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm layers and the identity (K. He et al., ResNet, 2016; no ReLU after the
    sum, as in Gross and Wilber's "Training and investigating residual nets", 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_block(channels, channels, 3), conv_block(channels, channels, 3, relu=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class StyleNet(nn.Module):
    def __init__(self, num_classes: int = 3, width: int = 32, blocks: int = 5) -> None:
        """`num_classes`: output channels (3, RGB; the registry builds every network with this name)."""
        super().__init__()
        if width < 1 or blocks < 0:
            raise ValueError(f"stylenet: width {width} and blocks {blocks} must be positive")
        w1, w2, w3 = width, 2 * width, 4 * width
        self.down1 = conv_block(3, w1, 9)  # full resolution
        self.down2 = conv_block(w1, w2, 3, stride=2)  # 1/2
        self.down3 = conv_block(w2, w3, 3, stride=2)  # 1/4
        self.body = nn.Sequential(*(ResidualBlock(w3) for _ in range(blocks)))
        self.up2 = conv_block(w3, w2, 3)  # back at 1/2
        self.up1 = conv_block(w2, w1, 3)  # back at full resolution
        self.out = nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(w1, num_classes, 9))

    def forward(self, x: Tensor) -> Tensor:
        full = self.down1(x)
        half = self.down2(full)
        y = self.body(self.down3(half))
        y = self.up2(F.interpolate(y, size=half.shape[-2:], mode="nearest"))
        y = self.up1(F.interpolate(y, size=x.shape[-2:], mode="nearest"))
        y = self.out(y)
        return y if self.training else y.clamp(0.0, 1.0)
