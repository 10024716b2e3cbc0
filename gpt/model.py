"""The GPT-2 architecture: embeddings, a stack of pre-norm transformer blocks, an output head.

The config's switches swap single parts for those of today's open models (RMSNorm, SwiGLU, rotary
positions in `gpt.positions`, grouped-query attention and QK-norm in `gpt.attention`); with none of
them on, this is GPT-2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gpt.attention import CausalSelfAttention, KVCache, Rotary
from gpt.config import GPTConfig
from gpt.positions import position_tables


def norm_layer(cfg: GPTConfig) -> nn.Module:
    """The normalisation before each sublayer and at the end: LayerNorm (GPT-2) or RMSNorm (Llama, Qwen).

    RMSNorm skips the mean and the shift: x / rms(x) * gain, one reduction fewer, and trains as well.
    """
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.emb_dim, eps=cfg.eps_for("rmsnorm"))
    return nn.LayerNorm(cfg.emb_dim, eps=cfg.eps_for("layernorm"), bias=cfg.bias)


class FeedForward(nn.Module):
    """The position-wise MLP: expand (4x), GELU (GPT-2's tanh approximation), project back."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.emb_dim, cfg.hidden_dim, bias=cfg.bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.proj = nn.Linear(cfg.hidden_dim, cfg.emb_dim, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.gelu(self.fc(x)))


class SwiGLU(nn.Module):
    """The gated MLP of Llama and Qwen: proj(silu(gate(x)) * up(x)).

    The gate decides, unit by unit, how much of the second expansion passes: a multiplicative
    interaction GELU's single path lacks, which trains to a lower loss at the same parameter count.
    Gate and up share one fused `fc` (out: 2 x hidden), as the attention fuses q, k and v.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.emb_dim, 2 * cfg.hidden_dim, bias=cfg.bias)  # W_gate | W_up
        self.proj = nn.Linear(cfg.hidden_dim, cfg.emb_dim, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc(x).chunk(2, dim=-1)  # (B, T, hidden) each
        return self.proj(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig, layer_idx: int):
        super().__init__()
        self.norm1 = norm_layer(cfg)
        self.att = CausalSelfAttention(cfg, layer_idx)
        self.norm2 = norm_layer(cfg)
        self.ff = SwiGLU(cfg) if cfg.mlp == "swiglu" else FeedForward(cfg)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, need_weights: bool = False, rotary: Rotary | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_out, weights = self.att(self.norm1(x), cache, need_weights, rotary)
        x = x + self.drop_shortcut(attn_out)
        x = x + self.drop_shortcut(self.ff(self.norm2(x)))
        return x, weights


class GPTModel(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        if cfg.positions == "learned":
            self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        # Sinusoidal: a table added to the tokens; rotary: nothing is added, attention turns queries and keys by
        # the angles of `rope_cos` / `rope_sin` (context_length, head_dim / 2). Moved and cast with the model.
        for name, table in position_tables(cfg).items():
            self.register_buffer(name, table, persistent=False)
        # The paper scales token embeddings by sqrt(emb_dim) beside its table, whose entries are of size 1: at
        # GPT-2's initial std of 0.02 the tokens are drowned by the positions and the model does not learn.
        self.emb_scale = math.sqrt(cfg.emb_dim) if cfg.positions == "sinusoidal" else 1.0
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.ModuleList(TransformerBlock(cfg, i) for i in range(cfg.n_layers))
        self.final_norm = norm_layer(cfg)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layers) so the stream's variance
        # does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("att.out_proj.weight", "ff.proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def hidden_states(
        self, idx: torch.Tensor, cache: KVCache | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """idx (B, T) -> final-norm output (B, T, C), plus each layer's (B, H, T, T) weights if asked."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.cfg.context_length:
            raise ValueError(f"{start + T} positions exceed the context length {self.cfg.context_length}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.tok_emb(idx) * self.emb_scale  # (B, T, C)
        rotary = self.rotary(start, T)
        if rotary is None:
            x = x + self.position_vectors(pos)
        x = self.drop_emb(x)
        attentions = []
        for block in self.trf_blocks:
            x, weights = block(x, cache, need_weights, rotary)
            if weights is not None:
                attentions.append(weights)
        if cache is not None:
            cache.pos += T
        return self.final_norm(x), attentions

    def rotary(self, start: int, length: int) -> Rotary | None:
        """cos and sin (length, hd/2) of the rotary angles at positions start..start+length; None without rotary."""
        if self.cfg.positions != "rotary":
            return None
        return self.rope_cos[start:start + length], self.rope_sin[start:start + length]

    def position_vectors(self, pos: torch.Tensor) -> torch.Tensor:
        """Positions (T,) -> the vectors (T, C) added to the token embeddings: learned rows or the sin/cos table.

        Rotary positions add nothing to the tokens (they act inside attention): zeros.
        """
        if self.cfg.positions == "learned":
            return self.pos_emb(pos)
        if self.cfg.positions == "sinusoidal":
            return self.pos_table[pos]
        return self.tok_emb.weight.new_zeros(len(pos), self.cfg.emb_dim)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, last_only: bool = False) -> torch.Tensor:
        """idx (B, T) -> logits (B, T, vocab), or (B, 1, vocab) for the last position only."""
        x, _ = self.hidden_states(idx, cache)  # (B, T, C)
        if last_only:
            x = x[:, -1:]  # (B, 1, C): generating needs one row of the (large) output head, not T
        return self.out_head(x)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer attention weights, each (B, H, T, T): what the heatmaps show."""
        _, attentions = self.hidden_states(idx, need_weights=True)
        return attentions

    def new_cache(self, batch_size: int = 1) -> KVCache:
        p = self.tok_emb.weight  # the activations' dtype (an int8 model's head has no float weight)
        return KVCache(self.cfg, batch_size, device=p.device, dtype=p.dtype)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # shared (tied) tensors count once


def empty_model(cfg: GPTConfig, dtype: torch.dtype = torch.float32) -> GPTModel:
    """A GPTModel in `dtype` whose tensors are allocated but not initialised, for a loader that overwrites them all.

    Random initialisation of a billion parameters takes longer than reading them, so the model is built on the
    meta device and only then given memory; the position tables, constants of the config, are built for real.
    """
    with torch.device("meta"):
        model = GPTModel(cfg)
    model = model.to(dtype).to_empty(device="cpu")
    if cfg.tie_weights:  # to_empty gives each parameter its own storage, which unties the head
        model.out_head.weight = model.tok_emb.weight
    for name, table in position_tables(cfg).items():  # to_empty left them as garbage
        setattr(model, name, table.to(dtype))
    return model
