"""PyTorch module -> ONNX graph, and the metadata that lets the file describe itself.

The torch.export-based exporter is tried first; a model it cannot trace goes through the
TorchScript exporter instead, and the caller is told which one wrote the graph.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from visiontool.errors import VisiontoolError, one_line
from visiontool.modelinfo import ModelInfo

if TYPE_CHECKING:
    import onnx

METADATA_KEY = "visiontool"  # the key OnnxBackend's read_info looks up
FORMAT_VERSION = 1
INPUT_NAME = "images"


class ExportError(VisiontoolError):
    """The model cannot be written as ONNX (an operator, a shape rule) or fails verification."""


@dataclass
class Graph:
    model: onnx.ModelProto
    exporter: str  # "dynamo" (torch.export) or "torchscript"
    fallback_reason: str  # why the dynamo exporter was not used ("" when it was)


def to_onnx(module, channels: int, size: int, batch: int | None, dynamic_size: bool,
            opset: int | None, name: str, outputs: list[str]) -> Graph:
    """Export `module` (eval, CPU, fp32) taking NCHW input; batch None = a dynamic batch axis;
    `outputs` names the module's outputs in order."""
    import torch

    example = torch.rand(batch or 2, channels, size, size)  # 2: a batch of 1 would be specialised
    try:
        return Graph(_dynamo(module, example, batch, dynamic_size, opset, outputs), "dynamo", "")
    except Exception as first:  # the exporter raises many types; each is a reason to fall back
        reason = one_line(first)
        try:
            return Graph(_torchscript(module, example, batch, dynamic_size, opset, outputs), "torchscript", reason)
        except Exception as second:
            raise ExportError(f"cannot export {name} to ONNX: {_explain(second, first)}") from None


def _dynamo(module, example, batch, dynamic_size, opset, outputs) -> onnx.ModelProto:
    import torch
    from torch.export import Dim

    axes = {} if batch else {0: Dim("batch", min=1, max=4096)}
    if dynamic_size:
        axes.update({2: Dim("height", min=8, max=8192), 3: Dim("width", min=8, max=8192)})
    with _quiet():
        program = torch.onnx.export(
            module, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
            output_names=outputs, dynamic_shapes=(axes,) if axes else None, verbose=False,
        )
    model = program.model_proto
    if opset is not None and opset_of(model) != opset:  # it could not convert down; TorchScript can
        raise ExportError(f"the torch.export-based exporter cannot write opset {opset} (it wrote {opset_of(model)})")
    return model


def _torchscript(module, example, batch, dynamic_size, opset, outputs) -> onnx.ModelProto:
    import torch

    axes = {} if batch else {0: "batch"}
    if dynamic_size:
        axes.update({2: "height", 3: "width"})
    buffer = io.BytesIO()
    with _quiet():
        torch.onnx.export(
            module, (example,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=outputs, dynamic_axes={INPUT_NAME: axes, **{n: {0: "batch"} if not batch else {} for n in outputs}},
        )
    import onnx

    return onnx.load_from_string(buffer.getvalue())


@contextlib.contextmanager
def _quiet():
    """The exporters print progress, deprecation notes and (from C++, on file descriptor 1)
    whole graphs on failure; our stdout stays ours."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 1)
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)  # version-conversion tracebacks logged by the exporter
            yield
    finally:
        logging.disable(logging.NOTSET)
        os.dup2(saved, 1)
        os.close(saved)


_OPERATOR_PATTERNS = (
    re.compile(r"operator '?(aten::\w+)"),  # TorchScript: "Exporting the operator 'aten::x' ..."
    re.compile(r"op='(aten\.\w+)'"),  # dynamo: "<OpOverload(op='aten.x', overload='default')>"
    re.compile(r"\b(aten[.:]{1,2}\w+)"),
)


def operator_in(text: str) -> str | None:
    """The PyTorch operator an exporter error names, if it names one."""
    for pattern in _OPERATOR_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def _explain(second: BaseException, first: BaseException) -> str:
    for err in (second, first):
        op = operator_in(str(err))
        if op:
            return f"operator {op} is not supported by the ONNX exporters ({one_line(err)})"
    return one_line(first)



def describe(info: ModelInfo, precision: str, input_dtype: str, batch: int | None,
             dynamic_size: bool, exporter: str, opset: int, outputs: dict[str, str]) -> dict:
    """The JSON stored under the "visiontool" metadata key: everything a command needs besides
    the graph. ModelInfo's fields are stored as they are, so read_info rebuilds it exactly."""
    p = info.preprocess
    side = "dynamic" if dynamic_size else p.crop
    return {
        "format": FORMAT_VERSION,
        "arch": info.arch,
        "task": info.task,
        "labels": list(info.labels),
        "preprocess": p.to_dict(),
        "weights_source": info.weights_source,
        "extra": info.extra,
        "input": {"name": INPUT_NAME, "layout": "NCHW", "channel_order": p.mode, "dtype": input_dtype,
                  "shape": ["batch" if batch is None else batch, p.channels, side, side],
                  "range": f"(pixel / 255 - mean) / std after preprocess (fit: {p.fit})"},
        "outputs": outputs,
        "precision": precision,
        "exporter": exporter,
        "opset": opset,
    }


def attach(model: onnx.ModelProto, meta: dict) -> onnx.ModelProto:
    """Store `meta` under the metadata key (replacing any earlier copy)."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for key, value in keep + [(METADATA_KEY, json.dumps(meta, sort_keys=True))]:
        model.metadata_props.add(key=key, value=value)
    model.doc_string = f"{meta['arch']} ({meta['task']}), exported by visiontool"
    return model


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
