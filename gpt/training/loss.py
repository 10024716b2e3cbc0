"""The language-model loss (next-token cross-entropy), its held-out mean, and bits per byte."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from gpt.model import GPTModel
from gpt.precision import autocast

IGNORE_INDEX = -100  # targets cross_entropy skips: padding, and prompts masked out of instruction tuning


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of (B, T, V) logits against (B, T) next-token ids, in float32 whatever the logits."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                           reduction=reduction)


def bits_per_byte(total_nats: float, n_bytes: int) -> float:
    """Bits to encode a text over its UTF-8 bytes: comparable across tokenizers, unlike loss per token."""
    return total_nats / math.log(2) / n_bytes


def scoring_windows(tokens: np.ndarray, context_length: int) -> list[np.ndarray]:
    """Non-overlapping windows covering the whole text: every token after the first is scored once."""
    return [tokens[s:s + context_length + 1] for s in range(0, len(tokens) - 1, context_length)]


@torch.no_grad()
def heldout_loss(model: GPTModel, tokens: np.ndarray, max_windows: int | None = None, batch_size: int = 16,
                 precision: str = "float32") -> tuple[float, int]:
    """Mean next-token loss (nats) over a token stream, and the number of tokens it averages over.

    With `max_windows`, an evenly spaced subset of the windows (a quick, fixed estimate).
    """
    windows = scoring_windows(tokens, model.cfg.context_length)
    if max_windows is not None and max_windows < len(windows):
        windows = [windows[i] for i in np.linspace(0, len(windows) - 1, max_windows).astype(int)]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for i in range(0, len(windows), batch_size):
        group = windows[i:i + batch_size]
        for length in sorted({len(w) for w in group}):  # the last window is shorter
            rows = torch.from_numpy(np.stack([w for w in group if len(w) == length]).astype(np.int64)).to(device)
            with autocast(precision, device):
                logits = model(rows[:, :-1])
            total += lm_loss(logits, rows[:, 1:], reduction="sum").item()
            count += rows[:, 1:].numel()
    model.train(was_training)
    return total / max(count, 1), count
