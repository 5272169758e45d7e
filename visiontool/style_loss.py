"""The loss network of style transfer: features, Gram matrices and the losses built on them.

Content is what a CNN's feature maps say about where things are; style is what their Gram
matrices (channel-by-channel correlations, averaged over positions) say about textures and
colours, wherever they are (L. Gatys, A. Ecker, M. Bethge, "Image Style Transfer Using
Convolutional Neural Networks", CVPR 2016). Both `stylize --method optimize` and
`train --task stylize` (Johnson et al. 2016's perceptual losses) use these functions.

Loss networks (`loss_network(name)`):
- "vgg16", "vgg19": torchvision's VGG with ImageNet weights, fetched under weights.py's rules
  (announced, sha256-checked, --offline honoured). VGG-16 uses Johnson et al.'s layers
  (content relu2_2; style relu1_2, relu2_2, relu3_3, relu4_3), VGG-19 Gatys et al.'s
  (content relu4_2; style relu1_1 ... relu5_1).
- "random": a network that needs no download: random filters, fixed by a seed, on an image
  pyramid. Random CNNs carry texture statistics (K. He, Y. Wang, J. Hopcroft, "A Powerful
  Generative Model Using Random Weights for the Deep Image Representation", NeurIPS 2016;
  I. Ustyuzhaninov, W. Brendel, L. Gatys, M. Bethge, "What does it take to generate natural
  textures?", ICLR 2017, where one layer of random filters at several scales synthesised
  textures about as well as VGG). See `RandomPyramid`.
- "auto": VGG-16 when its weights are on disk or may be fetched; "random" when offline.

Input images are RGB in [0, 1], (N, 3, H, W). The losses are relative (divided by the size of
the target), so one set of weights suits every loss network and every image size:
    content = sum over content layers of |F(x) - F(c)|^2 / |F(c)|^2
    style   = sum over style layers of |G(x) - G(s)|^2 / |G(s)|^2       (Frobenius norms)
    tv      = mean |x[i+1, j] - x[i, j]| + mean |x[i, j+1] - x[i, j]|
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visiontool.errors import UsageError

LOSS_NETS = ("auto", "vgg16", "vgg19", "random")
_VGG_LAYERS = {  # (content layers, style layers)
    "vgg16": (("relu2_2",), ("relu1_2", "relu2_2", "relu3_3", "relu4_3")),
    "vgg19": (("relu4_2",), ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")),
}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class LossNetwork(nn.Module):
    """A frozen feature extractor: `forward(x)` -> {layer name: feature map} for every layer in
    `content_layers` and `style_layers`."""

    name = ""
    content_layers: tuple[str, ...] = ()
    style_layers: tuple[str, ...] = ()

    def freeze(self) -> "LossNetwork":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()


class VGGFeatures(LossNetwork):
    """torchvision's VGG feature stack, cut after the deepest layer the losses read; layers are
    named as in the papers: relu{block}_{conv}, counting blocks by their max-pooling."""

    def __init__(self, arch: str, state_dict: dict | None = None) -> None:
        super().__init__()
        import torchvision

        self.name = arch
        self.content_layers, self.style_layers = _VGG_LAYERS[arch]
        with torch.device("meta"):  # the classifier's 120 M parameters are never made
            features = torchvision.models.get_model(arch, weights=None).features
        wanted = set(self.content_layers) | set(self.style_layers)
        names, block, conv = [], 1, 0
        for layer in features:
            if isinstance(layer, nn.Conv2d):
                conv += 1
                names.append(f"conv{block}_{conv}")
            elif isinstance(layer, nn.ReLU):
                names.append(f"relu{block}_{conv}")
            else:
                names.append(f"pool{block}")
                block, conv = block + 1, 0
        last = max(i for i, n in enumerate(names) if n in wanted)
        self.layers = features[: last + 1].to_empty(device="cpu")
        for layer in self.layers:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # the features it returns are read after the next layer ran
            elif isinstance(layer, nn.Conv2d):
                layer.reset_parameters()  # random weights, unless a state_dict follows
        if state_dict is not None:
            prefix = "features."
            self.layers.load_state_dict({k[len(prefix):]: v for k, v in state_dict.items()
                                         if k.startswith(prefix) and int(k.split(".")[1]) <= last})
        self.names = names[: last + 1]
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.freeze()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        wanted = set(self.content_layers) | set(self.style_layers)
        out = {}
        x = (x - self.mean) / self.std
        for name, layer in zip(self.names, self.layers):
            x = layer(x)
            if name in wanted:
                out[name] = x
        return out


class RandomPyramid(LossNetwork):
    """Random filters on an image pyramid, no training and no download.

    The image, centred, is average-pooled to 1, 1/2, 1/4 and 1/8 of its size; at each level two
    random 3x3 convolutions, each followed by ReLU, respond to it. Each level's layer is its
    pixels and the second convolution's responses side by side; their Gram matrices at the four
    levels are the style layers: colours, and patterns whose fields span 5x5 to about 40x40
    input pixels, the range of textures that Ustyuzhaninov et al.'s multi-scale single layer
    covered with kernels up to 55 px, at a fraction of the cost of large kernels. Levels 1 and
    2 (1/2 and 1/4 scale) are the content layers: full-scale detail is left free to take the
    style's texture. Filters are drawn from a fixed seed with zero mean each (they respond to
    patterns; the pixels carry the colours) and scaled to He et al.'s variance, which keeps the
    responses' size from layer to layer (random networks need that scaling).
    """

    name = "random"
    SEED = 20170424  # the filters are part of the definition: same seed, same network everywhere
    LEVELS = 4
    CHANNELS = (32, 64)
    KERNELS = (3, 3)
    CONTENT_LEVELS = slice(1, 3)

    def __init__(self, channels: tuple[int, ...] = CHANNELS, kernels: tuple[int, ...] = KERNELS,
                 levels: int = LEVELS) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(self.SEED)
        self.convs = nn.ModuleList()
        for _ in range(levels):
            layers, c_in = [], 3
            for c_out, k in zip(channels, kernels):
                layers += [_random_conv(c_in, c_out, k, g), nn.ReLU()]
                c_in = c_out
            self.convs.append(nn.Sequential(*layers))
        self.style_layers = tuple(f"level{i}" for i in range(levels))
        self.content_layers = self.style_layers[self.CONTENT_LEVELS]
        self.freeze()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = {}
        x = (x - 0.5) / 0.25
        for i, conv in enumerate(self.convs):
            if i:
                x = F.avg_pool2d(x, 2, ceil_mode=True)
            # The level's pixels join its features: their Gram terms carry the colours (filters
            # of zero mean do not see them) and how colours go with patterns.
            out[f"level{i}"] = torch.cat([x, conv(x)], dim=1)
        return out


def _random_conv(c_in: int, c_out: int, kernel: int, g: torch.Generator) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, padding_mode="reflect")
    w = torch.randn(conv.weight.shape, generator=g)
    w -= w.mean(dim=(1, 2, 3), keepdim=True)
    w *= (2.0 / (c_in * kernel * kernel)) ** 0.5 / w.std(dim=(1, 2, 3), keepdim=True)  # He init, exactly
    conv.weight.data.copy_(w)
    conv.bias.data.copy_(torch.randn(c_out, generator=g) * 0.1)
    return conv


def loss_network(name: str = "auto", offline: bool = False, quiet: bool = False,
                 log=lambda message: print(message, file=sys.stderr)) -> LossNetwork:
    """The loss network `name` (LOSS_NETS), frozen, in eval mode, on the CPU. "vgg16"/"vgg19"
    fetch their ImageNet weights if they are not on disk (announced; WeightsError offline);
    "auto" takes VGG-16 unless that needs the network and the network is off, and says so."""
    from visiontool import weights

    if name not in LOSS_NETS:
        raise UsageError(f"--loss-net {name}: unknown (use {', '.join(LOSS_NETS)})")
    if name == "auto":
        have = weights.is_present("vgg16", "IMAGENET1K_V1")
        if not have and weights.is_offline(offline):
            if not quiet:
                log("loss network: random (offline, and VGG-16's ImageNet weights are not on disk; "
                    "`visiontool weights pull vgg16` fetches them)")
            return RandomPyramid()
        name = "vgg16"
    if name == "random":
        return RandomPyramid()
    path = weights.resolve(name, "IMAGENET1K_V1", offline=offline, quiet=quiet)
    return VGGFeatures(name, weights.load_state_dict(path))


def gram(features: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, C): channel correlations averaged over positions (so images of
    any size compare), computed in float32."""
    n, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):  # else the matmul runs in fp16/bf16 and sums overflow
        f = features.float().reshape(n, c, h * w)
        return f @ f.transpose(1, 2) / (h * w)


