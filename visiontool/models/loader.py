"""Any model argument -> a network ready for inference, with its labels and preprocessing.

    load_model("resnet18")                          official DEFAULT weights (resolved, maybe fetched)
    load_model("resnet18", "IMAGENET1K_V1")         a named torchvision weights
    load_model("resnet18", "none")                  random init, DEFAULT weights' labels/preprocess
    load_model("resnet18", "my.pth")                a plain torchvision state_dict file
    load_model("lenet5-mnist")                      a shipped model (a checkpoint inside the package)
    load_model("runs/x/best.safetensors")           a checkpoint written by `visiontool train`

`num_classes` asks for a network with that many outputs: weights are loaded into everything
but the classifier head, which stays freshly initialised (how `train --pretrained` starts).
"""

from __future__ import annotations

import functools
import json
import re
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from visiontool.errors import UsageError, WeightsError, one_line
from visiontool.modelinfo import ModelInfo
from visiontool.models import registry
from visiontool.preprocess import Preprocess

if TYPE_CHECKING:
    from torch import nn

__all__ = ["LoadedModel", "ModelInfo", "load_model"]

WEIGHT_FILE_SUFFIXES = {".safetensors", ".pth", ".pt", ".bin", ".ckpt"}
# Auxiliary classifiers (googlenet, inception_v3, torchvision's segmentation models): in
# official weights, unused at inference; dropped when the network is built without them.
_AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.", "aux_classifier.")


@dataclass
class LoadedModel:
    module: "nn.Module"  # eval mode, on the CPU
    info: ModelInfo


def load_model(
    model: str,
    weights: str | None = None,
    offline: bool = False,
    quiet: bool = False,
    num_classes: int | None = None,
) -> LoadedModel:
    if Path(model).suffix.lower() == ".onnx":
        raise UsageError(f"{model} is an ONNX file: it runs on the onnx backend, not in PyTorch")
    if _looks_like_path(model):
        return _from_model_file(Path(model), weights, num_classes)
    try:
        spec = registry.get_spec(model)
    except UsageError:
        if Path(model).is_file():  # not a model name, but a file: say what the file is
            return _from_model_file(Path(model), weights, num_classes)
        raise
    if spec.shipped_file is not None:
        if weights not in (None, "DEFAULT"):
            raise UsageError(f"{spec.name} ships with its own weights; drop --weights")
        return _from_checkpoint(spec.shipped_file, num_classes, name=spec.name)
    choice = weights or "DEFAULT"
    if choice.lower() == "none":
        return _random_init(spec, num_classes)
    if _looks_like_path(choice) or Path(choice).is_file():
        return _from_weights_file(spec, Path(choice), num_classes)
    if spec.default_weights is None:
        if choice.upper() == "DEFAULT":  # nothing pretrained exists: DEFAULT is the fresh network
            return _random_init(spec, num_classes)
        raise UsageError(f"{spec.name} has no published weights {choice!r}: use none or a weights file")
    return _from_torchvision(spec, choice, offline, quiet, num_classes)


def _looks_like_path(arg: str) -> bool:
    # By its spelling, so that a stray file named like a model in the working folder changes nothing.
    return Path(arg).suffix.lower() in WEIGHT_FILE_SUFFIXES or "/" in arg or "\\" in arg


def _from_model_file(path: Path, weights: str | None, num_classes: int | None) -> LoadedModel:
    from visiontool import checkpoint
    from visiontool import weights as weights_files

    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    wrong = weights_files.wrong_file_message(path, "--model")
    if wrong is not None:
        raise UsageError(wrong)
    if checkpoint.read_meta(path) is None:
        why = checkpoint.safetensors_problem(path) if path.suffix.lower() == ".safetensors" else None
        if why:
            raise WeightsError(f"{path} is not a valid safetensors file ({why}): it is damaged or truncated")
        raise UsageError(
            f"{path} records no architecture (not a visiontool checkpoint): "
            f"pass --model ARCH --weights {path}, e.g. --model resnet18"
        )
    if weights is not None:
        raise UsageError(f"{path} is a checkpoint and carries its own weights; drop --weights")
    return _from_checkpoint(path, num_classes, name=path.stem)


