"""Numeric precision by name: the one table of dtypes, their widths, and bfloat16 autocast."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# What training may compute in: exact float32, or bfloat16 matrix products over float32 master weights.
AUTOCAST_CHOICES = ("float32", "bfloat16")


def dtype_of(name: str) -> torch.dtype:
    """The torch dtype called `name` ("float32", "bfloat16", "float16")."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}") from None


def name_of(dtype: torch.dtype) -> str:
    """The name of a supported dtype (the inverse of `dtype_of`)."""
    for name, candidate in DTYPES.items():
        if candidate == dtype:
            return name
    raise ValueError(f"unsupported dtype {dtype}; choose one of {', '.join(DTYPES)}")


def bytes_per_element(name: str) -> int:
    return dtype_of(name).itemsize


def autocast(precision: str, device: torch.device | str) -> AbstractContextManager:
    """`float32`: nothing changes; `bfloat16`: autocast on the device's type (CPU, CUDA or MPS)."""
    if precision not in AUTOCAST_CHOICES:
        raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_CHOICES)}, got {precision!r}")
    if precision == "float32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
