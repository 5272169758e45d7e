"""torchrun support: the same `visiontool train` command runs in one process or in N.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; we then join a process group (gloo on the CPU,
nccl on CUDA). Every rank computes the same sample order from the seed and takes its slice of
each global batch, so N processes with a per-rank batch of B/N step exactly like one process
with a batch of B. Only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass



@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(
        rank=int(os.environ["RANK"]),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


def pick_device(name: str, dist: Dist):
    """auto | cpu | cuda | cuda:N -> torch.device; a torchrun job on CUDA uses cuda:LOCAL_RANK."""
    import torch

    from visiontool.backends.torch_backend import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and dist.enabled:
        return torch.device("cuda", dist.local_rank)
    return device


def init(dist: Dist, device) -> None:
    """Join the torchrun job's process group (no-op for a single process)."""
    if not dist.enabled:
        return
    import torch
    import torch.distributed as td

    if td.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # torch._dynamo (imported by torchvision and by DistributedDataParallel) keeps a reference
    # to a process group that exists when it is first imported. Such a group outlives
    # destroy_process_group: its gloo threads are never joined, and one that frees a tensor
    # while the interpreter shuts down aborts the process ("terminate called without an active
    # exception"), about one finished run in ten on two CPU cores. Imported first, it holds none.
    import torch._dynamo  # noqa: F401

    td.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def shutdown(dist: Dist) -> None:
    if dist.enabled:
        import torch.distributed as td

        if td.is_initialized():
            td.destroy_process_group()


def all_gather(dist: Dist, obj) -> list:
    """Every rank's `obj`, in rank order (our own processes' data, so pickling is safe)."""
    if not dist.enabled:
        return [obj]
    import torch.distributed as td

    out = [None] * dist.world
    td.all_gather_object(out, obj)
    return out


def broadcast(dist: Dist, obj):
    """Rank 0's `obj` on every rank."""
    if not dist.enabled:
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_(dist: Dist, *tensors) -> None:
    """Sum tensors over ranks, in place."""
    if dist.enabled:
        import torch.distributed as td

        for t in tensors:
            td.all_reduce(t)


def broadcast_buffers_(dist: Dist, module) -> None:
    """Give every rank rank 0's buffers (batch-norm running stats), e.g. before evaluating."""
    if dist.enabled:
        import torch.distributed as td

        for buf in module.buffers():
            td.broadcast(buf, src=0)
