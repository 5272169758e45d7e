"""Does the exported file give PyTorch's answers? onnxruntime against PyTorch on the same arrays.

Both sides get arrays from the model's one Preprocess, so this checks the graph and its
metadata, not a second copy of the preprocessing. What is checked, exactly:
- the file's metadata rebuilds the ModelInfo the PyTorch model was loaded with;
- the verification images run at batch 1 and as one larger batch (or, for a fixed --batch N,
  in batches of N);
- the task judges each pair of outputs (`task.compare`). Classification: fp32 max
  |onnx - torch| over all logits <= FP32_MAX_ABS_DIFF; fp16 and int8: the share of images
  whose top-1 class equals PyTorch's fp32 top-1 is at least MIN_AGREEMENT[precision] (logit
  differences are reported, not bounded). Detection: the same boxes (see tasks/detect.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from visiontool.errors import one_line
from visiontool.modelinfo import ModelInfo

FP32_MAX_ABS_DIFF = 1e-4
MIN_AGREEMENT = {"fp16": 0.99, "int8": 0.90}
SYNTHETIC_IMAGES = 16  # enough for a batch-1 run and a batch of 15 more, fast on any CPU
LARGE_BATCH = 8


@dataclass
class Verification:
    images: int  # how many images were compared
    batch_sizes: list[int]  # the batch sizes onnxruntime ran
    max_abs_diff: float  # classify: over all logits; detect: over matched box corners (pixels)
    top1_agreement: float  # share of images whose answer matches PyTorch's (top-1 class; all boxes)
    precision: str  # fp32, fp16, int8
    criterion: str  # what had to hold, in words
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (f"verification {verdict}: {self.images} images at batch {', '.join(map(str, self.batch_sizes))}; "
                f"max |diff| {self.max_abs_diff:.3g}, agreement {self.top1_agreement:.1%} "
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
           other_size: list[np.ndarray] | None = None, task=None) -> Verification:
    """Run the same batches through PyTorch and onnxruntime; the model's task judges the pairs
    of outputs (task.compare). `other_size`: images at a second input size, for a graph
    exported with dynamic height and width; they join the comparison."""
    from visiontool.backends.onnx_backend import OnnxBackend
    from visiontool.backends.torch_backend import TorchBackend
    from visiontool.export.graph import ExportError
    from visiontool.tasks import create

    task = task or create(info.task)

    session = OnnxBackend(onnx_path, device)
    if session.info != info:
        raise ExportError(f"the written metadata does not describe the model: {session.info} != {info}")
    reference = TorchBackend(module, device)
    runs, sizes = _runs(arrays, fixed_batch)
    pairs = [(_first(reference(x), n), _first(session(x), n), counted) for x, n, counted in runs]
    if other_size:
        x, n, _ = _runs(other_size, fixed_batch or len(other_size))[0][0]
        try:
            pairs.append((_first(reference(x), n), _first(session(x), n), True))
        except Exception as err:
            raise ExportError(f"--dynamic-size: {info.arch} does not run at {x.shape[-1]}x{x.shape[-2]} "
                              f"({one_line(err)[:200]}); export it without --dynamic-size") from None
    judged = task.compare(pairs, info, precision, min_agreement)
    return Verification(len(arrays) + len(other_size or []), sizes, precision=precision, **judged)


def _stack(arrays: list[np.ndarray]):
    """One NCHW batch, or the list itself when the images differ in size (batch-1 graphs)."""
    same = all(a.shape == arrays[0].shape for a in arrays)
    return np.stack(arrays).astype(np.float32) if same else [a.astype(np.float32) for a in arrays]


def _first(outputs: list[np.ndarray], n: int) -> list[np.ndarray]:
    return [o[:n] for o in outputs]


def _runs(arrays: list[np.ndarray], fixed_batch: int | None):
    """[(batch, images that are real, counted)] and the batch sizes run. Dynamic batch: image 0
    alone (not counted again), then all images in batches of LARGE_BATCH. Fixed batch N:
    batches of N (the last one filled up by repeating images)."""
    if fixed_batch is None:
        runs = [(_stack(arrays[:1]), 1, False)]
        runs += [(_stack(arrays[s : s + LARGE_BATCH]), len(arrays[s : s + LARGE_BATCH]), True)
                 for s in range(0, len(arrays), LARGE_BATCH)]
        return runs, sorted({n for _, n, _ in runs})
    runs = []
    for s in range(0, len(arrays), fixed_batch):
        chunk = arrays[s : s + fixed_batch]
        real = len(chunk)
        chunk = chunk + [arrays[i % len(arrays)] for i in range(fixed_batch - real)]
        runs.append((_stack(chunk), real, True))
    return runs, [fixed_batch]
