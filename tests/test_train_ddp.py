"""torchrun: two processes (gloo, CPU) with a global batch of B train the same model as one
process with batch B, and only rank 0 writes the run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_shapes import make_dataset

from visiontool import checkpoint
from visiontool.train.config import TrainConfig
from visiontool.train.engine import train


def test_two_processes_train_the_same_model_as_one(tmp_path):
    data = make_dataset(tmp_path / "data", train_per_class=8, val_per_class=3)
    # LeNet-5 has no batch norm or dropout, the only layers whose result depends on how a
    # batch is split; light augmentation is drawn per global batch, so it must match too.
    options = ["--model", "lenet5", "--epochs", "2", "--batch-size", "8", "--augment", "light",
               "--seed", "3", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "visiontool", "train", str(data), *options, "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(data=str(data), model="lenet5", epochs=2, batch_size=8, augment="light", seed=3,
                          quiet=True, out=str(tmp_path / "one")))
    finally:
        torch.set_num_threads(before)

    two, meta = checkpoint.load(tmp_path / "ddp" / "last.safetensors")
    one, _ = checkpoint.load(tmp_path / "one" / "last.safetensors")
    assert two.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5, msg=key)
    assert meta["train"]["processes"] == 2 and meta["train"]["options"]["batch_size"] == 8
    # and training moved the weights away from their (seeded) initial values
    from visiontool.models import registry

    torch.manual_seed(3)
    init = registry.build("lenet5", 3).state_dict()
    assert all(not torch.allclose(init[k], one[k]) for k in one)
    # rank 0 alone wrote: one results row per epoch, no files left from a second writer
    lines = (tmp_path / "ddp" / "results.csv").read_text().splitlines()
    assert len(lines) == 3
    assert not [p for p in (tmp_path / "ddp").iterdir() if p.name.startswith(".")]


LEAVE_GROUP = """
import os, sys, torch
from pathlib import Path
from visiontool.train import distributed
dist = distributed.from_env()
distributed.init(dist, torch.device("cpu"))
import torchvision.ops  # what training imports after the group exists
distributed.all_reduce_(dist, torch.ones(2))
distributed.shutdown(dist)
Path(sys.argv[1], f"threads-{dist.rank}").write_text(str(len(os.listdir("/proc/self/task"))))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_leaving_the_process_group_joins_its_threads(tmp_path):
    # A gloo thread alive when the interpreter shuts down can abort a finished run
    # ("terminate called without an active exception"); after shutdown only the main thread is left.
    script = tmp_path / "leave.py"
    script.write_text(LEAVE_GROUP)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(tmp_path / f"threads-{rank}").read_text() for rank in (0, 1)] == ["1", "1"]