def _from_checkpoint(path: Path, num_classes: int | None, name: str) -> LoadedModel:
    from visiontool import checkpoint
    from visiontool.tasks.segment import checked_guided_radius, checked_scales

    state_dict, meta = checkpoint.load(path)
    try:  # a checkpoint handed over may lack fields or hold wrong types: one line, never a traceback
        arch, kwargs, classes = str(meta["arch"]), dict(meta.get("arch_kwargs") or {}), int(meta["num_classes"])
        labels, preprocess = [str(x) for x in meta["labels"]], Preprocess.from_dict(meta["preprocess"])
        scales = checked_scales(meta.get("scales", [1.0]))
        guided = checked_guided_radius(meta.get("guided_filter", 0))
    except (KeyError, TypeError, ValueError, UsageError) as err:
        raise WeightsError(f"checkpoint {path} has incomplete metadata ({type(err).__name__}: {one_line(err, 120)})") from None
    module, outputs = _assemble(arch, state_dict, path, kwargs, num_classes, default=classes)
    # Models with labels (a style network has none) must agree with them.
    if num_classes is None and labels and (outputs != classes or len(labels) != classes):
        raise WeightsError(f"checkpoint {path} does not hold together: its weights give {outputs} classes, its "
                           f"metadata {classes} with {len(labels)} labels")
    info = ModelInfo(
        arch=arch,
        task=meta.get("task", registry.TASK_CLASSIFY),
        labels=labels if outputs == classes else _numbered(outputs),
        preprocess=preprocess,
        weights_source=str(path),
        extra={"name": name, "num_classes": outputs, "arch_kwargs": kwargs, **_measured_conf(meta),
               **({"scales": list(scales)} if scales != (1.0,) else {}),
               **({"guided_filter": guided} if guided else {})},
    )
    return LoadedModel(registry.for_inference(arch, module, scales, guided).eval(), info)


def _measured_conf(meta: dict) -> dict:
    """A detector's best-F1 score threshold on its validation set, when training recorded one."""
    conf = meta.get("conf")
    return {"conf": float(conf)} if isinstance(conf, (int, float)) and 0.0 < conf < 1.0 else {}


def _random_init(spec: registry.ModelSpec, num_classes: int | None) -> LoadedModel:
    outputs = num_classes or spec.num_classes
    module = registry.build(spec.arch, outputs, **spec.arch_kwargs)
    return _finish(spec, module, outputs, dict(spec.arch_kwargs), "random init", spec.preprocess)


def _from_weights_file(spec: registry.ModelSpec, path: Path, num_classes: int | None) -> LoadedModel:
    """`--model ARCH --weights FILE`: a plain state_dict, or a checkpoint of that architecture."""
    from visiontool import checkpoint, weights

    if not path.is_file():
        raise UsageError(f"weights file not found: {path}")
    meta = checkpoint.read_meta(path)
    if meta is not None:
        if meta["arch"] != spec.arch:
            raise UsageError(f"{path} is a {meta['arch']} checkpoint, not {spec.arch}: pass it as --model {path}")
        return _from_checkpoint(path, num_classes, name=path.stem)
    state_dict = weights.load_state_dict(path)
    kwargs = {**spec.arch_kwargs, **_kwargs_from_state_dict(spec.arch, state_dict)}
    module, outputs = _assemble(spec.arch, state_dict, path, kwargs, num_classes, default=spec.num_classes)
    preprocess = spec.preprocess
    channels = kwargs.get("in_channels", preprocess.channels)
    if channels != preprocess.channels:  # an RGB LeNet-5: same scaling, per channel
        preprocess = replace(preprocess, channels=channels, mean=preprocess.mean[:1] * channels,
                             std=preprocess.std[:1] * channels)
    return _finish(spec, module, outputs, kwargs, str(path), preprocess)


def _from_torchvision(spec, choice: str, offline: bool, quiet: bool, num_classes: int | None) -> LoadedModel:
    from torchvision.models import get_model_weights

    from visiontool import weights

    key = choice.upper()
    if key != "DEFAULT" and key not in spec.weights:
        raise UsageError(
            f"unknown weights {choice!r} for {spec.name}; known: DEFAULT, {', '.join(spec.weights)}, none, or a file"
        )
    chosen = get_model_weights(spec.arch)[spec.default_weights if key == "DEFAULT" else key]
    path = weights.resolve(spec.arch, chosen.name, offline=offline, quiet=quiet)
    state_dict = weights.load_state_dict(path)
    kwargs = _pretrained_kwargs(spec.arch, chosen)
    module, outputs = _assemble(spec.arch, state_dict, path, kwargs, num_classes, default=spec.num_classes)
    categories = list(chosen.meta["categories"])
    labels = categories if outputs == len(categories) else _numbered(outputs)
    info = ModelInfo(
        arch=spec.arch,
        task=spec.task,
        labels=labels,
        preprocess=registry.preprocess_from_weights(chosen),
        weights_source=f"{spec.arch}.{chosen.name} ({path})",
        extra={"name": spec.name, "num_classes": outputs, "arch_kwargs": kwargs},
    )
    return LoadedModel(registry.for_inference(spec.arch, module).eval(), info)


