"""`visiontool benchmark`: one model on several backends, side by side.

Every backend runs the same random input batch (compute only: no decoding) after a warm-up;
per backend: throughput (images/s), latency per batch (p50/p95), peak memory. For the model:
parameters and GFLOPs per image (torch.utils.flop_counter; a multiply-add counts as 2 FLOPs).
ONNX variants come from the export cache (visiontool.export.cache), except static int8, which
is calibrated afresh (on --calibration images, else on generated ones: speed does not depend
on the calibration set, accuracy does; `visiontool export --int8 --calibration` checks that).
"""

from __future__ import annotations

import gc
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from visiontool.errors import UsageError

BACKENDS = ("torch", "onnx", "onnx-fp16", "onnx-int8", "onnx-int8-dynamic")
_VARIANT = {"onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8-dynamic": "int8-dynamic"}


@dataclass
class BenchOptions:
    model: str  # anything --model accepts, or an .onnx file (then: onnx only)
    weights: str | None = None
    backends: list[str] = field(default_factory=lambda: ["torch", "onnx"])
    batch_size: int = 32
    image_size: int | None = None  # None: the model's own input size
    device: str = "cpu"
    iterations: int = 20  # timed batches per backend
    warmup: int = 3  # untimed batches first (allocations, kernel selection)
    calibration: str | None = None  # images for onnx-int8's calibration
    offline: bool = False
    quiet: bool = False


@dataclass
class BackendResult:
    backend: str
    file: str | None  # the .onnx file run, if any
    images_per_s: float | None = None
    latency_ms_p50: float | None = None  # per batch
    latency_ms_p95: float | None = None
    speedup: float | None = None  # throughput / the first backend's
    peak_rss_mib: float | None = None  # this process, while this backend was built and run
    peak_cuda_mib: float | None = None  # torch on CUDA: torch.cuda.max_memory_allocated
    error: str | None = None


@dataclass
class BenchReport:
    model: str
    arch: str
    input_shape: list[int]  # [batch, channels, height, width]
    device: str
    params: int | None
    gflops: float | None  # per image
    iterations: int
    rss_peak_per_backend: bool  # False: the kernel could not reset the peak, so it is cumulative
    results: list[BackendResult]

    def to_dict(self) -> dict:
        return asdict(self)


def check(o: BenchOptions) -> None:
    unknown = [b for b in o.backends if b not in BACKENDS]
    if unknown:
        raise UsageError(f"--backends {unknown[0]}: unknown (use {', '.join(BACKENDS)})")
    if Path(o.model).suffix.lower() == ".onnx" and set(o.backends) != {"onnx"}:
        raise UsageError(f"{o.model} is an ONNX file: only --backends onnx can run it")
    if o.batch_size < 1 or o.iterations < 1:
        raise UsageError("--batch-size and --iterations must be at least 1")


