"""The one lookup for model names: name -> ModelSpec (task, architecture, weights, preprocessing).

Three kinds of entries:
- every torchvision classification, detection and semantic segmentation architecture, by its
  torchvision name; labels and preprocessing come from its DEFAULT weights, exactly as
  torchvision describes them;
- `lenet5`, the project's own architecture (random init);
- shipped models: each visiontool checkpoint (`*.safetensors`) in the `visiontool.shipped`
  package folder (the repository's weights/), named by its file stem, e.g. `lenet5-mnist`.

Listing reads facts torchvision already has (weights meta, transforms); it never builds 80
networks. Where a count is not written down, `param_count` builds the network on the "meta"
device, which allocates no memory and takes milliseconds.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from visiontool.errors import UsageError, VisiontoolError
from visiontool.preprocess import Preprocess

if TYPE_CHECKING:
    from torch import nn

TASK_CLASSIFY = "classify"
TASK_DETECT = "detect"
TASK_SEGMENT = "segment"
TASK_STYLIZE = "stylize"
LENET5 = "lenet5"
# LeNet-5 sees a 32x32 grayscale field; inputs are scaled to [-1, 1].
LENET5_PREPROCESS = Preprocess(crop=32, resize=32, mean=(0.5,), std=(0.5,), channels=1)

# torchvision's detectors resize and normalize inside the model (GeneralizedRCNNTransform and
# kin): they get the image as it is, scaled to [0, 1].
DETECTOR_PREPROCESS = Preprocess(crop=0, resize=0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fit="none")

# Style networks paint images of any size in [0, 1]; 256 is the side they train at (and the
# example an export traces).
STYLENET_PREPROCESS = Preprocess(crop=256, resize=256, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fit="none")

# Constructor defaults that differ from torchvision's for these two: no auxiliary heads
# (inference and our training use the main head only) and an explicit init (silences the
# "default init will change" warning).
_ARCH_DEFAULTS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what users type: "resnet18", "lenet5", "lenet5-mnist"
    task: str  # "classify"
    arch: str  # architecture it builds: a torchvision name or "lenet5"
    num_params: int | None  # parameter count when written down (weights meta); else param_count()
    input_size: int  # side of the square input the model expects
    preprocess: Preprocess  # how images become its input
    labels: tuple[str, ...]  # class names of its default weights; () for random init
    weights: tuple[str, ...] = ()  # torchvision weights names (IMAGENET1K_V1, ...)
    default_weights: str | None = None  # what DEFAULT means; None: no pretrained weights
    shipped_file: Path | None = None  # project model: its checkpoint inside the package
    description: str = ""
    num_classes: int = 1000  # outputs of the default weights / checkpoint
    arch_kwargs: dict = field(default_factory=dict, compare=False, hash=False)


@functools.lru_cache(maxsize=None)
def _torchvision_specs() -> tuple[ModelSpec, ...]:
    import torchvision
    from torchvision.models import get_model_weights, list_models

    specs = []
    for task, module in _torchvision_modules().items():
        for name in list_models(module=module):
            enum = get_model_weights(name)
            default = enum.DEFAULT
            preprocess = DETECTOR_PREPROCESS if task == TASK_DETECT else preprocess_from_weights(default)
            specs.append(
                ModelSpec(
                    name=name,
                    task=task,
                    arch=name,
                    num_params=default.meta.get("num_params"),
                    input_size=preprocess.crop,  # 0 for detectors: see input_size()
                    preprocess=preprocess,
                    labels=tuple(default.meta["categories"]),
                    weights=tuple(w.name for w in enum),
                    default_weights=default.name,
                    description=f"torchvision {name}",
                    num_classes=len(default.meta["categories"]),
                )
            )
    return tuple(specs)


def input_size(spec: ModelSpec) -> int:
    """The side the model sees; for torchvision's detectors, the shorter side they resize images
    to inside themselves (read from the network built on the meta device: no memory, no weights)."""
    if spec.input_size:
        return spec.input_size
    import torch

    with torch.device("meta"):
        module = build(spec.arch, spec.num_classes, **spec.arch_kwargs)
    return int(module.transform.min_size[-1])


def preprocess_from_weights(weights) -> Preprocess:
    """The Preprocess equal to `weights.transforms()`: torchvision's ImageClassification (resize,
    center crop) or, for a transform without a crop, SemanticSegmentation (the shorter side
    resized, no crop)."""
    t = weights.transforms()
    resize = int(t.resize_size[0])
    crop = getattr(t, "crop_size", None)
    return Preprocess(
        crop=int(crop[0]) if crop else resize,
        resize=resize,
        mean=tuple(float(m) for m in t.mean),
        std=tuple(float(s) for s in t.std),
        interpolation=t.interpolation.value,
        fit="crop" if crop else "shorter",
    )


@dataclass(frozen=True)
class OwnArch:
    """An architecture of the project's own: where its class lives and how it sees images."""

    task: str
    builder: str  # "module:Class", called as Class(num_classes=..., **arch_kwargs)
    preprocess: Preprocess
    num_classes: int
    description: str


