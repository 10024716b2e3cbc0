"""Fixed position encodings: the sinusoidal table added to token embeddings, and rotary positions (RoPE).

Learned positions are an `nn.Embedding` in `gpt/model.py`. The two here are formulas with no
weights: a sinusoidal table is added once, at the input; rotary positions never touch the residual
stream and instead turn every query and key inside attention by an angle proportional to its position.
"""

from __future__ import annotations

import math

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


def rotary_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """The angle per position of each pair of a head, (head_dim // 2,) in float64: 1 / base^(2i/hd)."""
    return 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)


def llama3_scaled(inv_freq: torch.Tensor, factor: float, low_freq_factor: float, high_freq_factor: float,
                  original_context: int) -> torch.Tensor:
    """Llama 3.1's stretch of rotary frequencies (`rope_type: llama3`), so a model trained on `original_context`
    tokens reads `factor` times more.

    A pair whose wavelength (2 pi / frequency: positions per full turn) is shorter than original_context /
    high_freq_factor turns many times within the old window and keeps its frequency: it measures short
    offsets, which stay the same. One longer than original_context / low_freq_factor never turned once in
    training: it is slowed by `factor`, so the longer window spans angles the model has seen. Between the two,
    the frequency is blended linearly in original_context / wavelength.
    """
    wavelength = 2 * math.pi / inv_freq
    turns = original_context / wavelength  # full turns within the original window
    blend = ((turns - low_freq_factor) / (high_freq_factor - low_freq_factor)).clamp(0.0, 1.0)  # 0: slowed, 1: kept
    return (1 - blend) * inv_freq / factor + blend * inv_freq


def rotary_tables(context_length: int, head_dim: int, base: float = 10000.0,
                  inv_freq: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, each (context_length, head_dim // 2): angle[pos, i] = pos / base^(2i/hd),
    or pos * inv_freq[i] where the frequencies are given (stretched by `llama3_scaled`).

    Pair i of a head turns at its own frequency, fast for the first pairs, slow for the last.
    Computed in float64 for the same reason as the sinusoidal table.
    """
    if inv_freq is None:
        inv_freq = rotary_frequencies(head_dim, base)  # (hd/2,)
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
        inv_freq = rotary_frequencies(cfg.head_dim, cfg.rope_base)
        if cfg.rope_scaling is not None:
            inv_freq = llama3_scaled(inv_freq, cfg.rope_scaling, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor,
                                     cfg.rope_original_context)
        cos, sin = rotary_tables(cfg.context_length, cfg.head_dim, inv_freq=inv_freq)
        return {"rope_cos": cos, "rope_sin": sin}
    return {}
