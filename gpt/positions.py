"""Fixed position encodings: the sinusoidal table added to token embeddings, and rotary positions (RoPE).

Learned positions are an `nn.Embedding` in `gpt/model.py`. The two here are formulas with no
weights: a sinusoidal table is added once, at the input; rotary positions never touch the residual
stream and instead turn every query and key inside attention by an angle proportional to its position.
"""

from __future__ import annotations

import torch

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


def rotary_tables(context_length: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, each (context_length, head_dim // 2): angle[pos, i] = pos / base^(2i/hd).

    Pair i of a head turns at its own frequency, fast for the first pairs, slow for the last.
    Computed in float64 for the same reason as the sinusoidal table.
    """
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
    angles = torch.arange(context_length, dtype=torch.float64)[:, None] * inv_freq  # (T, hd/2)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Turn each pair (x[i], x[i + hd/2]) of every head by its angle. x (B, H, T, hd); cos, sin (T, hd/2).

    The pairs are the two halves of the head (the layout of Llama and Qwen checkpoints), not
    neighbours. Because a query at position m and a key at position n are turned by m and n, their dot
    product depends on m - n only: attention sees how far back a token is, not where it is.
    """
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, hd/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def position_tables(cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """The fixed tables a `GPTModel` of `cfg` keeps as buffers, by name: constants of the config, never saved,
    rebuilt wherever a model is built or loaded."""
    if cfg.positions == "sinusoidal":
        return {"pos_table": sinusoidal_positions(cfg.context_length, cfg.emb_dim)}
    if cfg.positions == "rotary":
        cos, sin = rotary_tables(cfg.context_length, cfg.head_dim, cfg.rope_base)
        return {"rope_cos": cos, "rope_sin": sin}
    return {}