OWN_ARCHS = {
    LENET5: OwnArch(TASK_CLASSIFY, "visiontool.models.lenet:LeNet5", LENET5_PREPROCESS, 10,
                    "LeNet-5 (LeCun et al. 1998), random init; train it with `visiontool train`"),
    "griddet": OwnArch(TASK_DETECT, "visiontool.models.griddet:GridDet",
                       Preprocess(crop=320, resize=320, fit="letterbox"), 80,
                       "GridDet, a small anchor-free detector for the CPU, random init; "
                       "train it with `visiontool train --task detect`"),
    "unet": OwnArch(TASK_SEGMENT, "visiontool.models.unet:UNet",
                    Preprocess(crop=160, resize=160, fit="none"), 21,
                    "UNet, a small U-Net for semantic segmentation on the CPU, random init; "
                    "train it with `visiontool train --task segment`"),
    "stylenet": OwnArch(TASK_STYLIZE, "visiontool.models.stylenet:StyleNet", STYLENET_PREPROCESS, 3,
                        "StyleNet, Johnson et al. 2016's feed-forward style transfer network, random init; "
                        "train it with `visiontool train --task stylize`"),
}


def _own_specs() -> list[ModelSpec]:
    return [ModelSpec(name=name, task=a.task, arch=name, num_params=None, input_size=a.preprocess.crop,
                      preprocess=a.preprocess, labels=(), description=a.description, num_classes=a.num_classes)
            for name, a in OWN_ARCHS.items()]


def _shipped_specs() -> list[ModelSpec]:
    from visiontool import checkpoint, weights

    folder = weights.shipped_dir()
    if folder is None or not folder.is_dir():
        return []

    specs = []
    for path in sorted(folder.glob("*.safetensors")):
        meta = checkpoint.read_meta(path)
        if meta is None:  # some other safetensors file (e.g. a mirrored torchvision weight)
            continue
        preprocess = Preprocess.from_dict(meta["preprocess"])
        metrics = (meta.get("train") or {}).get("metrics") or {}
        score = next((f", {k} {v:.4g}" for k, v in metrics.items() if "top1" in k.replace("-", "")), "")
        specs.append(
            ModelSpec(
                name=path.stem,
                task=meta.get("task", TASK_CLASSIFY),
                arch=meta["arch"],
                num_params=None,
                input_size=preprocess.crop,
                preprocess=preprocess,
                labels=tuple(meta["labels"]),
                shipped_file=path,
                description=meta.get("description") or f"{meta['arch']} shipped with visiontool{score}",
                num_classes=int(meta["num_classes"]),
                arch_kwargs=dict(meta.get("arch_kwargs") or {}),
            )
        )
    return specs


def _all_specs() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for spec in [*_torchvision_specs(), *_own_specs(), *_shipped_specs()]:
        if spec.name in specs:  # a shipped file must not shadow an architecture
            raise VisiontoolError(f"two models are named {spec.name!r}: rename {spec.shipped_file}")
        specs[spec.name] = spec
    return specs


def list_specs(task: str | None = None, pattern: str | None = None) -> list[ModelSpec]:
    """Entries sorted by name; `pattern`, in any case, is a glob when it has * ? or [
    (`resnet*`), else a prefix (`lenet`: lenet5, not googlenet) or a whole word of the name
    (`fpn`: fasterrcnn_resnet50_fpn; words are split at _ - .)."""
    specs = sorted(_all_specs().values(), key=lambda s: s.name)
    if task:
        specs = [s for s in specs if s.task == task]
    if pattern:
        p = pattern.lower()
        glob = any(ch in p for ch in "*?[")
        specs = [s for s in specs if (fnmatch.fnmatchcase(s.name, p) if glob else _prefix_or_word(s.name, p))]
    return specs


