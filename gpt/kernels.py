"""Linear layers by the fastest exact route the CPU has: PyTorch's default (MKL) or oneDNN.

On AMD processors MKL takes a slower, non-AVX-512 code path for float32 matrix products, while
oneDNN (also inside every PyTorch CPU build) does not; on Intel processors the two are close. Which
is faster is measured once per process and dtype on this machine, never assumed, and either route
computes in the weight's own precision with float32 accumulation, so outputs agree within float
rounding. `GPT_MATMUL=aten|onednn` forces a route (tests, reproducing a figure).

Training goes through an autograd function whose backward products also run on oneDNN. Inference
(no gradient) reads the weight in oneDNN's blocked layout, packed once per weight version: one-row
products (decoding) then stream memory close to its bandwidth. The weight is packed for `FEW_ROWS`
rows, not one: packed for a single row oneDNN keeps the plain layout and its AVX2 kernel even where
the CPU has AVX-512, and reads memory about a third slower. The packed copy costs the weight's
size again in memory, the price of speed that `GPTModel` already pays for its output head.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

ROUTES = ("aten", "onednn")
ROUTE_ENV = "GPT_MATMUL"


@cache
def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_mm(x2d: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x2d (N, K) @ weight (O, K).T + bias, weight plain or packed by `_reorder_linear_weight`."""
    return torch.ops.mkldnn._linear_pointwise(x2d, weight, bias, "none", [], "")


def median_seconds_in_turns(steps: dict[str, Callable[[], object]], repeats: int = 5) -> dict[str, float]:
    """Median seconds per call of each step, timed in turns (A, B, A, B, ...) after one warm-up each.

    On a shared machine the load changes from second to second; taking turns exposes every candidate
    to the same load, so their ratio stays meaningful.
    """
    for step in steps.values():
        step()  # warm-up: first calls allocate and pick kernels
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


FEW_ROWS = 8  # up to this many rows (decoding) a product reads the packed weight; more rows use it as it is


@cache
def _measured_route(dtype: torch.dtype, few_rows: bool, threads: int) -> str:
    """Time both routes on a GPT-2-small-sized product and take the faster: one row against a packed
    weight (decoding), or 256 rows against the plain weight (prefill, training).

    oneDNN must win clearly (by 10%) to be chosen: a tie keeps PyTorch's default.
    """
    x = torch.randn(1 if few_rows else 256, 768, dtype=dtype)
    w = torch.randn(3072, 768, dtype=dtype)
    onednn_w = torch.ops.mkldnn._reorder_linear_weight(w, FEW_ROWS) if few_rows else w
    seconds = median_seconds_in_turns({"aten": lambda: F.linear(x, w),
                                       "onednn": lambda: _onednn_mm(x, onednn_w, None)})
    return "onednn" if seconds["onednn"] < 0.9 * seconds["aten"] else "aten"


def matmul_route(dtype: torch.dtype, rows: int = 256) -> str:
    """`onednn` or `aten` for CPU products of `rows` rows in `dtype`: forced by GPT_MATMUL, else measured once."""
    forced = os.environ.get(ROUTE_ENV, "").strip().lower()
    if forced and forced not in ROUTES:
        raise ValueError(f"{ROUTE_ENV} must be one of {', '.join(ROUTES)}, got {forced!r}")
    if dtype not in (torch.float32, torch.bfloat16) or not _onednn_available():
        return "aten"
    return forced or _measured_route(dtype, rows <= FEW_ROWS, torch.get_num_threads())


def weight_key(w: torch.Tensor) -> tuple:
    """What identifies a weight's current values: its storage, dtype and in-place version (inference tensors,
    made under `torch.inference_mode`, have no version: they cannot change outside it)."""
    return (w.data_ptr(), w.dtype, -1 if w.is_inference() else w._version)


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b with all three products of training (y, dx = dy W, dW = dy^T x) on oneDNN."""

    @staticmethod
    def forward(ctx, x2d: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x2d, weight)
        ctx.has_bias = bias is not None
        return _onednn_mm(x2d, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x2d, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_mm(grad_out, weight.t().contiguous(), None)  # (N, O) @ (O, K)
        if ctx.needs_input_grad[1]:
            grad_w = _onednn_mm(grad_out.t().contiguous(), x2d.t().contiguous(), None)  # (O, N) @ (N, K)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum(0)
        return grad_x, grad_w, grad_b


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, same state dict) whose CPU products take the measured-faster route."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self._packed_key: tuple | None = None
        self._packed = torch.empty(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if not x.is_cpu or x.dtype != w.dtype or torch.is_autocast_enabled("cpu"):
            return F.linear(x, w, self.bias)
        rows = x.numel() // x.shape[-1]
        if matmul_route(w.dtype, rows) != "onednn":
            return F.linear(x, w, self.bias)
        x2d = x.reshape(rows, x.shape[-1]).contiguous()
        if torch.is_grad_enabled() and (w.requires_grad or x.requires_grad):
            y = _OneDNNLinear.apply(x2d, w, self.bias)
        else:
            y = _onednn_mm(x2d, self._packed_weight() if rows <= FEW_ROWS else w, self.bias)
        return y.view(*x.shape[:-1], self.out_features)

    def __getstate__(self) -> dict:
        """Copies and pickles leave the packed weight behind (oneDNN's layout cannot be copied); it is remade."""
        state = super().__getstate__()
        return {**state, "_packed_key": None, "_packed": torch.empty(0)}

    def _packed_weight(self) -> torch.Tensor:
        """The weight in oneDNN's layout for few-row products, remade whenever the weight changes."""
        w = self.weight
        key = weight_key(w)
        if self._packed_key != key:
            self._packed, self._packed_key = torch.ops.mkldnn._reorder_linear_weight(w.detach(), FEW_ROWS), key
        return self._packed
