"""Exported copies of models for `--backend onnx`: made once (announced), then reused.

Folder: $VISIONTOOL_CACHE/onnx, default ~/.cache/visiontool/onnx. A registry model is keyed by
its name and weights; a file (checkpoint or --weights FILE) also by its absolute path, size and
modification time, so retraining into the same path makes a fresh export. Looking up a copy
that exists imports no torch.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("VISIONTOOL_CACHE") or Path.home() / ".cache" / "visiontool"
    return Path(root) / "onnx"


def _fingerprint(arg: str | None) -> str:
    if arg is None or not Path(arg).is_file():
        return ""
    st = Path(arg).stat()
    return f"{Path(arg).resolve()}:{st.st_size}:{st.st_mtime_ns}"


def cached_path(model: str, weights: str | None, variant: str = "fp32") -> Path:
    """Where the `variant` ("fp32", "fp16", "int8-dynamic", "int8-static") export of this
    model argument lives."""
    files = _fingerprint(model) + _fingerprint(weights)
    stem = Path(model).stem if files and Path(model).is_file() else model
    label = "-".join(x for x in (stem, Path(weights).stem if weights else "DEFAULT", variant))
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
    if files:
        label += "-" + hashlib.sha256(files.encode()).hexdigest()[:12]
    return cache_dir() / f"{label}.onnx"


def cached_onnx(model: str, weights: str | None = None, offline: bool = False, quiet: bool = False,
                variant: str = "fp32", image_size: int | None = None) -> Path:
    """The cached export of `model` ("fp32", "fp16" or "int8-dynamic"; at `image_size`, default
    the model's own), exported and verified on first use. fp16/int8 copies are kept whatever
    their top-1 agreement: they are made for speed measurements, not chosen by the user."""
    path = cached_path(model, weights, variant + (f"-{image_size}px" if image_size else ""))
    if path.is_file():
        return path
    from visiontool import progress
    from visiontool.export import ExportOptions, export

    # Never silent, even with --quiet: a file of this size appears in the user's cache.
    progress.info(f"onnx backend: exporting {model} to {path} (once; later runs reuse it)")
    export(ExportOptions(model=model, weights=weights, output=str(path), image_size=image_size, half=variant == "fp16",
                         int8=variant == "int8-dynamic", offline=offline, quiet=quiet, min_agreement=0.0))
    return path


def static_int8_copy(fp32_path: Path, arrays, out: Path) -> Path:
    """A QDQ int8 copy of an exported fp32 file, calibrated on `arrays` (preprocessed images),
    with the same metadata."""
    import json

    import onnx

    from visiontool.export import graph, transform
    from visiontool.fsutil import atomic_write

    fp32 = onnx.load(str(fp32_path))
    meta = json.loads(next(p.value for p in fp32.metadata_props if p.key == graph.METADATA_KEY))
    int8 = transform.to_int8_static(fp32, arrays, graph.INPUT_NAME, None)
    graph.attach(int8, {**meta, "precision": "int8-static"})
    with atomic_write(out) as tmp:
        onnx.save_model(int8, str(tmp))
    return out
