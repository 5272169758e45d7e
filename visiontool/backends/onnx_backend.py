"""onnxruntime backend. Imports no torch: an exported model runs where PyTorch is absent.

Everything a command needs besides the graph (task, labels, preprocessing) is read from the
file's own metadata, written by `visiontool export` under the key "visiontool".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from visiontool.backends import stack_outputs
from visiontool.errors import UsageError, WeightsError, one_line
from visiontool.modelinfo import ModelInfo
from visiontool.preprocess import Preprocess

METADATA_KEY = "visiontool"


def providers_for(device: str) -> list[str]:
    """CUDA when present (or asked for), then CPU; asking for CUDA where there is none fails."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    device = (device or "auto").lower()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise UsageError(f"--device {device}: onnxruntime here has no CUDA provider "
                             f"(install onnxruntime-gpu, or use --device cpu)")
        index = device.split(":")[1] if ":" in device else "0"
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    if device != "auto":
        raise UsageError(f"--device {device}: not a device (use auto, cpu, cuda or cuda:N)")
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def read_info(session_or_path) -> ModelInfo:
    """The ModelInfo stored in an exported file's metadata."""
    meta = session_or_path.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise WeightsError("this .onnx file was not written by `visiontool export`: it carries no "
                           "labels or preprocessing (export it with `visiontool export`)")
    try:  # a file handed over may carry anything under the key: one line, never a traceback
        d = json.loads(meta[METADATA_KEY])
        info = ModelInfo(arch=str(d["arch"]), task=str(d["task"]), labels=[str(x) for x in d["labels"]],
                         preprocess=Preprocess.from_dict(d["preprocess"]),
                         weights_source=d.get("weights_source", ""), extra=dict(d.get("extra") or {}))
    except Exception as err:  # noqa: BLE001 - JSON, missing keys, wrong types: all mean a damaged file
        raise WeightsError(f"this .onnx file's '{METADATA_KEY}' metadata is damaged ({type(err).__name__}: "
                           f"{one_line(err, 120)}); export the model again with `visiontool export`") from None
    if not isinstance(d["labels"], list):
        raise WeightsError(f"this .onnx file's '{METADATA_KEY}' metadata is damaged (labels is not a list); "
                           f"export the model again with `visiontool export`")
    return info


# Up to this many images, a graph that is quick to build beats a faster one: the layout
# optimizations of ORT_ENABLE_ALL take ~0.15 s to apply to a resnet18 and save ~20 ms an image.
# Up to this many images, the graph is built with the cheaper optimization level: 0.08 s to
# build instead of 0.24 s (resnet18), which a run on one image feels; more images repay the
# full level, which runs batches much faster.
FAST_START_IMAGES = 8


class OnnxBackend:
    """`fast_start`: build the graph with the cheaper optimization level (for a few images)."""

    name = "onnx"
    decode_in_processes = False  # onnxruntime releases the GIL: threads decode alongside it

    def __init__(self, path: str | os.PathLike, device: str = "auto", threads: int | None = None,
                 fast_start: bool = False) -> None:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"--model {path}: no such file")
        self.path, self.threads, self.providers = path, threads, providers_for(device)
        self.session = self._open(full=not fast_start)
        self.input_name = self.session.get_inputs()[0].name
        self.input_type = self.session.get_inputs()[0].type  # tensor(float) or tensor(float16)
        first = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None  # None: dynamic
        self.info = read_info(self.session)

    def _open(self, full: bool):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if full
                                            else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        if self.threads:
            options.intra_op_num_threads = self.threads
        # Idle compute threads sleep instead of spinning: the decode threads need those cores
        # between and during batches (spinning made the int8 model slower even alone here).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(self.path), options, providers=self.providers)
        except Exception as err:  # onnxruntime raises its own types for unreadable graphs
            raise WeightsError(f"{self.path}: onnxruntime cannot load it: {str(err).splitlines()[0]}") from None

    def __call__(self, batch) -> list[np.ndarray]:
        """Every output of the graph, floats as float32. A list of differently sized images
        runs one at a time and the outputs are stacked (see stack_outputs). A graph
        with a fixed batch (torchvision's detectors export at batch 1) runs a larger or smaller
        batch in slices of its size, the last one padded with zeros and its outputs cut back."""
        dtype = np.float16 if "float16" in self.input_type else np.float32
        if isinstance(batch, (list, tuple)):
            return stack_outputs([self._run(np.asarray(b, dtype=dtype)[None]) for b in batch])
        x = np.asarray(batch, dtype=dtype)
        step = self.fixed_batch
        if step is None or len(x) == step:
            return self._run(x)
        parts = []
        for start in range(0, len(x), step):
            part = x[start : start + step]
            real = len(part)
            if real < step:
                part = np.concatenate([part, np.zeros((step - real, *part.shape[1:]), part.dtype)])
            parts.append([o[:real] for o in self._run(part)])
        return stack_outputs(parts)

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self.session.run(None, {self.input_name: x})
        return [o.astype(np.float32, copy=False) if o.dtype.kind == "f" else o for o in outs]


def open_onnx(model: str, weights: str | None = None, device: str = "auto", offline: bool = False,
              quiet: bool = False, images: int | None = None):
    if weights is not None:
        raise UsageError("--weights does not apply to an .onnx file: its weights are inside it")
    backend = OnnxBackend(model, device, fast_start=images is not None and images <= FAST_START_IMAGES)
    return backend, backend.info
