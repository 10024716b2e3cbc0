"""What this machine allows: memory bandwidth and matrix-product peak, measured in the same run.

A decode step reads every weight once, so bytes of weights / bandwidth is the fastest a token can
come; training and prefill are bound by the matrix products, so their FLOP/s over the measured peak
is the model FLOP utilisation. Both are measured, not looked up: the machines are shared.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from gpt.config import GPTConfig
from gpt.kernels import _onednn_mm, _onednn_supports


def memory_read(n_bytes: int = 2 * 1024**3) -> Callable[[], torch.Tensor]:
    """A full read of a buffer far larger than the caches (`x.sum()`): n_bytes over its seconds is the
    memory bandwidth. Time it in turns with the workload it bounds, so that both meet the same load."""
    return torch.ones(n_bytes // 4).sum


def matmul_peak(dtype: torch.dtype = torch.float32, repeats: int = 7) -> float:
    """FLOP/s of the fastest of PyTorch's and oneDNN's products on a large GPT-2-small-shaped matrix: the best
    single call, since a peak is what the machine reaches when nothing else runs."""
    x, w = torch.randn(2048, 768, dtype=dtype), torch.randn(3072, 768, dtype=dtype)
    steps = {"aten": lambda: torch.nn.functional.linear(x, w)}
    if _onednn_supports(dtype):
        steps["onednn"] = lambda: _onednn_mm(x, w, None)
    for step in steps.values():
        step()
    seconds = []
    for _ in range(repeats):
        for step in steps.values():
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
    return 2 * x.shape[0] * w.shape[0] * w.shape[1] / min(seconds)


def training_flops_per_token(cfg: GPTConfig, seq_len: int) -> float:
    """Forward and backward FLOPs per token: 6 per weight of the products, plus attention's scores and sums
    (PaLM's appendix B accounting; the embedding lookups are not products)."""
    weights = cfg.n_layers * 12 * cfg.emb_dim**2 + cfg.emb_dim * cfg.vocab_size
    return 6 * weights + 12 * cfg.n_layers * cfg.emb_dim * seq_len