def _finish(spec, module, outputs: int, kwargs: dict, source: str, preprocess) -> LoadedModel:
    # A 1000-way head is an ImageNet head: name its classes as torchvision does.
    labels = list(spec.labels) if outputs == len(spec.labels) else _numbered(outputs)
    info = ModelInfo(
        arch=spec.arch,
        task=spec.task,
        labels=labels,
        preprocess=preprocess,
        weights_source=source,
        extra={"name": spec.name, "num_classes": outputs, "arch_kwargs": kwargs},
    )
    return LoadedModel(registry.for_inference(spec.arch, module).eval(), info)


def _numbered(n: int) -> list[str]:
    return [f"class_{i}" for i in range(n)]


def _pretrained_kwargs(arch: str, chosen) -> dict:
    """Constructor arguments the official weights were trained with (as torchvision's builders set)."""
    kwargs: dict = {}
    if arch in ("googlenet", "inception_v3"):
        kwargs["transform_input"] = True  # these weights expect inputs re-normalised inside the model
    if arch.startswith("vit_") and chosen.meta["min_size"][0] != 224:
        kwargs["image_size"] = chosen.meta["min_size"][0]  # SWAG weights: 384/518 px position embeddings
    return kwargs


def _kwargs_from_state_dict(arch: str, state_dict: dict) -> dict:
    """Architecture arguments a plain state_dict reveals by its shapes."""
    first = state_dict.get("features.0.weight")
    if arch == registry.LENET5 and first is not None and first.ndim == 4:
        return {"in_channels": int(first.shape[1])}
    return {}


def _assemble(arch: str, state_dict: dict, source, kwargs: dict, num_classes: int | None, default: int):
    """Build `arch` and fill it from `state_dict`; returns (module, number of outputs)."""
    head = _head_keys(arch, json.dumps(kwargs, sort_keys=True))
    sizes = {int(state_dict[k].shape[0]) for k in head if k in state_dict}
    in_file = sizes.pop() if len(sizes) == 1 else default
    outputs = num_classes or in_file
    module = registry.build(arch, outputs, **kwargs)
    skip = head if outputs != in_file else frozenset()
    _load_into(module, _normalise(arch, state_dict), arch, source, skip)
    return module, outputs


@functools.lru_cache(maxsize=None)
def _head_keys(arch: str, kwargs_json: str) -> frozenset[str]:
    """Keys of the classifier head: those whose shapes change with num_classes (built on "meta")."""
    import torch

    kwargs = json.loads(kwargs_json)
    with torch.device("meta"):
        a = registry.build(arch, 1000, **kwargs).state_dict()
        b = registry.build(arch, 7, **kwargs).state_dict()
    return frozenset(k for k in a if a[k].shape != b[k].shape)


def _normalise(arch: str, state_dict: dict) -> dict:
    """Older torchvision layouts -> today's module names."""
    out = OrderedDict()
    for key, value in state_dict.items():
        if arch.startswith("densenet"):  # "denselayer1.norm.1.weight" -> "denselayer1.norm1.weight"
            key = re.sub(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.", key)
        out[key] = value
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None and not arch.startswith("densenet"):
        out._metadata = metadata  # layer versions (BatchNorm, MNASNet) travel with the tensors
    return out


def _load_into(module: "nn.Module", state_dict: OrderedDict, arch: str, source, skip: frozenset[str]) -> None:
    expected = module.state_dict()
    if getattr(state_dict, "_metadata", None) is None:
        state_dict._metadata = expected._metadata  # a file in today's layout (e.g. safetensors)
    for key in expected:  # counters only used in training; older files lack them
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = expected[key]
    for key in skip:
        state_dict.pop(key, None)
    for key in [k for k in state_dict if k.startswith(_AUX_PREFIXES) and k not in expected]:
        del state_dict[key]
    missing = [k for k in expected if k not in state_dict and k not in skip]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        example = "; ".join(
            f"{what} e.g. {keys[0]}" for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys
        )
        raise WeightsError(
            f"{source} does not fit {arch}: {len(missing)} keys missing, {len(unexpected)} unexpected ({example})"
        )
    for key, value in state_dict.items():
        if value.shape != expected[key].shape:
            raise WeightsError(
                f"{source} does not fit {arch}: {key} is {list(value.shape)} in the file "
                f"but {list(expected[key].shape)} in the model"
            )
    module.load_state_dict(state_dict, strict=not skip)
