"""A guided filter (He, Sun and Tang, 2013) of class probabilities, with the image as the guide.

Within each small window the filter fits every class's probability as a linear function of the
image's colour and answers with the fits averaged over the windows that hold each pixel. Where a
network's probabilities blur across an object's edge (its scores come from coarser strides), the
fit makes them step where the colour does, and a class's edge placed a few pixels off is pulled
onto the image's (tests/test_guided_filter.py). Being linear in the probabilities, the filter
keeps their sum at one.

The fits are made at half the image's resolution (He and Sun's fast guided filter) and applied to
the full-resolution colours: on the shipped digit segmenter's validation scenes that scored as the
full-resolution filter did (mIoU 0.893 and 0.894) at a fifth of the time. Box means are sums
along rows and then columns, divided by the pixels each window holds inside the image, and the
3x3 colour covariances are inverted in closed form: every step is an ONNX operator, so the
exported graph filters as torch does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Regularizes each window's fit: a colour variance below about this counts as flat, and there
# the filter keeps the window's mean probability. 0.006 in the network's input units (ImageNet's
# normalization, std about 0.225) is 3e-4 on colour in 0..1.
EPS = 0.006
SUBSAMPLE = 2  # the fits are made at 1/SUBSAMPLE of the image's resolution


def _box(t: torch.Tensor, radius: int) -> torch.Tensor:
    """The mean over the (2r+1)^2 window around each pixel, of the pixels inside the image."""
    # Sums by depthwise convolutions with uniform weights, along rows and then columns, divided
    # by the number of pixels each window holds: onnxruntime runs these about 3x faster than
    # average pools, and torch runs both alike channels-last.
    t = t.contiguous(memory_format=torch.channels_last)
    return _window_sum(t, radius) / _window_sum(torch.ones_like(t[:, :1]), radius)


def _window_sum(t: torch.Tensor, radius: int) -> torch.Tensor:
    c, k = t.shape[1], 2 * radius + 1
    rows = torch.ones(c, 1, 1, k, dtype=t.dtype, device=t.device)
    t = F.conv2d(t, rows, padding=(0, radius), groups=c)
    return F.conv2d(t, rows.transpose(2, 3), padding=(radius, 0), groups=c)


def guided_filter(image: torch.Tensor, probs: torch.Tensor, radius: int, eps: float = EPS) -> torch.Tensor:
    """`probs` (N, C, H, W) filtered with `image` (N, 3, H, W) as the guide, in float32; windows of
    (2 * radius + 1) pixels a side at the image's resolution."""
    full, size = image.float(), image.shape[-2:]
    image = F.interpolate(full, scale_factor=1 / SUBSAMPLE, mode="bilinear", align_corners=False)
    probs = F.interpolate(probs.float(), scale_factor=1 / SUBSAMPLE, mode="bilinear", align_corners=False)
    radius, c = max(1, radius // SUBSAMPLE), probs.shape[1]
    mean_i = _box(image, radius)
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    sums = _box(torch.cat([image[:, i : i + 1] * image[:, j : j + 1] for i, j in pairs], 1), radius)
    v = [sums[:, k] - mean_i[:, i] * mean_i[:, j] for k, (i, j) in enumerate(pairs)]
    a, b, cc, d, e, f = v[0] + eps, v[1], v[2], v[3] + eps, v[4], v[5] + eps
    # the inverse of the covariance [[a, b, cc], [b, d, e], [cc, e, f]]: adjugate over determinant
    adj = [[d * f - e * e, cc * e - b * f, b * e - cc * d],
           [cc * e - b * f, a * f - cc * cc, b * cc - a * e],
           [b * e - cc * d, b * cc - a * e, a * d - b * b]]
    inv_det = (1 / (a * adj[0][0] + b * adj[0][1] + cc * adj[0][2])).unsqueeze(1)
    mean_p = _box(probs, radius)
    cross = _box(torch.cat([image[:, i : i + 1] * probs for i in range(3)], 1), radius)
    cov = [cross[:, i * c : (i + 1) * c] - mean_i[:, i : i + 1] * mean_p for i in range(3)]
    slopes = [sum(adj[i][j].unsqueeze(1) * cov[j] for j in range(3)) * inv_det for i in range(3)]
    offset = mean_p - sum(slopes[i] * mean_i[:, i : i + 1] for i in range(3))
    fits = _box(torch.cat([*slopes, offset], 1), radius).contiguous()  # standard layout: read by channel
    fits = F.interpolate(fits, size=size, mode="bilinear", align_corners=False)
    out = fits[:, 3 * c :] + fits[:, :c] * full[:, :1]
    for i in (1, 2):
        out = out + fits[:, i * c : (i + 1) * c] * full[:, i : i + 1]
    return out
