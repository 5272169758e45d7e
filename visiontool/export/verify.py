"""Does the exported file give PyTorch's answers? onnxruntime against PyTorch on the same arrays.

Both sides get arrays from the model's one Preprocess, so this checks the graph and its
metadata, not a second copy of the preprocessing. What is checked, exactly:
- the file's metadata rebuilds the ModelInfo the PyTorch model was loaded with;
- the verification images run at batch 1 and as one larger batch (or, for a fixed --batch N,
  in batches of N);
- fp32: max |onnx - torch| over all logits <= FP32_MAX_ABS_DIFF;
- fp16 and int8: the share of images whose top-1 class equals PyTorch's fp32 top-1 is at
  least MIN_AGREEMENT[precision] (logit differences are reported, not bounded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from visiontool.modelinfo import ModelInfo

FP32_MAX_ABS_DIFF = 1e-4
MIN_AGREEMENT = {"fp16": 0.99, "int8": 0.90}
SYNTHETIC_IMAGES = 16  # enough for a batch-1 run and a batch of 15 more, fast on any CPU
LARGE_BATCH = 8


@dataclass
class Verification:
    images: int  # how many images were compared
    batch_sizes: list[int]  # the batch sizes onnxruntime ran
    max_abs_diff: float  # over all logits
    top1_agreement: float  # share of images with the same top-1 class as PyTorch fp32
    precision: str  # fp32, fp16, int8
    criterion: str  # what had to hold, in words
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (f"verification {verdict}: {self.images} images at batch {', '.join(map(str, self.batch_sizes))}; "
                f"max |diff| {self.max_abs_diff:.3g}, top-1 agreement {self.top1_agreement:.1%} "
                f"({self.criterion})")


def synthetic_images(n: int = SYNTHETIC_IMAGES, seed: int = 0) -> list[Image.Image]:
    """Deterministic photo-like images: smooth colour fields with edges and texture, in
    assorted sizes and aspect ratios so the resize and crop rules take part."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        w, h = int(rng.integers(48, 320)), int(rng.integers(48, 320))
        coarse = rng.random((int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3)) * 255
        field = Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        arr = np.asarray(field, dtype=np.float32)
        arr = arr + rng.normal(0, 12, arr.shape)  # sensor-like noise
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        arr[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.random(3) * 255  # a hard-edged object
        images.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return images


def verify(onnx_path, module, info: ModelInfo, arrays: list[np.ndarray], precision: str,
           fixed_batch: int | None, device: str = "cpu", min_agreement: float | None = None,
           other_size: list[np.ndarray] | None = None) -> Verification:
    """`other_size`: images at a second input size, for a graph exported with dynamic height
    and width; they join the comparison."""
    from visiontool.backends.onnx_backend import OnnxBackend
    from visiontool.backends.torch_backend import TorchBackend
    from visiontool.export.graph import ExportError

    session = OnnxBackend(onnx_path, device)
    if session.info != info:
        raise ExportError(f"the written metadata does not describe the model: {session.info} != {info}")
    x = np.stack(arrays).astype(np.float32)
    reference = TorchBackend(module, device)(x)[0]

    pieces, sizes = _run(session, x, fixed_batch)
    if other_size:
        y = np.stack(other_size).astype(np.float32)
        try:
            ref_y = TorchBackend(module, device)(y)[0]
            out_y = session(y if fixed_batch is None else np.resize(y, (fixed_batch, *y.shape[1:])))[0][: len(y)]
        except Exception as err:
            raise ExportError(f"--dynamic-size: {info.arch} does not run at {y.shape[-1]}x{y.shape[-2]} "
                              f"({str(err).splitlines()[0][:200]}); export it without --dynamic-size") from None
        reference = np.concatenate([reference, ref_y])
        pieces.append((len(x), out_y))
    got = np.concatenate([out for _, out in pieces])
    want = np.concatenate([reference[start : start + len(out)] for start, out in pieces])
    diff = float(np.abs(got.astype(np.float64) - want).max())
    once = slice(1, None) if fixed_batch is None else slice(None)  # image 0 ran twice (batch 1 and large)
    agree = float(np.mean(got[once].argmax(1) == want[once].argmax(1)))
    if precision == "fp32":
        criterion = f"fp32: max |diff| <= {FP32_MAX_ABS_DIFF:g}"
        passed = diff <= FP32_MAX_ABS_DIFF
    else:
        need = MIN_AGREEMENT[precision] if min_agreement is None else min_agreement
        criterion = f"{precision}: top-1 agreement >= {need:.0%}"
        passed = agree >= need
    return Verification(len(x) + len(other_size or []), sizes, diff, agree, precision, criterion, passed)


def _run(session, x: np.ndarray, fixed_batch: int | None):
    """[(first image index, outputs)] per run, and the batch sizes run. Dynamic batch: image 0
    alone, then all images in batches of LARGE_BATCH. Fixed batch N: batches of N (the last one
    filled up by repeating images)."""
    if fixed_batch is None:
        starts = [0] + list(range(0, len(x), LARGE_BATCH))
        runs = [(0, x[:1])] + [(s, x[s : s + LARGE_BATCH]) for s in starts[1:]]
        return [(s, session(r)[0]) for s, r in runs], sorted({len(r) for _, r in runs})
    pieces = []
    for s in range(0, len(x), fixed_batch):
        chunk = x[s : s + fixed_batch]
        if len(chunk) < fixed_batch:
            chunk = np.concatenate([chunk, np.resize(x, (fixed_batch - len(chunk), *x.shape[1:]))])
        pieces.append((s, session(chunk)[0][: len(x) - s]))
    return pieces, [fixed_batch]
