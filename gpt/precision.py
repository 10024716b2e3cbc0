"""Numeric precision by name: the one table of dtypes, their widths, and bfloat16 autocast."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from functools import cache

import torch

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# What training may compute in: exact float32, bfloat16 matrix products over float32 master weights, or
# `auto`: bfloat16 where the machine multiplies it faster than float32, float32 elsewhere.
AUTOCAST_CHOICES = ("auto", "float32", "bfloat16")


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


@cache
def fast_bfloat16(device_type: str) -> bool:
    """Whether bfloat16 matrix products beat float32 ones here, measured once per process on the CPU.

    A CPU without bfloat16 instructions (an x86 one with AVX2 but no AVX-512 BF16 or AMX) converts
    every element and runs many times slower than in float32; one with them runs about twice as fast.
    A CUDA device says what it supports; other devices keep float32.
    """
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    gen = torch.Generator().manual_seed(0)  # its own: the global RNG (training's) is untouched
    a, b = torch.randn(64, 256, generator=gen), torch.randn(256, 256, generator=gen)
    best = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy machine a product on two threads waits for the one not scheduled
    try:
        for dtype in (torch.float32, torch.bfloat16) * 5:  # in turns: a busy moment hits both; best of five each
            x, y = a.to(dtype), b.to(dtype)
            start = time.perf_counter()
            for _ in range(2):
                x @ y
            best[dtype] = min(best.get(dtype, float("inf")), time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    # Where bfloat16 has instructions it is about twice as fast, where it has none several times slower: a near
    # tie is load, not hardware, and keeps float32.
    return best[torch.bfloat16] < 0.7 * best[torch.float32]


def resolve_autocast(precision: str, device: torch.device | str) -> str:
    """What `precision` computes in on `device`: `auto` becomes bfloat16 or float32 (`fast_bfloat16`)."""
    if precision not in AUTOCAST_CHOICES:
        raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_CHOICES)}, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if fast_bfloat16(torch.device(device).type) else "float32"
    return precision


def autocast(precision: str, device: torch.device | str) -> AbstractContextManager:
    """`float32`: nothing changes; `bfloat16`: autocast on the device's type (CPU, CUDA or MPS); `auto`: either,
    by what the device multiplies faster."""
    if resolve_autocast(precision, device) == "float32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
