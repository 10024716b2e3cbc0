"""The GPT-2 architecture: embeddings, a stack of pre-LayerNorm transformer blocks, an output head."""

from __future__ import annotations

import math

import torch
from torch import nn

from gpt.attention import CausalSelfAttention, KVCache
from gpt.config import GPTConfig


def sinusoidal_positions(context_length: int, emb_dim: int) -> torch.Tensor:
    """The (context_length, emb_dim) table of 'Attention is all you need': PE[pos, 2i] = sin(pos / 10000^(2i/d)),
    PE[pos, 2i+1] = cos(pos / 10000^(2i/d)).

    Each pair of columns turns at its own frequency, so PE[pos + k] is the same rotation of PE[pos]
    for every pos: an offset looks alike anywhere in the window. Computed in float64, as float32
    loses digits of the larger angles.
    """
    pos = torch.arange(context_length, dtype=torch.float64)[:, None]
    angles = pos / 10000.0 ** (torch.arange(0, emb_dim, 2, dtype=torch.float64) / emb_dim)  # (T, ceil(d/2))
    table = torch.empty(context_length, emb_dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : emb_dim // 2])  # an odd width has one sine column more
    return table.float()


class FeedForward(nn.Module):
    """The position-wise MLP: expand 4x, GELU (GPT-2's tanh approximation), project back."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim)
        self.gelu = nn.GELU(approximate="tanh")
        self.proj = nn.Linear(4 * cfg.emb_dim, cfg.emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.gelu(self.fc(x)))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig, layer_idx: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.emb_dim, eps=1e-5)
        self.att = CausalSelfAttention(cfg, layer_idx)
        self.norm2 = nn.LayerNorm(cfg.emb_dim, eps=1e-5)
        self.ff = FeedForward(cfg)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_out, weights = self.att(self.norm1(x), cache, need_weights)
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
        else:  # a constant of the config: not saved, rebuilt on load (and moved and cast with the model)
            self.register_buffer("pos_table", sinusoidal_positions(cfg.context_length, cfg.emb_dim),
                                 persistent=False)
        # The paper scales token embeddings by sqrt(emb_dim) beside its table, whose entries are of size 1: at
        # GPT-2's initial std of 0.02 the tokens are drowned by the positions and the model does not learn.
        self.emb_scale = 1.0 if cfg.positions == "learned" else math.sqrt(cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.ModuleList(TransformerBlock(cfg, i) for i in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.emb_dim, eps=1e-5)
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
        x = self.drop_emb(self.tok_emb(idx) * self.emb_scale + self.position_vectors(pos))  # (B, T, C)
        attentions = []
        for block in self.trf_blocks:
            x, weights = block(x, cache, need_weights)
            if weights is not None:
                attentions.append(weights)
        if cache is not None:
            cache.pos += T
        return self.final_norm(x), attentions

    def position_vectors(self, pos: torch.Tensor) -> torch.Tensor:
        """Positions (T,) -> the vectors (T, C) added to the token embeddings: learned rows or the sin/cos table."""
        return self.pos_emb(pos) if self.cfg.positions == "learned" else self.pos_table[pos]

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
