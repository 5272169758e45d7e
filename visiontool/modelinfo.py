"""What a command needs to know about a model besides its weights. Torch-free, so the ONNX
backend (which reads the same facts from the .onnx metadata) shares it."""

from __future__ import annotations

from dataclasses import dataclass, field

from visiontool.preprocess import Preprocess


@dataclass
class ModelInfo:
    arch: str  # architecture name: "resnet18", "lenet5", ...
    task: str  # "classify" (later: "detect", "segment", "stylize")
    labels: list[str]  # class names, index -> name
    preprocess: Preprocess  # how images become the model's input
    weights_source: str = ""  # where the weights came from, for messages and metadata
    extra: dict = field(default_factory=dict)  # task-specific facts (e.g. arch kwargs)
