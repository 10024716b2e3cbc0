"""Memory and disk a model needs against what the machine has: refuse before allocating, not after.

A config file someone hands us can ask for a billion-row vocabulary; building that model would
fail deep inside PyTorch ("can't allocate ...") or, worse, push a shared server into swap. Every
loader asks `require_memory` first, with a number it can compute without allocating anything.
"""

from __future__ import annotations

import resource
import shutil
import sys
from pathlib import Path

import torch

HEADROOM = 1.2  # what a load takes beyond its tensors: the file's pages, Python objects, a copy in flight


class InsufficientResourcesError(ValueError):
    """A load or download that cannot fit in the memory or disk the machine has free."""


def gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes < 1e11 else f"{n_bytes / 1e9:,.0f} GB"


def available_memory() -> int | None:
    """Bytes the kernel could hand out now without swapping (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def require_memory(needed: int, what: str) -> None:
    """Raise a message saying how much `what` needs when it (with headroom) exceeds the free memory."""
    free = available_memory()
    if free is not None and needed * HEADROOM > free:
        raise InsufficientResourcesError(f"{what} needs about {gigabytes(needed * HEADROOM)} of memory; "
                                         f"this machine has {gigabytes(free)} free")


def require_disk(needed: int, folder: str | Path, what: str) -> None:
    """Raise a message when the disk holding `folder` (or its nearest existing parent) has too little space."""
    folder = Path(folder).expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise InsufficientResourcesError(f"{what} needs {gigabytes(needed)} of disk; {gigabytes(free)} are free")


def peak_memory(device: torch.device | str = "cpu") -> int:
    """The most memory used so far, in bytes: the process's peak resident set on the CPU, the allocator's
    peak on CUDA (reset it with `torch.cuda.reset_peak_memory_stats` to measure one stretch)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux kilobytes


def peak_memory_source(device: torch.device | str = "cpu") -> str:
    """What `peak_memory` measures on `device`, for the reports that quote it."""
    return "torch.cuda.max_memory_allocated" if torch.device(device).type == "cuda" else "process peak RSS"
