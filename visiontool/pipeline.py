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
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from visiontool.imageio import DecodeError, decode
from visiontool.preprocess import Geometry, Preprocess


@dataclass
class Batch:
    paths: list[str]
    errors: list[str | None]  # one per path; None where the image decoded
    # The decoded ones' model inputs: one stacked float32 NCHW array (numpy, or torch in a
    # DataLoader) when they share a size, else a list of CHW arrays (models that take any size).
    images: object
    geometries: list[Geometry] = field(default_factory=list)  # per decoded image: back to its pixels
    originals: list[np.ndarray] = field(default_factory=list)  # decoded RGB uint8, when kept for pictures


def default_workers(threads: bool = False) -> int:
    """Worker processes: one per core beyond the one that runs the model. Threads: one per
    core, since a decoding thread sleeps whenever the batches ahead are full (measured on 2
    cores with onnxruntime: 46 img/s with two threads, 38-44 with one)."""
    cores = os.cpu_count() or 2
    return cores if threads else max(1, cores - 1)


def load_one(path: str, prep: Preprocess, fast_decode: bool = True, keep: bool = False):
    """(array, geometry, original or None, error): never raises for a bad file. JPEGs at
    least twice the size the preprocessing needs decode at a reduced DCT scale (much faster
    for camera photos) unless `fast_decode` is off or the original is kept for pictures."""
    try:
        img = decode(path, prep.mode, draft=prep.draft if fast_decode and not keep else None)
        array, geometry = prep.apply(img)
        return array, geometry, np.asarray(img.convert("RGB")) if keep else None, None
    except DecodeError as err:
        return None, None, None, str(err)
    except Exception as err:  # a decoder bug must not end a run of 100,000 images
        return None, None, None, f"{type(err).__name__}: {err}"


def collate(items: Sequence[tuple], to_tensor=None) -> Batch:
    """(path, array or None, geometry, original, error) per image -> one Batch."""
    arrays = [a for _, a, _, _, _ in items if a is not None]
    images: object = None
    if arrays:
        same = all(a.shape == arrays[0].shape for a in arrays)
        images = np.stack(arrays) if same else arrays
        if to_tensor is not None:
            images = to_tensor(images) if same else [to_tensor(a) for a in arrays]
    return Batch([it[0] for it in items], [it[4] for it in items], images,
                 [it[2] for it in items if it[1] is not None], [it[3] for it in items if it[3] is not None])


class _PathDataset:
    """Map-style dataset over paths for torch's DataLoader (defined without importing torch)."""

    def __init__(self, paths: Sequence[str], prep: Preprocess, fast_decode: bool, keep: bool) -> None:
        self.paths, self.prep, self.fast_decode, self.keep = paths, prep, fast_decode, keep

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return (self.paths[i], *load_one(self.paths[i], self.prep, self.fast_decode, self.keep))


def _torch_collate(items):
    import torch

    return collate(items, torch.from_numpy)  # tensors cross worker processes in shared memory


def _ignore_ctrl_c(worker_id: int) -> None:
    # Ctrl-C reaches every process of the terminal's group: decoding workers leave it to the
    # main process, which ends the batch in flight and then stops them (runner.py).
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _process_batches(paths, prep, batch_size, workers, fast_decode, keep) -> Iterator[Batch]:
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _PathDataset(paths, prep, fast_decode, keep),  # type: ignore[arg-type]
        batch_size=batch_size,
        num_workers=workers,
        worker_init_fn=_ignore_ctrl_c if workers else None,
        collate_fn=_torch_collate,
        prefetch_factor=4 if workers else None,
        multiprocessing_context="fork" if workers and sys.platform == "linux" else None,
    )
    yield from loader


def _thread_batches(paths, prep, batch_size, workers, fast_decode, keep) -> Iterator[Batch]:
    # Pillow releases the GIL while decoding and resizing, so threads overlap with compute.
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append([(p, pool.submit(load_one, p, prep, fast_decode, keep)) for p in chunk])
            if len(pending) > 2:  # keep two batches decoding ahead of the model
                yield collate([(p, *f.result()) for p, f in pending.popleft()])
        while pending:
            yield collate([(p, *f.result()) for p, f in pending.popleft()])


def batches(paths: Sequence[str], prep: Preprocess, batch_size: int, workers: int | None = None,
            processes: bool = False, fast_decode: bool = True, keep_images: bool = False) -> Iterator[Batch]:
    """Decoded, preprocessed batches in input order. `processes`: decode in DataLoader worker
    processes (a backend that holds the GIL, like PyTorch); otherwise in threads (the torch-free
    ONNX path). `keep_images`: batches also carry the decoded images, for pictures."""
    workers = default_workers(threads=not processes) if workers is None else workers
    make = _process_batches if processes else _thread_batches
    yield from make(list(paths), prep, batch_size, workers, fast_decode, keep_images)


def run(paths: Sequence[str], prep: Preprocess, backend: Callable, postprocess: Callable,
        batch_size: int = 32, workers: int | None = None, fast_decode: bool = True,
        on_batch: Callable[[int], None] | None = None, keep_images: bool = False) -> Iterator[dict]:
    """Yield one row per path, in order: postprocess(outputs, batch) rows, or error rows
    (`{"path", "error"}`; the caller adds the task's empty fields)."""
    processes = getattr(backend, "decode_in_processes", False)
    for batch in batches(paths, prep, batch_size, workers, processes, fast_decode, keep_images):
        outputs = backend(batch.images) if batch.images is not None else None
        ok = iter(postprocess(outputs, batch) if outputs is not None else [])
        for path, error in zip(batch.paths, batch.errors):
            yield {"path": path, "error": error} if error else {"path": path, **next(ok), "error": None}
        if on_batch:
            on_batch(len(batch.paths))
