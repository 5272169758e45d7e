"""`visiontool benchmark`: throughput, latency, parameters, GFLOPs and memory per backend.

Backends: torch, onnx (fp32), onnx-fp16, onnx-int8 (static QDQ, calibrated on --calibration
images or generated ones), onnx-int8-dynamic. ONNX copies come from the export cache
($VISIONTOOL_CACHE/onnx), made once and announced. Compute only: input is a random batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from visiontool.cli import options as opt
from visiontool.errors import EXIT_FATAL

EXAMPLES = [
    "visiontool benchmark resnet18 --backends torch onnx onnx-int8",
    "visiontool benchmark runs/digits/best.safetensors --batch-size 64 --json",
    "visiontool benchmark resnet18.onnx --batch-size 1      (an .onnx file: onnx)",
]
BACKENDS_HELP = ("torch, onnx, onnx-fp16, onnx-int8, onnx-int8-dynamic; repeat it or list several after one "
                 "--backends (default: torch onnx; onnx for an .onnx file).")


def benchmark(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Registry name, checkpoint, or .onnx file.")],
    weights: opt.Weights = None,
    chosen_backends: Annotated[Optional[List[str]], typer.Option(
        "--backends", "-b", metavar="BACKEND...", show_default=False, help=BACKENDS_HELP)] = None,
    backend: Annotated[Optional[List[str]], typer.Option("--backend", hidden=True)] = None,
    backends: Annotated[Optional[List[str]], typer.Argument(hidden=True)] = None,
    batch_size: opt.BatchSize = None,
    image_size: opt.ImageSize = None,
    device: opt.Device = "auto",
    iterations: Annotated[int, typer.Option(min=1, metavar="N", help="Timed batches per backend.")] = 20,
    warmup: Annotated[int, typer.Option(min=0, metavar="N", help="Untimed batches first.")] = 3,
    calibration: opt.Calibration = None,
    as_json: opt.Json = False,
    offline: opt.Offline = False,
    quiet: opt.Quiet = False,
) -> None:
    """Measure MODEL on each backend: images/s, latency p50/p95, parameters, GFLOPs, peak memory."""
    from visiontool import bench, progress

    chosen = [b.lower() for b in (*(chosen_backends or []), *(backend or []), *(backends or []))]
    if not chosen:  # the backends follow the model: an .onnx file runs on onnx only
        chosen = ["onnx"] if Path(model).suffix.lower() == ".onnx" else ["torch", "onnx"]
    options = bench.BenchOptions(
        model=model, weights=weights, backends=chosen, batch_size=opt.default_for(opt.BATCH_SIZE, "benchmark", batch_size),
        image_size=image_size,
        device=device, iterations=iterations, warmup=warmup,
        calibration=str(calibration) if calibration else None, offline=offline, quiet=quiet,
    )
    report = bench.run(options, log=lambda message: progress.info(message, quiet=quiet))
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        from rich.console import Console

        Console().print(_table(report))
    for r in report.results:
        if r.error:
            progress.warn(f"{r.backend}: {r.error}")
    if any(r.error for r in report.results):
        raise typer.Exit(EXIT_FATAL)


def _table(report):
    from rich.table import Table

    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    params = f"{report.params / 1e6:.2f} M params" if report.params is not None else "params ?"
    gflops = f"{report.gflops:.3f} GFLOPs/image" if report.gflops is not None else "GFLOPs n/a"
    shape = "x".join(map(str, report.input_shape))
    table = Table(title=f"{report.arch}: {params}, {gflops}, input {shape}, {report.device}",
                  caption="latency per batch; peak memory while each backend was built and run")
    table.add_column("backend", no_wrap=True)
    for header in ("img/s", "speed-up", "p50 ms", "p95 ms", "RSS MiB", "CUDA MiB"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in report.results:
        if r.error:
            table.add_row(r.backend, "[red]error[/]", "", "", "", "", "")
            continue
        table.add_row(r.backend, num(r.images_per_s, ".1f"), num(r.speedup, ".2f") + "x",
                      num(r.latency_ms_p50, ".2f"), num(r.latency_ms_p95, ".2f"),
                      num(r.peak_rss_mib, ".0f"), num(r.peak_cuda_mib, ".0f"))
    if not report.rss_peak_per_backend:
        table.caption = "latency per batch; peak RSS is the process's so far (not resettable here)"
    return table
