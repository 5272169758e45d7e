"""The batch loop every inference command shares.

paths -> decode + preprocess (in parallel workers, overlapped with compute) -> batches ->
backend -> task postprocess -> rows. A file that cannot be decoded becomes a row with its
error; the batch goes on. Rows are yielded as they come, so memory stays flat however many
images there are.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from visiontool.imageio import DecodeError, decode
from visiontool.preprocess import Preprocess


@dataclass
class Batch:
    paths: list[str]
    errors: list[str | None]  # one per path; None where the image decoded
    images: object  # stacked float32 NCHW of the decoded ones (numpy, or torch in DataLoader)


def default_workers(threads: bool = False) -> int:
    """Worker processes: one per core beyond the one that runs the model. Threads: one per
    core, since a decoding thread sleeps whenever the batches ahead are full (measured on 2
    cores with onnxruntime: 46 img/s with two threads, 38-44 with one)."""
    cores = os.cpu_count() or 2
    return cores if threads else max(1, cores - 1)


def draft_size(prep: Preprocess) -> tuple[int, int]:
    # JPEGs at least twice the size the resize needs decode at a reduced DCT scale: much
    # faster for camera photos, and the smaller image is then resized exactly as usual.
    return (prep.resize, prep.resize)


def load_one(path: str, prep: Preprocess, fast_decode: bool = True):
    """(array, error): never raises for a bad file."""
    try:
        img = decode(path, prep.mode, draft=draft_size(prep) if fast_decode else None)
        return prep(img), None
    except DecodeError as err:
        return None, str(err)
    except Exception as err:  # a decoder bug must not end a run of 100,000 images
        return None, f"{type(err).__name__}: {err}"


def collate(items: Sequence[tuple[str, object, str | None]], to_tensor=None) -> Batch:
    """(path, array or None, error) per image -> one Batch."""
    arrays = [a for _, a, _ in items if a is not None]
    images = np.stack(arrays) if arrays else None
    if to_tensor is not None and images is not None:
        images = to_tensor(images)
    return Batch([p for p, _, _ in items], [e for _, _, e in items], images)


class _PathDataset:
    """Map-style dataset over paths for torch's DataLoader (defined without importing torch)."""

    def __init__(self, paths: Sequence[str], prep: Preprocess, fast_decode: bool) -> None:
        self.paths, self.prep, self.fast_decode = paths, prep, fast_decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return (self.paths[i], *load_one(self.paths[i], self.prep, self.fast_decode))


def _torch_collate(items):
    import torch

    return collate(items, torch.from_numpy)  # tensors cross worker processes in shared memory


def _torch_batches(paths, prep, batch_size, workers, fast_decode) -> Iterator[Batch]:
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _PathDataset(paths, prep, fast_decode),  # type: ignore[arg-type]
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_torch_collate,
        prefetch_factor=4 if workers else None,
        multiprocessing_context="fork" if workers and sys.platform == "linux" else None,
    )
    yield from loader


def _thread_batches(paths, prep, batch_size, workers, fast_decode) -> Iterator[Batch]:
    # Pillow releases the GIL while decoding and resizing, so threads overlap with compute.
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append([(p, pool.submit(load_one, p, prep, fast_decode)) for p in chunk])
            if len(pending) > 2:  # keep two batches decoding ahead of the model
                yield collate([(p, *f.result()) for p, f in pending.popleft()])
        while pending:
            yield collate([(p, *f.result()) for p, f in pending.popleft()])


def batches(paths: Sequence[str], prep: Preprocess, batch_size: int, workers: int | None = None,
            torch_loader: bool = False, fast_decode: bool = True) -> Iterator[Batch]:
    """Decoded, preprocessed batches in input order. torch_loader: decode in DataLoader worker
    processes (the torch backend); otherwise in threads (the torch-free ONNX backend)."""
    workers = default_workers(threads=not torch_loader) if workers is None else workers
    make = _torch_batches if torch_loader else _thread_batches
    yield from make(list(paths), prep, batch_size, workers, fast_decode)


def run(paths: Sequence[str], prep: Preprocess, backend: Callable, postprocess: Callable,
        batch_size: int = 32, workers: int | None = None, fast_decode: bool = True,
        on_batch: Callable[[int], None] | None = None) -> Iterator[dict]:
    """Yield one row per path, in order: postprocess(outputs, batch) rows, or error rows."""
    torch_loader = getattr(backend, "name", "") == "torch"
    for batch in batches(paths, prep, batch_size, workers, torch_loader, fast_decode):
        outputs = backend(batch.images) if batch.images is not None else None
        ok = iter(postprocess(outputs, batch) if outputs is not None else [])
        for path, error in zip(batch.paths, batch.errors):
            yield {"path": path, "error": error} if error else {"path": path, **next(ok), "error": None}
        if on_batch:
            on_batch(len(batch.paths))
