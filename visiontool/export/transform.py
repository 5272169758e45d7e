"""Graph rewrites after export: simplification (onnxslim), fp16 and int8 (onnxruntime).

Each takes and returns an onnx.ModelProto of a graph whose input is `graph.INPUT_NAME`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
import numpy as np
import onnx

from visiontool.errors import UsageError
from visiontool.preprocess import Preprocess

CALIBRATION_MAX_IMAGES = 128  # MinMax ranges settle well before this on CNN activations
CALIBRATION_BATCH = 8


def require_onnxslim():
    try:
        import onnxslim
    except ImportError:
        raise UsageError("--simplify needs onnxslim, which is not installed: pip install onnxslim") from None
    return onnxslim


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    return require_onnxslim().slim(model)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights, input and output (for GPU providers; CPU runs it through inserted casts)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=False)


def to_int8_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights quantized to int8 ahead of time, activations at run time: no calibration data."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="visiontool-int8-") as tmp:
        src, out = _prepared(model, Path(tmp)), Path(tmp) / "int8.onnx"
        quantize_dynamic(src, out, weight_type=QuantType.QInt8)
        return onnx.load(out)


def to_int8_static(model: onnx.ModelProto, arrays: list[np.ndarray], input_name: str,
                   fixed_batch: int | None) -> onnx.ModelProto:
    """QDQ int8 with per-channel weights; activation ranges calibrated (MinMax) on `arrays`,
    images already through the model's own Preprocess."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not arrays:
        raise UsageError("--calibration: no readable images in the folder")
    reader = ArrayReader(arrays, input_name, fixed_batch or CALIBRATION_BATCH, fixed_batch is not None)
    with tempfile.TemporaryDirectory(prefix="visiontool-int8-") as tmp:
        src, out = _prepared(model, Path(tmp)), Path(tmp) / "int8.onnx"
        # uint8 activations with int8 weights: onnxruntime's fast path on x86 (VNNI); on a
        # resnet18 here it ran 5x fp32 where int8 activations ran 1.2x.
        quantize_static(src, out, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return onnx.load(out)


def _prepared(model: onnx.ModelProto, folder: Path) -> Path:
    """quant_pre_process: shape inference and graph clean-up the quantizer relies on."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = folder / "prepared.onnx"
    quant_pre_process(model, out, skip_symbolic_shape=False)
    return out


def calibration_paths(folder: str) -> list[str]:
    from visiontool.sources import expand

    if not Path(folder).is_dir():
        raise UsageError(f"--calibration {folder}: not a folder of images")
    return spread(expand([folder], recursive=True), CALIBRATION_MAX_IMAGES)


def spread(items: list, n: int) -> list:
    """At most n items evenly spaced over the list: a sorted class folder gives every class a say."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def decoded(paths: list[str], prep: Preprocess) -> list[np.ndarray]:
    """Preprocessed arrays of the images that decode; unreadable files are passed over."""
    from visiontool.imageio import DecodeError, decode

    arrays = []
    for path in paths:
        try:
            arrays.append(prep(decode(path, prep.mode)))
        except DecodeError:
            continue
    return arrays


class ArrayReader:
    """onnxruntime's CalibrationDataReader (duck-typed: get_next, rewind) over preprocessed images."""

    def __init__(self, arrays: list[np.ndarray], input_name: str, batch: int, exact: bool) -> None:
        arrays = list(arrays)
        if exact and len(arrays) % batch:  # a fixed-batch graph takes only full batches
            arrays += arrays[: batch - len(arrays) % batch]
        self.feeds = [{input_name: np.stack(arrays[i : i + batch])} for i in range(0, len(arrays), batch)]
        self._next = iter(self.feeds)

    def get_next(self) -> dict | None:
        return next(self._next, None)

    def rewind(self) -> None:
        self._next = iter(self.feeds)
