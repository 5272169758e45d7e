"""PyTorch backend: eval mode, inference mode, batch norm folded into the convolutions before
it, channels_last (together about 1.3x faster than the plain module on CPU)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from visiontool.errors import UsageError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when present; asking for CUDA where there is none is a usage error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available here (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: not a device (use auto, cpu, cuda or cuda:N)") from None


def fold_batch_norm(module: torch.nn.Module) -> torch.nn.Module:
    """Fold each eval-mode BatchNorm into the convolution that feeds it (one pass over memory
    instead of two). Needs a traceable graph; a model that cannot be traced runs as it is."""
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return module
    from torch.fx import symbolic_trace
    from torch.fx.experimental.optimization import fuse

    try:
        traced = symbolic_trace(module)
        parts = dict(traced.named_modules())
        folded = (torch.nn.modules.conv._ConvNd, torch.nn.modules.batchnorm._BatchNorm)
        called = [n.target for n in traced.graph.nodes if n.op == "call_module" and isinstance(parts[n.target], folded)]
        if len(called) != len(set(called)):
            # a network run more than once (at several scales): folding the whole would fold a
            # convolution once per call; each child is folded on its own, once (in a copy, as fuse)
            module = copy.deepcopy(module)
            for name, child in module.named_children():
                setattr(module, name, fold_batch_norm(child))
            return module
        return fuse(traced, no_trace=True)  # the trace above, not a second one
    except Exception:  # data-dependent control flow: tracing fails, the plain module still works
        return module


class TorchBackend:
    """backend(batch) -> every output of the model as float32 numpy arrays, in order (a dict
    output in its key order). A batch is one NCHW array, or a list of CHW arrays of different
    sizes: models that take a list (`takes_image_lists`, torchvision's detectors) get it whole,
    others one image at a time, as onnxruntime runs them (see stack_outputs)."""

    name = "torch"
    decode_in_processes = True  # PyTorch holds the GIL in places: decoding runs in other processes

    def __init__(self, module: torch.nn.Module, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self.takes_lists = getattr(module, "takes_image_lists", False)
        self.module = fold_batch_norm(module.eval()).to(self.device, memory_format=torch.channels_last)

    def __call__(self, batch) -> list[np.ndarray]:
        if isinstance(batch, (list, tuple)) and not self.takes_lists:
            from visiontool.backends import stack_outputs

            return stack_outputs([self(np.asarray(b)[None]) for b in batch])
        if isinstance(batch, (list, tuple)):
            x = [torch.as_tensor(b).to(self.device, non_blocking=True) for b in batch]
        else:
            x = torch.as_tensor(batch).to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.module(x)
        if isinstance(out, dict):
            out = list(out.values())
        if not isinstance(out, (tuple, list)):
            out = [out]
        return [o.float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy() for o in out]
