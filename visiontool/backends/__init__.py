"""Backends run a model on a batch of preprocessed images: `backend(batch) -> outputs`.

Both take a float32 NCHW numpy array, or a list of CHW arrays of different sizes, and return
numpy arrays, so tasks never see the framework.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visiontool.errors import UsageError

BACKENDS = ("torch", "onnx")


def pick_backend(model: str, backend: str | None) -> str:
    """The backend follows from the model argument (.onnx -> onnx); --backend overrides."""
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"--backend {backend}: unknown (use {' or '.join(BACKENDS)})")
    if Path(model).suffix.lower() == ".onnx":
        if backend == "torch":
            raise UsageError(f"--backend torch cannot run {model}: it is an ONNX file")
        return "onnx"
    return backend or "torch"


def local_device(model: str, backend: str | None, device: str, local_rank: int) -> str:
    """The device of one process of a torchrun job: cuda:LOCAL_RANK where CUDA is asked for, or
    available under "auto"; otherwise `device` unchanged."""
    if (device or "auto").lower() not in ("auto", "cuda"):
        return device
    if pick_backend(model, backend) == "torch":
        import torch

        cuda = torch.cuda.is_available()
    else:
        import onnxruntime

        cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return f"cuda:{local_rank}" if cuda else device


def open_model(model: str, weights: str | None = None, backend: str | None = None,
               device: str = "auto", offline: bool = False, quiet: bool = False,
               images: int | None = None, image_size: int | None = None):
    """(runner, ModelInfo) for any model argument; runner(batch) -> list of ndarrays.
    `images`: how many the run will see, when known (a backend may start faster for a few).
    `image_size`: the side the model sees instead of its own (--image-size)."""
    from dataclasses import replace

    kind = pick_backend(model, backend)
    if kind == "onnx":
        from visiontool.backends.onnx_backend import open_onnx

        if Path(model).suffix.lower() != ".onnx":  # a registry model or checkpoint: export it once
            from visiontool.export.cache import cached_onnx

            model = str(cached_onnx(model, weights, offline=offline, quiet=quiet, image_size=image_size))
            weights = image_size = None
        if image_size is not None:
            raise UsageError(f"--image-size: {model} was exported at one size; export the model again "
                             f"with `visiontool export --image-size {image_size}`")
        return open_onnx(model, weights=weights, device=device, offline=offline, quiet=quiet, images=images)
    from visiontool.backends.torch_backend import TorchBackend
    from visiontool.models.loader import load_model

    loaded = load_model(model, weights, offline=offline, quiet=quiet)
    info = loaded.info
    if image_size is not None:
        info = replace(info, preprocess=info.preprocess.at_size(image_size))
        if hasattr(loaded.module, "set_input_size"):  # models that resize inside themselves
            loaded.module.set_input_size(image_size)
    return TorchBackend(loaded.module, device), info


def stack_outputs(per_image: list[list[np.ndarray]]) -> list:
    """Outputs of single-image runs (a list of differently sized images) -> batch outputs.
    Rows of varying length are padded (with -1 for integers, 0 for floats) to the longest, as
    the torch side pads detections. An output whose size follows the image's (a painted image)
    cannot be stacked: it comes back as a list of per-image arrays, without the batch axis."""
    stacked = []
    for parts in zip(*per_image):
        if any(p.shape[2:] != parts[0].shape[2:] for p in parts):
            stacked.append([one for p in parts for one in p])
            continue
        longest = max(p.shape[1] if p.ndim > 1 else 1 for p in parts)
        padded = []
        for p in parts:
            if p.ndim > 1 and p.shape[1] < longest:
                fill = np.full((p.shape[0], longest - p.shape[1], *p.shape[2:]), -1 if p.dtype.kind == "i" else 0, p.dtype)
                p = np.concatenate([p, fill], axis=1)
            padded.append(p)
        stacked.append(np.concatenate(padded))
    return stacked
