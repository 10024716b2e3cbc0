"""Data-parallel training under `torchrun`: the process group, and the few collectives the trainer needs.

NCCL only reduces tensors that live on the GPU, so every collective here puts its tensor on the
process's device (gloo on the CPU takes CPU tensors).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(device=device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), device)


def barrier(ddp: Distributed) -> None:
    if ddp.world_size > 1:
        dist.barrier()


def mean_over_processes(value: float, ddp: Distributed) -> float:
    if ddp.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64 if ddp.device.type == "cpu" else torch.float32, device=ddp.device)
    dist.all_reduce(t)
    return float(t) / ddp.world_size


def any_process(flag: bool, ddp: Distributed) -> bool:
    """True on every process if it is true on one (clocks differ: all must stop at the same step)."""
    if ddp.world_size == 1:
        return flag
    t = torch.tensor([int(flag)], device=ddp.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t)


def gather_rng_states(ddp: Distributed) -> list[torch.Tensor]:
    """Every process's CPU RNG state (dropout masks differ per process and must all resume)."""
    state = torch.get_rng_state()
    if ddp.world_size == 1:
        return [state]
    local = state.to(ddp.device)
    states = [torch.empty_like(local) for _ in range(ddp.world_size)]
    dist.all_gather(states, local)
    return [s.cpu() for s in states]