def _prefix_or_word(name: str, p: str) -> bool:
    return name.startswith(p) or p in re.split(r"[_.\-]", name)


def get_spec(name: str) -> ModelSpec:
    specs = _all_specs()
    if name in specs:
        return specs[name]
    raise UsageError(f"unknown model {name!r}{_suggest(name, specs)}; `visiontool models` lists them")


def _suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name.lower(), list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def build(arch: str, num_classes: int, **arch_kwargs) -> "nn.Module":
    """A freshly initialised network: torchvision's `get_model` or one of the project's own."""
    if arch in OWN_ARCHS:
        import importlib

        module, name = OWN_ARCHS[arch].builder.split(":")
        return getattr(importlib.import_module(module), name)(num_classes=num_classes, **arch_kwargs)
    tv_names = _torchvision_names()
    if arch not in tv_names:
        raise UsageError(f"unknown architecture {arch!r}{_suggest(arch, sorted(tv_names | set(OWN_ARCHS)))}")
    from torchvision.models import get_model

    kwargs = {**_ARCH_DEFAULTS.get(arch, {}), **arch_kwargs}
    if arch not in _torchvision_names(TASK_CLASSIFY):  # never the ImageNet backbone download its builder would start
        kwargs.setdefault("weights_backbone", None)
    return get_model(arch, weights=None, num_classes=num_classes, **kwargs)


def _torchvision_modules() -> dict:
    """task -> the torchvision.models module whose architectures serve it."""
    import torchvision

    return {TASK_CLASSIFY: torchvision.models, TASK_DETECT: torchvision.models.detection,
            TASK_SEGMENT: torchvision.models.segmentation}


@functools.lru_cache(maxsize=None)
def _torchvision_names(task: str | None = None) -> frozenset[str]:
    from torchvision.models import list_models

    return frozenset(n for t, m in _torchvision_modules().items() if task in (None, t) for n in list_models(module=m))


def task_of(arch: str) -> str | None:
    """The task an architecture serves (None: unknown to the registry)."""
    if arch in OWN_ARCHS:
        return OWN_ARCHS[arch].task
    return next((t for t in _torchvision_modules() if arch in _torchvision_names(t)), None)


def for_inference(arch: str, module: "nn.Module", scales: tuple[float, ...] = (1.0,),
                  guided_filter: int = 0) -> "nn.Module":
    """The module as the backends run it: torchvision's detectors answer with a list of dicts,
    which an adapter turns into padded tensors (one output convention for every detector);
    every segmentation model answers with logits at input resolution through its adapter, run
    at `scales` of its input, its class probabilities through a guided filter of that radius (0:
    none)."""
    if arch in _torchvision_names(TASK_DETECT):
        from visiontool.models.detection import TorchvisionDetector

        return TorchvisionDetector(module)
    if task_of(arch) == TASK_SEGMENT:
        from visiontool.models.segmentation import SegmentationLogits

        return SegmentationLogits(module, scales, guided_filter)
    return module


def count_params(arch: str, num_classes: int, **arch_kwargs) -> int:
    """Parameters of `arch`, counted on the meta device (no memory, no real init)."""
    import torch

    with torch.device("meta"):
        module = build(arch, num_classes, **arch_kwargs)
    return sum(p.numel() for p in module.parameters())


def param_count(spec: ModelSpec) -> int:
    if spec.num_params is not None:
        return spec.num_params
    return count_params(spec.arch, spec.num_classes, **spec.arch_kwargs)


def split_weights_name(ref: str) -> tuple[ModelSpec, str | None]:
    """"resnet18" -> (spec, default weights); "resnet18.IMAGENET1K_V2" -> (spec, that name);
    a shipped model -> (spec, None): its weights are its checkpoint."""
    specs = _all_specs()
    name, _, wanted = ref.partition(".") if ref not in specs else (ref, "", "")
    spec = get_spec(name)
    if spec.shipped_file is not None:
        if wanted:
            raise UsageError(f"{spec.name} is a shipped model with one set of weights; use {spec.name}")
        return spec, None
    if spec.default_weights is None:
        raise UsageError(f"{spec.name} has no published weights (random init only)")
    key = (wanted or "DEFAULT").upper()
    if key == "DEFAULT":
        return spec, spec.default_weights
    if key not in spec.weights:
        raise UsageError(f"unknown weights {wanted!r} for {spec.name}; known: {', '.join(spec.weights)}")
    return spec, key
