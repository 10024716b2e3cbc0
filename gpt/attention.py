"""Causal multi-head self-attention with a fused QKV projection and a preallocated KV cache.

With the config's switches the same class is the attention of today's open models: fewer key/value
heads than query heads (grouped-query attention), RMS-normalised queries and keys (QK-norm), and
rotary positions applied to queries and keys (`gpt.positions`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gpt.config import GPTConfig
from gpt.positions import apply_rotary

Rotary = tuple[torch.Tensor, torch.Tensor]  # cos, sin of the rotary angles at the positions being read, (T, hd/2)


class KVCache:
    """Keys and values of every layer, preallocated for the whole context window.

    Decoding writes one position per step in place: no concatenation, no reallocation, so a step
    costs the model call and nothing else.
    """

    def __init__(self, cfg: GPTConfig, batch_size: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        shape = (cfg.n_layers, batch_size, cfg.kv_heads, cfg.context_length, cfg.head_dim)  # fewer KV heads: smaller
        # Never zeroed: `update` returns only the positions written (zeroing a long context costs a whole step)
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.pos = 0  # number of positions already written
        self.capacity = cfg.context_length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, KV, T, hd) at the current position; return all keys/values so far."""
        end = self.pos + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache overflow: {end} positions > context length {self.capacity}")
        self.keys[layer, :, :, self.pos : end] = k
        self.values[layer, :, :, self.pos : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search keeps the surviving beams)."""
        self.keys = self.keys.index_select(1, index)
        self.values = self.values.index_select(1, index)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer_idx: int = 0):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.layer_idx = layer_idx
        # fused W_query|W_key|W_value; with grouped-query attention the keys and values are narrower. The heads'
        # width (q_dim = n_heads x head_dim) is the stream's unless head_width sets it apart (Qwen3).
        self.qkv = nn.Linear(cfg.emb_dim, cfg.q_dim + 2 * cfg.kv_dim, bias=cfg.qkv_bias)
        self.q_norm = nn.RMSNorm(cfg.head_dim, eps=cfg.eps_for("rmsnorm")) if cfg.qk_norm else None
        self.k_norm = nn.RMSNorm(cfg.head_dim, eps=cfg.eps_for("rmsnorm")) if cfg.qk_norm else None
        self.out_proj = nn.Linear(cfg.q_dim, cfg.emb_dim, bias=cfg.bias)
        self.drop_rate = cfg.drop_rate
        self.attn_dropout = nn.Dropout(cfg.drop_rate)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, need_weights: bool = False, rotary: Rotary | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, C) -> (B, T, C), and the (B, H, T, T_total) attention weights if asked for."""
        B, T, _ = x.shape
        H, KV, hd = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = self.qkv(x).split([H * hd, KV * hd, KV * hd], dim=-1)
        q, k, v = q.view(B, T, H, hd), k.view(B, T, KV, hd), v.view(B, T, KV, hd)
        if self.q_norm is not None:  # each head's vector on its own
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, hd), (B, KV, T, hd) twice
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        past = 0
        if cache is not None:
            past = cache.pos
            k, v = cache.update(self.layer_idx, k, v)  # (B, KV, past+T, hd)

        # Query i sits at absolute position past+i and may see keys 0..past+i.
        mask = None
        if T > 1 and past > 0:
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)

        if need_weights:  # the explicit product, for the heatmaps: the fused kernel does not return its weights
            k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)  # a group shares its KV
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B, H, T, past+T)
            if T > 1:
                allowed = mask if mask is not None else torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                scores = scores.masked_fill(~allowed, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            y = self.attn_dropout(weights) @ v
        else:
            weights, y = None, self.attend(q, k, v, mask)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, H * hd)  # re-assemble the heads side by side
        return self.out_proj(y), weights  # (B, T, C)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """softmax(q k^T / sqrt(hd)) v, (B, H, T, hd), by PyTorch's fused kernel, which never forms the weights.

        With fewer key/value heads than query heads, each group of H / KV query heads reads one key/value
        head (`enable_gqa`). A method of its own so that the fast variant (gpt/kernels.py) can change this step alone.
        """
        T = q.shape[2]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=(T > 1 and mask is None),
                                              dropout_p=self.drop_rate if self.training else 0.0,
                                              enable_gqa=k.shape[1] != q.shape[1])