def style_targets(net: LossNetwork, style: Tensor) -> dict[str, Tensor]:
    """The style image's (1, 3, H, W) Gram matrices at the style layers, (1, C, C) each."""
    with torch.no_grad():
        feats = net(style)
    return {k: gram(feats[k]) for k in net.style_layers}


def content_loss(features: dict[str, Tensor], targets: dict[str, Tensor], layers) -> Tensor:
    """Per image (N,): sum over `layers` of |F(x) - F(c)|^2 / |F(c)|^2."""
    total = 0.0
    for k in layers:
        x, c = features[k].float(), targets[k].float()
        total = total + (x - c).pow(2).flatten(1).sum(1) / c.pow(2).flatten(1).sum(1).clamp_min(1e-12)
    return total


def style_loss(features: dict[str, Tensor], targets: dict[str, Tensor], layers) -> Tensor:
    """Per image (N,): sum over `layers` of |G(x) - G(s)|^2 / |G(s)|^2; targets (1 or N, C, C)."""
    total = 0.0
    for k in layers:
        g, s = gram(features[k]), targets[k]
        total = total + (g - s).pow(2).sum((1, 2)) / s.pow(2).sum((1, 2)).clamp_min(1e-12)
    return total


def tv_loss(images: Tensor) -> Tensor:
    """Per image (N,): mean absolute difference between vertical and horizontal neighbours."""
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().flatten(1).mean(1)
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dy + dx


