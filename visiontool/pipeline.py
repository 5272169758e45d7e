"""The batch loop every inference command shares.

paths -> decode + preprocess (in parallel workers, overlapped with compute) -> batches ->
backend -> task postprocess -> rows. A file that cannot be decoded becomes a row with its
error; the batch goes on. So does one whose decoding takes longer than the decode time limit
(imageio.decode_timeout): a decoder cannot be stopped mid-call, so its thread is left behind and
a new one takes its place (threads), or an alarm ends the decode between Pillow's chunks
(worker processes). Rows are yielded as they come, so memory stays flat however many images
there are.
"""

from __future__ import annotations

import gc
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from visiontool.imageio import DecodeError, decode, decode_timeout, timeout_message
from visiontool.preprocess import Geometry, ImageTooSmall, Preprocess


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
    except (DecodeError, ImageTooSmall) as err:
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
        path = self.paths[i]
        if threading.current_thread() is not threading.main_thread():
            return (path, *load_one(path, self.prep, self.fast_decode, self.keep))
        limit = decode_timeout()

        def too_long(signum, frame):
            raise DecodeError(path, timeout_message(limit))

        previous = signal.signal(signal.SIGALRM, too_long)
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            return (path, *load_one(path, self.prep, self.fast_decode, self.keep))
        except DecodeError as err:  # the alarm rang just as load_one returned
            return path, None, None, None, str(err)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


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
    # Forked workers inherit this process's uncollected garbage (say an onnxruntime session of an
    # earlier run, in a reference cycle). Collected in a worker, such an object's destructor can
    # wait forever on a lock of a thread that the fork did not copy. Objects frozen when the
    # workers start are never collected there; this process unfreezes its own at once.
    gc.freeze()
    try:
        started = iter(loader)
    finally:
        gc.unfreeze()
    yield from started


class _Job:
    def __init__(self, args: tuple) -> None:
        self.args, self.started, self.result, self.done = args, None, None, threading.Event()


class _Decoders:
    """Daemon decoding threads with a time limit per image. An image past the limit gets its
    error; its thread, stuck in the decoder, is left to finish on its own (daemon: it cannot
    keep the process alive) and a new thread takes its place, so the run keeps its pace."""

    def __init__(self, workers: int, limit: float) -> None:
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.limit, self.threads = limit, 0
        for _ in range(max(1, workers)):
            self._start()

    def _start(self) -> None:
        threading.Thread(target=self._work, daemon=True).start()
        self.threads += 1

    def _work(self) -> None:
        while (job := self.tasks.get()) is not None:
            job.started = time.monotonic()
            job.result = load_one(*job.args)
            job.done.set()

    def submit(self, *args) -> _Job:
        job = _Job(args)
        self.tasks.put(job)
        return job

    def result(self, job: _Job):
        while not job.done.wait(0.05 if job.started is None else max(0.0, job.started + self.limit - time.monotonic())):
            if job.started is not None and time.monotonic() - job.started >= self.limit:
                self.threads -= 1  # that one is stuck
                self._start()
                return None, None, None, timeout_message(self.limit)
        return job.result

    def close(self) -> None:
        try:  # a run that stops early leaves images it will not ask for: drop them
            while True:
                self.tasks.get_nowait()
        except queue.Empty:
            pass
        for _ in range(self.threads):
            self.tasks.put(None)


def _thread_batches(paths, prep, batch_size, workers, fast_decode, keep) -> Iterator[Batch]:
    # Pillow releases the GIL while decoding and resizing, so threads overlap with compute.
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    pool = _Decoders(workers, decode_timeout())
    try:
        pending: deque = deque()
        for chunk in chunks:
            pending.append([(p, pool.submit(p, prep, fast_decode, keep)) for p in chunk])
            if len(pending) > 2:  # keep two batches decoding ahead of the model
                yield collate([(p, *pool.result(j)) for p, j in pending.popleft()])
        while pending:
            yield collate([(p, *pool.result(j)) for p, j in pending.popleft()])
    finally:
        pool.close()


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
