"""The shared batch loop: order, error rows, both loaders, and parity of what reaches the model."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from PIL import Image

from visiontool import pipeline
from visiontool.preprocess import Preprocess

PREP = Preprocess(crop=8, resize=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _images(tmp_path, n):
    paths = []
    for i in range(n):
        p = tmp_path / f"{i:02d}.png"
        Image.new("RGB", (12, 10), (i * 10, 0, 0)).save(p)
        paths.append(str(p))
    return paths


class MeanRed:
    """A stand-in model: outputs each image's mean red value, so rows can be checked exactly."""

    name = "fake"

    def __call__(self, batch):
        return np.asarray(batch)[:, 0].mean(axis=(1, 2))[:, None]


class _InProcesses(MeanRed):
    """The same, decoded in worker processes (as for a PyTorch backend)."""

    decode_in_processes = True


def _post(outputs, batch):
    return [{"red": round(float(v[0]) * 255)} for v in outputs]


@pytest.mark.parametrize("torch_loader", [False, True])
def test_rows_in_order_with_broken_files_reported(tmp_path, torch_loader):
    paths = _images(tmp_path, 7)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    paths.insert(3, str(broken))
    backend = MeanRed()
    if torch_loader:
        backend.decode_in_processes = True
    rows = list(pipeline.run(paths, PREP, backend, _post, batch_size=3, workers=1))
    assert [r["path"] for r in rows] == paths
    assert rows[3]["error"] and rows[3]["path"] == str(broken)
    good = [r for r in rows if r["error"] is None]
    assert [r["red"] for r in good] == [i * 10 for i in range(7)]


def test_batch_of_only_broken_files(tmp_path):
    bad = tmp_path / "a.jpg"
    bad.write_text("not an image")
    rows = list(pipeline.run([str(bad)], PREP, MeanRed(), _post, batch_size=4, workers=1))
    assert rows == [{"path": str(bad), "error": rows[0]["error"]}] and rows[0]["error"]


def test_thread_and_torch_loaders_give_identical_arrays(tmp_path):
    paths = _images(tmp_path, 5)
    a = [b.images for b in pipeline.batches(paths, PREP, 2, 1, processes=False)]
    b = [np.asarray(b.images) for b in pipeline.batches(paths, PREP, 2, 1, processes=True)]
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


class _Noted:
    """Writes the pid of the process that frees it."""

    def __init__(self, path):
        self.path, self.cycle = path, self

    def __del__(self):
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()}\n")


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux")
def test_decoding_workers_never_collect_the_callers_garbage(tmp_path, monkeypatch):
    # Garbage a forked worker collects runs its destructor there, where the threads it may wait
    # on do not exist (an onnxruntime session's thread pool hung a worker so). A worker that
    # collects everything it can must find nothing of the caller's.
    import gc

    start = pipeline._ignore_ctrl_c

    def start_and_collect(worker_id):
        start(worker_id)
        gc.collect()

    monkeypatch.setattr(pipeline, "_ignore_ctrl_c", start_and_collect)
    noted = tmp_path / "freed-by"
    gc.disable()  # the garbage must still be there when the workers start
    try:
        _Noted(noted)  # unreachable at once, but in a cycle: only a collection frees it
        rows = list(pipeline.run(_images(tmp_path, 4), PREP, _InProcesses(), _post, batch_size=2, workers=2))
    finally:
        gc.enable()
    gc.collect()
    assert [r["red"] for r in rows] == [0, 10, 20, 30]
    assert noted.read_text().split() == [str(os.getpid())]