class Losses(NamedTuple):
    total: Tensor  # per image (N,)
    content: Tensor
    style: Tensor
    tv: Tensor


class Perceptual(nn.Module):
    """The weighted perceptual loss of images against their contents and one style image:
    `Perceptual(net, style)(images, contents)` -> Losses, each per image."""

    def __init__(self, net: LossNetwork, style: Tensor, content_weight: float = 1.0,
                 style_weight: float = 10.0, tv_weight: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.weights = (content_weight, style_weight, tv_weight)
        self.targets = style_targets(net, style)

    def content_features(self, contents: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            feats = self.net(contents)
        return {k: feats[k] for k in self.net.content_layers}

    def forward(self, images: Tensor, contents: Tensor | dict[str, Tensor]) -> Losses:
        """`contents`: the content images, or their content_features (computed once)."""
        target = contents if isinstance(contents, dict) else self.content_features(contents)
        feats = self.net(images)
        c = content_loss(feats, target, self.net.content_layers)
        s = style_loss(feats, self.targets, self.net.style_layers)
        tv = tv_loss(images)
        wc, ws, wt = self.weights
        return Losses(wc * c + ws * s + wt * tv, c, s, tv)


def style_distance(net: LossNetwork, images: Tensor, style: Tensor) -> Tensor:
    """How far images are from a style, per image (N,): the mean over style layers of
    |G(x) - G(s)| / |G(s)| (Frobenius norms; 0 = the style's own statistics). Sizes may differ."""
    targets = style_targets(net, style)
    with torch.no_grad():
        feats = net(images)
    parts = [(gram(feats[k]) - targets[k]).flatten(1).norm(dim=1) / targets[k].flatten(1).norm(dim=1).clamp_min(1e-12)
             for k in net.style_layers]
    return torch.stack(parts).mean(0)
