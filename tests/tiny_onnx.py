"""A tiny classifier written straight as an ONNX graph (no torch, no exporter): a 1x32x32 gray
input, one linear layer, four labels. Tests that start many processes use it: each starts in a
fraction of a second."""

from __future__ import annotations

import json

import numpy as np

LABELS = ["a", "b", "c", "d"]


def write_tiny_onnx(path, meta_override: dict | None = None):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from visiontool.export.graph import FORMAT_VERSION, INPUT_NAME, METADATA_KEY
    from visiontool.models.registry import LENET5_PREPROCESS

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(32 * 32, len(LABELS))).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 32 * 32], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", [INPUT_NAME, "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 1, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        [weight, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"format": FORMAT_VERSION, "arch": "tiny", "task": "classify", "labels": LABELS,
            "preprocess": LENET5_PREPROCESS.to_dict(), "weights_source": "test", "extra": {},
            "outputs": {"logits": "softmax over labels gives scores"}, "precision": "fp32",
            "exporter": "test", "opset": 17}
    meta.update(meta_override or {})
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    onnx.save(model, str(path))
    return path
