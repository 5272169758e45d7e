"""Training augmentation on uint8 image batches already in memory.

"light" is a random resized crop plus a horizontal flip, done for the whole batch with one
`grid_sample` call (an affine crop box per image). "randaugment" and "trivialaugment" run
torchvision's v2 policies per image on uint8 tensors first, then the same crop and flip.
All random numbers come from the epoch's generator and are drawn for the global batch, so a
torchrun job augments each image exactly as a single process would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_CROP_SCALE = 1.0  # a random crop covers between --crop-scale and all of the cached square
CROP_RATIO = (3 / 4, 4 / 3)  # aspect ratio range of the crop


def sample_params(n: int, generator: torch.Generator, crop_scale: float = 0.25, flip: bool = True) -> torch.Tensor:
    """(n, 6) per-image randomness: crop width, height, center x, center y (normalized
    coordinates), flip sign, and a seed for the per-image policy."""
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    # All five numbers are drawn whatever the options, so a run's other draws stay the same.
    area = crop_scale + (MAX_CROP_SCALE - crop_scale) * u[:, 0]
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (2 * u[:, 2] - 1) * (1 - w)
    cy = (2 * u[:, 3] - 1) * (1 - h)
    flip = torch.where((u[:, 4] < 0.5) & flip, -1.0, 1.0).double()
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator).double()
    return torch.stack([w, h, cx, cy, flip, seeds], dim=1)


def crop_flip(images: torch.Tensor, params: torch.Tensor, size: int) -> torch.Tensor:
    """Random resized crop + flip of a uint8 (B, C, S, S) batch -> float (B, C, size, size) in
    [0, 255], bilinear, on the batch's device."""
    x = images.float()
    theta = torch.zeros(len(x), 2, 3, dtype=torch.float32, device=x.device)
    p = params.to(device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = p[:, 0] * p[:, 4]  # width, mirrored when flip == -1
    theta[:, 0, 2] = p[:, 2]
    theta[:, 1, 1] = p[:, 1]
    theta[:, 1, 2] = p[:, 3]
    grid = F.affine_grid(theta, [len(x), x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Augmenter:
    """Turns cached uint8 images into a float training batch in [0, 255] (not normalized).

    Two stages: `on_host` runs the per-image policy on the CPU copy; `on_device` does the
    batched crop and flip where the model runs."""

    def __init__(self, kind: str, size: int):
        self.kind = kind
        self.size = size
        self.policy = None
        if kind in ("randaugment", "trivialaugment"):
            from torchvision.transforms import v2

            self.policy = v2.RandAugment() if kind == "randaugment" else v2.TrivialAugmentWide()

    def on_host(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if self.policy is None:
            return images
        # The v2 policies draw from torch's global generator: seed it per image (from the
        # epoch generator) and put the previous state back, so dropout's stream is untouched.
        state = torch.get_rng_state()
        try:
            out = torch.empty_like(images)
            for i in range(len(images)):
                torch.manual_seed(int(params[i, 5]))
                out[i] = self.policy(images[i])
            return out
        finally:
            torch.set_rng_state(state)

    def on_device(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return images.float()
        return crop_flip(images, params, self.size)
