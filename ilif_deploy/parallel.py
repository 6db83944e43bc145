"""Data-parallel runs with ``torch.distributed``, launched by ``torchrun`` (gloo on CPUs, nccl on GPUs).

Each process works on its own block of the data (:meth:`~ilif_deploy.data.Dataset.shard`) and the results
are combined with the reductions here.  Counts are integers carried in float64 (exact below 2^53), so their
sums do not depend on the order: a job gives the numbers of a single process, bit for bit.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence, Tuple

import numpy as np


def launched() -> bool:
    """True in a process started by ``torchrun`` with more than one process in the job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str = "cpu") -> Tuple[int, int]:
    """Join the job ``torchrun`` set up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` ... in the environment), if not
    joined yet: gloo for CPU tensors, nccl for CUDA.  Returns ``(rank, world_size)``."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size()


def join(device: str = "cpu") -> Tuple[int, str]:
    """For a CLI started by ``torchrun``: :func:`init`, with ``"cuda"`` narrowed to this process's GPU
    (``LOCAL_RANK``).  Returns ``(rank, device)``."""
    if device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return init(device)[0], device


def leave() -> None:
    """Leave the joined job (nothing outside one).  Every process must, before the interpreter exits: gloo's
    worker threads still hold tensors of finished collectives, and freeing them during interpreter shutdown
    aborts the process (SIGABRT, seen on a loaded CI machine; pytorch/pytorch#179291)."""
    dist = sys.modules.get("torch.distributed")  # not imported: no job was joined (and torch stays unloaded)
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world() -> Tuple[int, int]:
    """``(rank, world_size)`` of the joined job, ``(0, 1)`` outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _reduce(values: Sequence[float], op: str, device: str) -> np.ndarray:
    import torch
    import torch.distributed as dist

    t = torch.as_tensor(np.asarray(values, dtype=np.float64).ravel(), device=torch.device(device))
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t.cpu().numpy()


def all_sum(values, device: str = "cpu") -> np.ndarray:
    """Element-wise float64 sum over the job's processes (exact for integers below 2^53)."""
    return _reduce(values, "sum", device)


def all_max(values, device: str = "cpu") -> np.ndarray:
    """Element-wise maximum over the job's processes."""
    return _reduce(values, "max", device)


def all_min(values, device: str = "cpu") -> np.ndarray:
    """Element-wise minimum over the job's processes."""
    return _reduce(values, "min", device)


__all__ = ["launched", "init", "join", "leave", "world", "all_sum", "all_max", "all_min"]