def run(o: BenchOptions, log: Callable[[str], None] = lambda message: None) -> BenchReport:
    check(o)
    if Path(o.model).suffix.lower() == ".onnx":
        return _run_onnx_file(o, log)
    from visiontool.models.loader import load_model

    loaded = load_model(o.model, o.weights, offline=o.offline, quiet=o.quiet)
    info = loaded.info
    p = info.preprocess
    size = o.image_size or p.crop
    shape = [o.batch_size, p.channels, size, size]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    params = sum(t.numel() for t in loaded.module.parameters())
    gflops = count_gflops(loaded.module, shape)
    results, resettable = [], True
    with tempfile.TemporaryDirectory(prefix="visiontool-bench-") as tmp:
        for name in o.backends:
            log(f"benchmark: {name}")
            try:
                make, file = _maker(name, o, loaded, size, Path(tmp))
                result, reset = measure(name, make, x, o.iterations, o.warmup, o.device)
                result.file = file
            except UsageError:
                raise
            except Exception as err:  # one backend failing must not hide the others' figures
                result, reset = BackendResult(name, None, error=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"), True
            resettable &= reset
            results.append(result)
    _speedups(results)
    return BenchReport(o.model, info.arch, shape, o.device, params, gflops, o.iterations, resettable, results)


def _maker(name: str, o: BenchOptions, loaded, size: int, tmp: Path):
    """(a function building the runner, the .onnx file it runs or None)."""
    if name == "torch":
        from visiontool.backends.torch_backend import TorchBackend

        return (lambda: TorchBackend(loaded.module, o.device)), None
    from visiontool.backends.onnx_backend import OnnxBackend
    from visiontool.export.cache import cached_onnx, static_int8_copy

    path = cached_onnx(o.model, o.weights, o.offline, o.quiet, _VARIANT.get(name, "fp32"), o.image_size)
    if name == "onnx-int8":
        # Calibrated on generated images: cached next to the fp32 copy; on a user's folder: made afresh.
        out = path.with_name(path.stem + "-int8-static-generated.onnx") if not o.calibration else tmp / "int8.onnx"
        if o.calibration or not out.is_file():
            prep = loaded.info.preprocess
            if o.image_size:
                prep = prep.at_size(size)
            static_int8_copy(path, calibration_arrays(prep, o.calibration), out)
        path = out
    return (lambda: OnnxBackend(path, o.device)), (str(path) if path.parent != tmp else None)


def calibration_arrays(prep, folder: str | None) -> list[np.ndarray]:
    from visiontool.export import transform, verify

    if folder:
        return transform.decoded(transform.calibration_paths(folder), prep)
    return [prep(img) for img in verify.synthetic_images()]


def _run_onnx_file(o: BenchOptions, log) -> BenchReport:
    import onnx

    from visiontool.backends.onnx_backend import OnnxBackend, read_info

    graph = onnx.load(o.model, load_external_data=False)
    # Weights: floating-point and 8-bit initializers (integer ones are shapes and indices;
    # a quantized file also counts its scales and zero points).
    kinds = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
             onnx.TensorProto.DOUBLE, onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    params = int(sum(np.prod(t.dims) for t in graph.graph.initializer if t.data_type in kinds))
    log("benchmark: onnx")
    probe = OnnxBackend(o.model, o.device)
    info = read_info(probe.session)
    dims = probe.session.get_inputs()[0].shape
    size = o.image_size or info.preprocess.crop
    batch = dims[0] if isinstance(dims[0], int) else o.batch_size
    shape = [batch, info.preprocess.channels, size, size]
    del probe
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    result, reset = measure("onnx", lambda: OnnxBackend(o.model, o.device), x, o.iterations, o.warmup, o.device)
    result.file = o.model
    _speedups([result])
    return BenchReport(o.model, info.arch, shape, o.device, params, None, o.iterations, reset, [result])


def measure(name: str, make: Callable, x: np.ndarray, iterations: int, warmup: int,
            device: str) -> tuple[BackendResult, bool]:
    """Build the runner with `make`, warm it up, time `iterations` batches of `x`."""
    gc.collect()
    reset = _reset_peak_rss()
    cuda = _cuda_reset(name, device)
    runner = make()
    for _ in range(warmup):
        runner(x)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        runner(x)  # returns host arrays, so GPU work has finished when it returns
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    result = BackendResult(
        backend=name, file=None, images_per_s=round(len(x) * iterations / float(np.sum(times)), 2),
        latency_ms_p50=round(float(np.percentile(ms, 50)), 3), latency_ms_p95=round(float(np.percentile(ms, 95)), 3),
        peak_rss_mib=round(_peak_rss_mib(), 1), peak_cuda_mib=_cuda_peak() if cuda else None,
    )
    del runner
    return result, reset


def count_gflops(module, shape: list[int]) -> float:
    """GFLOPs for one image (multiply-add = 2 FLOPs), counted on the CPU in fp32."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module = module.to("cpu")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(torch.zeros(1, *shape[1:]))
    return round(counter.get_total_flops() / 1e9, 6)


def _reset_peak_rss() -> bool:
    """Linux lets a process reset its peak resident size (VmHWM) by writing 5 to clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _cuda_reset(name: str, device: str) -> bool:
    if name != "torch" or device == "cpu":
        return False
    import torch

    if not torch.cuda.is_available():
        return False
    torch.cuda.reset_peak_memory_stats()
    return True


def _cuda_peak() -> float:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def _speedups(results: list[BackendResult]) -> None:
    base = next((r.images_per_s for r in results if r.images_per_s), None)
    for r in results:
        if base and r.images_per_s:
            r.speedup = round(r.images_per_s / base, 3)
