"""The fast variants of the teaching model's modules, and `accelerate`, which swaps them in after construction.

`GPTModel` reads like the book: plain `nn.Linear` layers and one attention call. `accelerate(model)`
gives the same modules the classes below, which compute the same function by faster routes on a CPU:

- `Linear`: matrix products by the fastest exact route the CPU has, PyTorch's default (MKL) or oneDNN;
- `OutputHead`: decoding reads the head's weight from a transposed copy where the default route decodes
  and the copy is measured faster;
- `DecodeAttention`: a half-precision decoding step attends in float32.

Each module keeps its identity, parameters and state; only its class changes (as
`torch.nn.utils.parametrize` does), so tied weights stay tied, an optimizer made before goes on
training the same tensors, and a LoRA adapter keeps its base layer.

`Linear`: on AMD processors MKL takes a slower, non-AVX-512 code path for float32 matrix products, while
oneDNN (also inside every PyTorch CPU build) does not; on Intel processors the two are close. Which
is faster is measured once per process and dtype on this machine, never assumed, and either route
computes in the weight's own precision with float32 accumulation, so outputs agree within float
rounding. `GPT_MATMUL=aten|onednn` forces a route (tests, reproducing a figure).

Training goes through an autograd function whose backward products also run on oneDNN. Inference
(no gradient) reads the weight in oneDNN's blocked layout, packed once per weight version: one-row
products (decoding) then stream memory close to its bandwidth. The weight is packed for `FEW_ROWS`
rows, not one: packed for a single row oneDNN keeps the plain layout and its AVX2 kernel even where
the CPU has AVX-512, and reads memory about a third slower. The packed copy costs the weight's
size again in memory: decoding trades memory for speed.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from functools import cache
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from gpt.attention import CausalSelfAttention
from gpt.model import GPTModel

ROUTES = ("aten", "onednn")
ROUTE_ENV = "GPT_MATMUL"
ModuleT = TypeVar("ModuleT", bound=nn.Module)


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
def _onednn_supports(dtype: torch.dtype) -> bool:
    """Whether oneDNN multiplies in `dtype` on this CPU. Its bfloat16 products need AVX-512 (or AVX-NE-CONVERT),
    which PyTorch checks only when a product is made: tried once on a small one."""
    if dtype not in (torch.float32, torch.bfloat16) or not (torch.backends.mkldnn.is_available()
                                                            and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    w = torch.ones(16, 16, dtype=dtype)
    try:
        _onednn_mm(torch.ones(1, 16, dtype=dtype), torch.ops.mkldnn._reorder_linear_weight(w, FEW_ROWS), None)
        _onednn_mm(torch.ones(16, 16, dtype=dtype), w, None)
    except RuntimeError:
        return False
    return True


@cache
def _measured_route(dtype: torch.dtype, few_rows: bool, threads: int) -> str:
    """Time both routes on a GPT-2-small-sized product and take the faster: one row against a packed
    weight (decoding), or 256 rows against the plain weight (prefill, training).

    oneDNN must win clearly (by 10%) to be chosen: a tie keeps PyTorch's default.
    """
    gen = torch.Generator().manual_seed(0)  # its own: the global RNG (training's) is untouched
    x = torch.randn(1 if few_rows else 256, 768, dtype=dtype, generator=gen)
    w = torch.randn(3072, 768, dtype=dtype, generator=gen)
    onednn_w = torch.ops.mkldnn._reorder_linear_weight(w, FEW_ROWS) if few_rows else w
    seconds = median_seconds_in_turns({"aten": lambda: F.linear(x, w),
                                       "onednn": lambda: _onednn_mm(x, onednn_w, None)})
    return "onednn" if seconds["onednn"] < 0.9 * seconds["aten"] else "aten"


def matmul_route(dtype: torch.dtype, rows: int = 256) -> str:
    """`onednn` or `aten` for CPU products of `rows` rows in `dtype`: forced by GPT_MATMUL, else measured once
    (`aten` wherever oneDNN has no product in `dtype`)."""
    forced = os.environ.get(ROUTE_ENV, "").strip().lower()
    if forced and forced not in ROUTES:
        raise ValueError(f"{ROUTE_ENV} must be one of {', '.join(ROUTES)}, got {forced!r}")
    if not _onednn_supports(dtype):
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
        self._copies: dict[str, tuple[tuple, torch.Tensor]] = {}  # see _weight_copy

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
        """Copies and pickles leave the weight's copies behind (oneDNN's layout cannot be copied); they are remade."""
        return {**super().__getstate__(), "_copies": {}}

    def _packed_weight(self) -> torch.Tensor:
        """The weight in oneDNN's layout for few-row products."""
        return self._weight_copy("packed", lambda w: torch.ops.mkldnn._reorder_linear_weight(w, FEW_ROWS))

    def _weight_copy(self, name: str, make: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """A copy of the weight in another layout, made by `make` and remade whenever the weight changes."""
        w = self.weight
        key = weight_key(w)
        if name not in self._copies or self._copies[name][0] != key:
            self._copies[name] = (key, make(w.detach()))
        return self._copies[name][1]


@cache
def transposed_head_wins(dtype: torch.dtype, threads: int) -> bool:
    """Whether one row times a contiguous (C, vocab) copy of a head's weight beats `F.linear` over the (vocab, C)
    weight itself, measured once per process, dtype and thread count on a head-shaped product far larger than
    the caches. It wins in float32 on the CPUs measured; in bfloat16 without native bfloat16 instructions
    PyTorch has no vector code for the copy's layout and it loses by far."""
    gen = torch.Generator().manual_seed(0)  # its own: the global RNG (training's) is untouched
    w = torch.randn(16384, 768, dtype=dtype, generator=gen)
    x = torch.randn(1, 768, dtype=dtype, generator=gen)
    w_t = w.t().contiguous()
    seconds = median_seconds_in_turns({"plain": lambda: F.linear(x, w), "transposed": lambda: x @ w_t})
    return seconds["transposed"] < 0.9 * seconds["plain"]


class OutputHead(Linear):
    """The output head, whose decoding reads a contiguous (C, vocab) copy of the weight where PyTorch's
    default route decodes and the copy is measured faster (oneDNN's route reads its packed copy instead).

    For one row of activations, x @ W.T over the row-major (vocab, C) weight streams memory at about
    half the rate of x @ W_t over a contiguous (C, vocab) copy on the CPUs measured in float32. The head
    is a third of GPT-2 small's weights, so decoding trades the copy's memory for speed.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        decoding = x.dim() == 3 and x.shape[1] == 1  # one position per sequence: GPTModel's last_only
        if (decoding and x.is_cpu and not torch.is_grad_enabled() and matmul_route(x.dtype, 1) == "aten"
                and transposed_head_wins(x.dtype, torch.get_num_threads())):
            logits = x @ self._weight_copy("transposed", lambda w: w.t().contiguous())  # (B, 1, vocab)
            return logits if self.bias is None else logits + self.bias
        return super().forward(x)


class DecodeAttention(CausalSelfAttention):
    """Attention whose half-precision decoding step on a CPU attends in float32.

    PyTorch's attention kernel is several times slower in bfloat16 than in float32 for one query, so
    the small q, k, v are widened (which is also more exact) and the result narrowed back.
    """

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        dtype = q.dtype
        if q.shape[2] == 1 and not self.training and q.is_cpu and dtype in (torch.bfloat16, torch.float16):
            return super().attend(q.float(), k.float(), v.float(), mask).to(dtype)
        return super().attend(q, k, v, mask)


def accelerate(model: ModuleT) -> ModuleT:
    """Give the model's modules their fast classes, in place, and return the model.

    Every `nn.Linear` becomes a `Linear` (a `GPTModel`'s head an `OutputHead`) and every attention a
    `DecodeAttention`. Layers that are already fast, int8 layers and any other subclass are left as
    they are, so the call can be repeated, and made before or after LoRA or int8; the model can
    train afterwards.
    """
    heads = {id(m.out_head) for m in model.modules() if isinstance(m, GPTModel)}
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = OutputHead if id(module) in heads else Linear
            module._copies = {}
        elif type(module) is CausalSelfAttention:
            module.__class__ = DecodeAttention
    return model
