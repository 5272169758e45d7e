"""`visiontool export`: write a model as a self-describing, verified ONNX file.

The file carries the class names, preprocessing and output meaning in its metadata, so
`visiontool classify IMG --model FILE.onnx` needs nothing else (and no PyTorch).
Verification (on by default) compares onnxruntime with PyTorch and keeps no file on failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from visiontool.cli import options as opt
from visiontool.errors import UsageError

EXAMPLES = [
    "visiontool export resnet18                  writes resnet18.onnx here",
    "visiontool export runs/digits/best.safetensors --int8 --calibration data/val",
    "visiontool export resnet50 --half --output resnet50-fp16.onnx",
    "visiontool export mobilenet_v3_small --batch 8 --image-size 160 --simplify",
]


def parse_batch(value: str) -> int | None:
    if value.lower() == "dynamic":
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise UsageError(f"--batch {value}: use dynamic or a positive number")


def export(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Registry name, checkpoint, or ARCH with --weights FILE.")],
    weights: opt.Weights = None,
    output: opt.Output = None,
    opset: Annotated[Optional[int], typer.Option(min=7, metavar="N", show_default=False, help="ONNX opset (default: the exporter's).")] = None,
    batch: Annotated[str, typer.Option(metavar="dynamic|N", help="dynamic, or a fixed batch size N.")] = "dynamic",
    image_size: opt.ImageSize = None,
    dynamic_size: Annotated[bool, typer.Option("--dynamic-size", help="Height and width dynamic as well.")] = False,
    half: Annotated[bool, typer.Option("--half", help="fp16 weights and input (for GPU providers).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="int8 quantization: dynamic, or static with --calibration.")] = False,
    calibration: opt.Calibration = None,
    simplify: Annotated[bool, typer.Option("--simplify", help="Simplify the graph with onnxslim.")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Compare with PyTorch before keeping the file.")] = True,
    min_agreement: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, metavar="SHARE", show_default=False, help="fp16/int8: least top-1 agreement with PyTorch fp32 (default 0.99 fp16, 0.90 int8).")] = None,
    device: opt.Device = "auto",
    as_json: opt.Json = False,
    offline: opt.Offline = False,
    quiet: opt.Quiet = False,
) -> None:
    """Export MODEL to ONNX with its labels and preprocessing in the file; verify against PyTorch."""
    from visiontool import progress
    from visiontool.export import ExportOptions
    from visiontool.export import export as run_export

    options = ExportOptions(
        model=model, weights=weights, output=str(output) if output else None, opset=opset,
        batch=parse_batch(batch), image_size=image_size, dynamic_size=dynamic_size, half=half,
        int8=int8, calibration=str(calibration) if calibration else None, simplify=simplify,
        verify=verify, min_agreement=min_agreement, device=device, offline=offline, quiet=quiet,
    )
    result = run_export(options, log=lambda message: progress.info(message, quiet=quiet))
    if as_json:
        print(json.dumps(result.to_dict()))
    elif not quiet:
        progress.info(f"wrote {result.path}{', replacing the file that was there' if result.replaced else ''} "
                      f"({result.size_bytes / 1e6:.1f} MB, {result.precision}, "
                      f"opset {result.opset}) in {result.seconds:.1f} s"
                      + ("" if result.verification else "; not verified (--no-verify)"))
