"""The trainers under torch.distributed: process-group set-up from torchrun's environment (or a group the
caller initialized), and this process's rank, world size and device."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    device: torch.device


def setup(device: str, pick_device) -> Distributed | None:
    """Under torchrun (WORLD_SIZE > 1), or when the caller has initialized a process group of several ranks:
    this rank's place and device (cuda:LOCAL_RANK for 'auto' / 'cuda' when GPUs are visible). The default group
    is initialized here when needed: nccl for GPUs, gloo on CPUs. None for a single process."""
    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        gpu = not device.startswith("cpu") and torch.cuda.is_available()
        dist.init_process_group("nccl" if gpu else "gloo")
    world = dist.get_world_size()
    if world <= 1:
        return None
    rank = dist.get_rank()
    local = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
    if device in ("auto", "cuda") and torch.cuda.is_available():
        dev = torch.device("cuda", local)
    else:
        dev = pick_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return Distributed(rank, world, dev)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
