"""Checkpoints: safetensors + JSON metadata in one file, written atomically, read without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from visiontool import checkpoint
from visiontool.errors import WeightsError

META = {
    "arch": "lenet5",
    "task": "classify",
    "num_classes": 3,
    "labels": ["cat", "dog", "émeu"],
    "preprocess": {"crop": 32, "resize": 32, "mean": [0.5], "std": [0.5], "channels": 1},
    "arch_kwargs": {"in_channels": 1},
    "train": {"command": "visiontool train data --model lenet5", "options": {"epochs": 2}, "metrics": {"top1": 0.75}},
}


def small_state():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_()
    return model.state_dict()


def test_round_trip_keeps_tensors_and_meta(tmp_path):
    state = small_state()
    path = checkpoint.save(tmp_path / "best.safetensors", state, META)

    loaded, meta = checkpoint.load(path)
    assert meta == {"format": 1, **META}
    assert checkpoint.read_meta(path) == meta
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype  # num_batches_tracked stays int64
        assert torch.equal(loaded[name], tensor)
    assert os.listdir(tmp_path) == ["best.safetensors"]


def test_shared_and_non_contiguous_tensors_are_saved(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"a": base, "tied": base, "row": base[1], "t": base.t()}
    checkpoint.save(tmp_path / "c.safetensors", state, META)
    loaded, _ = checkpoint.load(tmp_path / "c.safetensors")
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor), name


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import safetensors.torch

    target = tmp_path / "last.safetensors"
    checkpoint.save(target, small_state(), META)
    before = target.read_bytes()

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x10\x00\x00\x00")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(target, small_state(), {**META, "num_classes": 4})
    with pytest.raises(OSError):
        checkpoint.save(tmp_path / "new.safetensors", small_state(), META)

    assert os.listdir(tmp_path) == ["last.safetensors"]  # no temp, no new file
    assert target.read_bytes() == before


def test_truncated_checkpoint_is_one_line_error(tmp_path):
    path = checkpoint.save(tmp_path / "best.safetensors", small_state(), META)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(WeightsError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert "corrupt or truncated" in message and "best.safetensors" in message and "\n" not in message


def test_non_checkpoints(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(256))
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    for path in (junk, plain):
        assert checkpoint.read_meta(path) is None
        with pytest.raises(WeightsError, match="not a visiontool checkpoint"):
            checkpoint.load(path)
    with pytest.raises(WeightsError, match="not found"):
        checkpoint.read_meta(tmp_path / "missing.safetensors")


def test_newer_format_is_refused(tmp_path):
    save_file({"w": torch.zeros(2)}, tmp_path / "n.safetensors", metadata={"visiontool": json.dumps({"format": 99})})
    with pytest.raises(WeightsError, match="format 99"):
        checkpoint.read_meta(tmp_path / "n.safetensors")


def test_read_meta_does_not_import_torch(tmp_path):
    path = checkpoint.save(tmp_path / "best.safetensors", small_state(), META)
    code = (
        "import json, sys\n"
        "from visiontool import checkpoint\n"
        f"meta = checkpoint.read_meta({str(path)!r})\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print(json.dumps(meta))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"format": 1, **META}
