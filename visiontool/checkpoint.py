"""visiontool checkpoints: one .safetensors file holding the tensors and, under the metadata key
"visiontool", a JSON object describing the model (see README, "Checkpoint files"):

    {"format": 1, "arch": ..., "task": "classify", "num_classes": ..., "labels": [...],
     "preprocess": Preprocess.to_dict(), "arch_kwargs": {...},
     "train": {"command": ..., "options": {...}, "metrics": {...}}}

read_meta parses the safetensors header by hand so that torch-free code (the ONNX path,
`visiontool models`) can inspect a checkpoint; save and load import torch when called.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visiontool.errors import UsageError, WeightsError, one_line
from visiontool.fsutil import atomic_write

if TYPE_CHECKING:
    import torch

META_KEY = "visiontool"
FORMAT_VERSION = 1
# A real header is a few hundred bytes per tensor; anything near this is not a safetensors file.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def save(path: str | os.PathLike, state_dict: dict[str, "torch.Tensor"], meta: dict[str, Any]) -> Path:
    """Write tensors and `meta` to `path` atomically (a temp file next to it, then a rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    full_meta = {"format": FORMAT_VERSION, **meta}
    header_meta = {META_KEY: json.dumps(full_meta)}
    tensors = _storable(state_dict)
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=header_meta)
    return path


def load(path: str | os.PathLike) -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
    """(state_dict on the CPU, metadata) of a visiontool checkpoint; WeightsError otherwise."""
    path = Path(path)
    meta = read_meta(path)
    if meta is None:
        raise WeightsError(f"{path} is not a visiontool checkpoint (no '{META_KEY}' metadata in a safetensors file)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state_dict = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"checkpoint {path} is corrupt or truncated: {one_line(err)}") from None
    return state_dict, meta


def average(paths: list[Path]) -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
    """The uniform mean of checkpoints of one model, and the first one's metadata with, under
    "train", where the weights came from: each input's file, sha256 and training command.

    Floating-point tensors (weights, batch-norm statistics) are averaged; integer ones (batch-norm
    step counters) are the first checkpoint's. A mean of weights is only a model when the
    networks share their start: a fine-tune and the model it started from, or epochs of one run.
    """
    import hashlib

    import torch

    def source(path, its_meta) -> dict:
        return {"file": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                "command": (its_meta.get("train") or {}).get("command")}

    first, meta = load(paths[0])
    sums = {name: t.to(torch.float64) if t.is_floating_point() else t for name, t in first.items()}
    sources = [source(paths[0], meta)]
    for path in paths[1:]:
        tensors, other = load(path)
        sources.append(source(path, other))
        for field in ("arch", "arch_kwargs", "task", "labels"):
            if other.get(field) != meta.get(field):
                raise UsageError(f"{path} and {paths[0]} differ in {field} ({other.get(field)!r} vs "
                                 f"{meta.get(field)!r}): only checkpoints of one model can be averaged")
        norm = ("mean", "std", "channels")
        if [other["preprocess"].get(k) for k in norm] != [meta["preprocess"].get(k) for k in norm]:
            raise UsageError(f"{path} and {paths[0]} normalize their input differently: only checkpoints "
                             "of one model can be averaged")
        for name in sums.keys() | tensors.keys():
            if name not in sums or name not in tensors or tensors[name].shape != sums[name].shape:
                raise UsageError(f"{path} and {paths[0]} differ in tensor {name}: only checkpoints of one model "
                                 "can be averaged")
            if sums[name].is_floating_point():
                sums[name] += tensors[name]
    mean = {name: (t / len(paths)).to(first[name].dtype) if t.is_floating_point() else t for name, t in sums.items()}
    return mean, {**meta, "train": {"averaged": sources}}


def read_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint's metadata, or None when `path` is not a visiontool checkpoint.

    Raises WeightsError when the file cannot be read at all, or claims to be a checkpoint but its
    metadata is broken or from a newer format.
    """
    path = Path(path)
    header = _read_header(path)
    if header is None:
        return None
    file_meta = header.get("__metadata__")
    if not isinstance(file_meta, dict) or META_KEY not in file_meta:
        return None
    try:
        meta = json.loads(file_meta[META_KEY])
    except (TypeError, json.JSONDecodeError):
        raise WeightsError(f"checkpoint {path} has unreadable '{META_KEY}' metadata") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"checkpoint {path} has unreadable '{META_KEY}' metadata")
    version = meta.get("format")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise WeightsError(
            f"checkpoint {path} has format {version!r}; this visiontool reads format {FORMAT_VERSION}"
        )
    return meta


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a readable safetensors file (its header), or None when its header reads."""
    path = Path(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
    if len(prefix) < 8:
        return "shorter than a header"
    length, size = int.from_bytes(prefix, "little"), path.stat().st_size
    if length > size - 8:
        return f"its header claims {length:,} bytes, the file holds {size - 8:,}"
    if length > _MAX_HEADER_BYTES:
        return f"its header claims {length:,} bytes, more than the {_MAX_HEADER_BYTES:,} any model needs"
    return None if _read_header(path) is not None else "its header is not a JSON object"


def _read_header(path: Path) -> dict | None:
    """The JSON header of a safetensors file: an 8-byte little-endian length, then JSON."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                return None
            length = int.from_bytes(prefix, "little")
            if length < 2 or length > min(size - 8, _MAX_HEADER_BYTES):
                return None
            raw = f.read(length)
    except FileNotFoundError:
        raise WeightsError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise WeightsError(f"{path} is a folder, not a checkpoint file") from None
    except OSError as err:
        raise WeightsError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return header if isinstance(header, dict) else None


def _storable(state_dict: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """CPU, contiguous tensors with no two sharing memory (safetensors refuses shared storage)."""
    seen: set[int] = set()
    out = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage()
        whole = storage.nbytes() == tensor.numel() * tensor.element_size()
        if tensor.numel() and (storage.data_ptr() in seen or not whole):
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out
