"""Several processes on one gallery (``torchrun``): the process group, ranks and barriers.

Under ``torchrun`` (``torch.distributed`` initialized, see :func:`distributed`) a build deals
its batches round-robin to the ranks, and rank 0 merges the records and writes the pages. The
output folder must be shared by all ranks (one machine, or a shared filesystem).
"""

from __future__ import annotations

import contextlib
import datetime
import os

import torch


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes ((0, 1) without a process group)."""
    d = _dist()
    return (d.get_rank(), d.get_world_size()) if d else (0, 1)


def barrier() -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    d = _dist()
    if d is None:
        return
    if d.get_backend() == "nccl":
        d.barrier(device_ids=[torch.cuda.current_device()])
    else:
        d.barrier()


def agreed_min(value: int) -> int:
    """The smallest ``value`` over all ranks (``value`` itself in a single process), so that
    every rank cuts the work into the same batches."""
    d = _dist()
    if d is None:
        return value
    cuda = d.get_backend() == "nccl"
    t = torch.tensor([int(value)], device=torch.cuda.current_device() if cuda else "cpu")
    d.all_reduce(t, op=d.ReduceOp.MIN)
    return int(t.item())


@contextlib.contextmanager
def distributed(device: str | None = "auto"):
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 and leave it on exit.

    nccl when the ranks use CUDA GPUs (each takes ``cuda:LOCAL_RANK``), gloo otherwise. Yields
    the device each rank should load its model on (``device`` unchanged in a single process).
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield device
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and str(device or "auto") in ("auto", "cuda")
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=12))
    try:
        yield device
    finally:
        dist.destroy_process_group()


__all__ = ["agreed_min", "barrier", "distributed", "rank_and_world"]
