"""What the KV cache costs and saves: its shape and bytes at each length, and time per token with and without it.

Without a cache, every new token runs the whole text through the model again; with one, each layer
keeps the keys and values it has computed (`gpt.attention.KVCache`) and a step feeds one token.
The price is memory: 2 (keys, values) x layers x batch x tokens x key/value width numbers; grouped-query
attention (`n_kv_heads` < `n_heads`) narrows the keys and values and so shrinks it.
"""

from __future__ import annotations

import time
from statistics import median

from gpt.config import GPTConfig
from gpt.generate import SamplingConfig, stream
from gpt.model import GPTModel
from gpt.precision import bytes_per_element


def cache_shape(cfg: GPTConfig, tokens: int, batch_size: int = 1) -> tuple[int, ...]:
    """The shape of the keys (and, again, of the values) after `tokens` positions: (L, B, KV heads, T, head_dim)."""
    return cfg.n_layers, batch_size, cfg.kv_heads, tokens, cfg.head_dim


def cache_bytes(cfg: GPTConfig, tokens: int, dtype: str = "float32", batch_size: int = 1) -> int:
    """Bytes of keys plus values for `tokens` positions (at the full window, what `GPTConfig.memory_bytes` adds)."""
    return 2 * cfg.n_layers * batch_size * tokens * cfg.kv_dim * bytes_per_element(dtype)


def weights_bytes(cfg: GPTConfig, dtype: str = "float32") -> int:
    """Bytes of the model's tensors: its parameters, and a fixed position table if it has one."""
    return cfg.n_elements() * bytes_per_element(dtype)


def seconds_per_token(model: GPTModel, ids: list[int], n_tokens: int, use_cache: bool) -> float:
    """The median time between greedy tokens after the first (the first also reads the whole prompt).

    Without the cache, each of those steps runs the whole text so far through the model.
    """
    if n_tokens < 2:
        raise ValueError(f"time at least 2 tokens, got {n_tokens}")
    sampling = SamplingConfig(max_new_tokens=n_tokens, temperature=0, stop_at_eot=False)
    stamps = [time.perf_counter() for _ in stream(model, ids, sampling, use_cache=use_cache)]
    return median(b - a for a, b in zip(stamps, stamps[1:], strict=False))

