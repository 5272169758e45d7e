"""Raw head outputs -> boxes, for the project's own detectors, in numpy: the ONNX path decodes
with the same code as PyTorch and never imports torch."""

from __future__ import annotations

import numpy as np

from visiontool.errors import WeightsError


def decode_raw(arch: str, raw: np.ndarray, conf: float, iou: float, max_det: int):
    """Per image (boxes (k, 4) in input pixels, scores (k,), labels (k,)), best score first."""
    if arch == "griddet":
        from visiontool.models import griddet_decode

        return griddet_decode.decode(raw, conf, iou, max_det)
    raise WeightsError(f"{arch}: no decoder for its raw outputs (this visiontool knows griddet)")

