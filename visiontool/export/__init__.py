"""ONNX export: any model argument -> a self-describing, verified .onnx file.

    from visiontool.export import ExportOptions, export
    result = export(ExportOptions(model="resnet18", output="resnet18.onnx"))

Steps: load the model (visiontool.models.loader), export the graph (graph.py), optionally
simplify / convert to fp16 / quantize to int8 (transform.py), store the metadata, write to a
temp file next to the output, verify it against PyTorch (verify.py), and only then rename it
into place: a file that fails verification is never left behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from visiontool.errors import UsageError
from visiontool.export.graph import ExportError
from visiontool.export.verify import Verification

__all__ = ["ExportError", "ExportOptions", "ExportResult", "Verification", "export"]

EXAMPLE_SIDE = 320  # the traced example's side for models that take any size


@dataclass
class ExportOptions:
    model: str  # anything --model accepts, except an .onnx file
    weights: str | None = None  # as --weights
    output: str | None = None  # FILE.onnx; default: next to a checkpoint with its stem, or <name>.onnx here
    opset: int | None = None  # None: the exporter's default
    batch: int | None = None  # None: dynamic batch axis; N: fixed batch N
    image_size: int | None = None  # crop side; None: the model's own (resize scales along)
    dynamic_size: bool = False  # height and width axes dynamic as well
    half: bool = False  # fp16 weights and input (for GPU providers)
    int8: bool = False  # onnxruntime quantization: dynamic, or static with `calibration`
    calibration: str | None = None  # folder of images for static int8 (QDQ)
    simplify: bool = False  # onnxslim
    verify: bool = True  # compare with PyTorch before keeping the file
    min_agreement: float | None = None  # fp16/int8 threshold; None: verify.MIN_AGREEMENT
    device: str = "cpu"  # where verification runs (PyTorch and onnxruntime)
    offline: bool = False
    quiet: bool = False


@dataclass
class ExportResult:
    path: Path
    exporter: str  # "dynamo" or "torchscript"
    fallback_reason: str  # why the TorchScript exporter was used ("" if it was not)
    opset: int
    precision: str  # fp32, fp16, int8-dynamic, int8-static
    size_bytes: int
    seconds: float
    verification: Verification | None
    notes: list[str] = field(default_factory=list)
    replaced: bool = False  # a file of that name was there before, and is now this one

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("exporter", "fallback_reason", "opset", "precision", "size_bytes", "seconds",
                                           "notes", "replaced")}
        return {"path": str(self.path), **d, "verification": self.verification.to_dict() if self.verification else None}


def _check(o: ExportOptions) -> None:
    if Path(o.model).suffix.lower() == ".onnx":
        raise UsageError(f"{o.model} is already an ONNX file")
    if o.output is not None and Path(o.output).suffix.lower() != ".onnx":
        raise UsageError(f"--output {o.output}: the file name must end in .onnx")
    if o.half and o.int8:
        raise UsageError("--half and --int8 exclude each other: pick one precision")
    if o.calibration and not o.int8:
        raise UsageError("--calibration calibrates int8 quantization: add --int8")
    if o.calibration and not Path(o.calibration).is_dir():  # said now, not after the export
        raise UsageError(f"--calibration {o.calibration}: not a folder of images")
    if o.batch is not None and o.batch < 1:
        raise UsageError(f"--batch {o.batch}: use dynamic or a positive number")
    if o.image_size is not None and o.image_size < 8:
        raise UsageError(f"--image-size {o.image_size}: too small (8 or more)")
    if o.simplify:
        from visiontool.export.transform import require_onnxslim

        require_onnxslim()


def precision_of(o: ExportOptions) -> str:
    if o.int8:
        return "int8-static" if o.calibration else "int8-dynamic"
    return "fp16" if o.half else "fp32"


def default_output(o: ExportOptions, name: str) -> Path:
    """A model file's neighbour with its stem (runs/x/best.safetensors -> runs/x/best.onnx);
    for a registry name, <name>.onnx in the working folder. -fp16 / -int8 mark the precision."""
    suffix = {"fp32": "", "fp16": "-fp16"}.get(precision_of(o), "-int8")
    model = Path(o.model)
    if model.is_file():
        return model.with_name(f"{model.stem}{suffix}.onnx")
    return Path(f"{name}{suffix}.onnx")


def export(o: ExportOptions, log: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Write the verified .onnx file; ExportError (nothing written) when it cannot be done."""
    _check(o)
    start = time.perf_counter()
    from visiontool.export import graph, transform, verify
    from visiontool.fsutil import atomic_write
    from visiontool.models.loader import load_model

    from visiontool.tasks import create

    loaded = load_model(o.model, o.weights, offline=o.offline, quiet=o.quiet)
    module, info = loaded.module.eval(), loaded.info
    if o.image_size is not None:
        info = replace(info, preprocess=info.preprocess.at_size(o.image_size))
    name = str(info.extra.get("name") or Path(o.model).stem)
    out = Path(o.output) if o.output else default_output(o, name)
    precision = precision_of(o)
    p = info.preprocess
    task = create(info.task)
    if precision not in task.export_precisions:
        raise UsageError(f"{name} is a {info.task} model: it exports as {', '.join(task.export_precisions)} only")
    batch = task.export_batch(info, o.batch)
    if batch != o.batch:
        log(f"{name} exports with a fixed batch of {batch} (the graph takes one image of any size)")
    dynamic_size = o.dynamic_size or not p.square  # the input's shape follows the image's
    outputs = task.export_outputs(info)

    g = graph.to_onnx(module, p.channels, p.crop or EXAMPLE_SIDE, batch, dynamic_size, o.opset, name, list(outputs))
    log(f"exported {name} with the {g.exporter} exporter"
        + (f" (torch.export failed: {g.fallback_reason})" if g.fallback_reason else ""))
    model, notes = g.model, []
    if o.simplify:
        model = transform.simplify(model)
        log("simplified with onnxslim")
    # Verification images: generated ones, plus real ones when a calibration folder is given.
    images = verify.synthetic_images()
    arrays = [p(img) for img in images]
    other = None
    if dynamic_size and p.fit != "none":  # a second input size proves the dynamic axes really work
        bigger = p.at_size(p.crop + 32)
        other = [bigger(img) for img in images[:2]]
    if o.int8 and o.calibration:
        real = transform.decoded(transform.calibration_paths(o.calibration), p)
        model = transform.to_int8_static(model, real, graph.INPUT_NAME, o.batch)
        arrays += transform.spread(real, verify.SYNTHETIC_IMAGES)
        notes.append(f"int8 static (QDQ, per-channel) calibrated on {len(real)} images from {o.calibration}")
    elif o.int8:
        model = transform.to_int8_dynamic(model)
        notes.append("int8 dynamic: weights int8, activations quantized at run time (small file; on CPU "
                     "its convolutions can run slower than fp32: for speed, calibrate with --calibration DIR)")
    elif o.half:
        model = transform.to_fp16(model)
        notes.append("fp16 weights and input: meant for GPU providers (CPU runs it through casts)")
    for note in notes:
        log(note)
    input_dtype = "float16" if o.half else "float32"
    graph.attach(model, graph.describe(info, precision, input_dtype, batch, dynamic_size,
                                       g.exporter, graph.opset_of(model), outputs))

    import onnx

    check = None
    replaced = out.exists()
    with atomic_write(out) as tmp:
        onnx.save_model(model, str(tmp))
        if o.verify:
            base = precision.split("-")[0]
            check = verify.verify(tmp, module, info, arrays, base, batch, o.device, o.min_agreement, other, task)
            log(check.summary())
            if not check.passed:
                raise ExportError(f"{out} not written: onnxruntime disagrees with PyTorch "
                                  f"(max |diff| {check.max_abs_diff:.3g}, agreement "
                                  f"{check.top1_agreement:.1%}; needed {check.criterion})")
        size = tmp.stat().st_size
    return ExportResult(out, g.exporter, g.fallback_reason, graph.opset_of(model), precision, size,
                        round(time.perf_counter() - start, 3), check, notes, replaced)
