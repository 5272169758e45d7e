"""`stylize --method optimize`: the image itself is optimised (Gatys, Ecker, Bethge, "Image Style
Transfer Using Convolutional Neural Networks", CVPR 2016).

Starting from the content image, the pixels move to lower the perceptual loss of style_loss.py:
the loss network's content features of the content image plus the Gram matrices of the style
image's features (and, if asked, total variation). L-BFGS (the paper's choice, with a
strong-Wolfe line search) or Adam; a step is one evaluation of the loss and its gradient. The
loss sees the pixels clamped to [0, 1], and so does the result. Each image is optimised on its
own, so its result does not depend on the others in its batch.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from visiontool.errors import UsageError
from visiontool.style_loss import LossNetwork, Losses, Perceptual

OPTIMIZERS = ("lbfgs", "adam")
ADAM_LR = 0.01  # pixels move by about this much per step


def optimize(content: torch.Tensor, loss: Perceptual, steps: int, optimizer: str = "lbfgs",
             on_step: Callable[[int, Losses], None] | None = None) -> torch.Tensor:
    """content (1, 3, H, W) in [0, 1] -> the stylized image, same shape, in [0, 1]. A step is
    one evaluation of the loss and its gradient; `on_step(step, losses)` follows each."""
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"--solver {optimizer}: unknown (use {' or '.join(OPTIMIZERS)})")
    target = loss.content_features(content)
    x = content.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    done = 0

    def closure():
        nonlocal done
        opt.zero_grad()
        # The loss sees the image clamped: the same function at every evaluation, which
        # L-BFGS's curvature pairs and line search rely on (clamping between steps breaks them).
        losses = loss(x.clamp(0.0, 1.0), target)
        losses.total.sum().backward()
        done += 1
        if on_step is not None:
            on_step(done, Losses(*(v.detach() for v in losses)))
        return losses.total.sum()

    if optimizer == "lbfgs":
        # One run of `steps` evaluations; the strong-Wolfe line search keeps every step downhill.
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, max_eval=steps, tolerance_grad=0.0,
                                tolerance_change=0.0, history_size=50, line_search_fn="strong_wolfe")
        opt.step(closure)
    else:
        opt = torch.optim.Adam([x], lr=ADAM_LR)
        for _ in range(steps):
            opt.step(closure)
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
    return x.detach().clamp(0.0, 1.0)


class OptimizeRunner:
    """A backend-like runner: batch of content images -> [stylized images], one optimisation
    per image (see `optimize`), with a progress bar of steps on stderr."""

    name = "torch"
    decode_in_processes = False  # decoding is nothing next to the optimisation

    def __init__(self, net: LossNetwork, style: np.ndarray, steps: int, content_weight: float,
                 style_weight: float, tv_weight: float, optimizer: str = "lbfgs", device: str = "auto",
                 quiet: bool = False) -> None:
        """`style`: the style image, CHW float32 in [0, 1]."""
        from visiontool.backends.torch_backend import resolve_device

        if optimizer not in OPTIMIZERS:
            raise UsageError(f"--solver {optimizer}: unknown (use {' or '.join(OPTIMIZERS)})")
        self.device = resolve_device(device)
        style_t = torch.as_tensor(style)[None].to(self.device)
        self.loss = Perceptual(net.to(self.device), style_t, content_weight, style_weight, tv_weight)
        self.steps, self.optimizer, self.quiet = steps, optimizer, quiet
        self.done = 0

    def __call__(self, batch) -> list:
        from visiontool import progress

        painted = []
        for image in batch:  # an NCHW array or a list of CHW arrays: one image at a time either way
            self.done += 1
            content = torch.as_tensor(np.asarray(image, dtype=np.float32))[None].to(self.device)
            with progress.bar(f"image {self.done}", total=self.steps, quiet=self.quiet, unit="step",
                              transient=True) as bar:
                def show(step: int, losses: Losses) -> None:
                    bar.advance()
                    bar.update(info=f"loss {float(losses.total):.4g} (content {float(losses.content):.3g}, "
                                    f"style {float(losses.style):.3g})")

                painted.append(optimize(content, self.loss, self.steps, self.optimizer, show)[0].cpu().numpy())
        same = all(p.shape == painted[0].shape for p in painted)
        return [np.stack(painted) if same else painted]
