"""AdamW's parameter groups and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay the matrices (linear weights, embeddings); never biases or LayerNorm gains/shifts.

    Decaying a norm's gain or a bias pulls it toward 0, which changes what the layer computes
    instead of regularising it. Frozen parameters are left out.
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # a tied head is the embedding: named once
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine_lr(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warmup from 0 to `lr`, then cosine decay to `min_lr` at `max_steps`."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))
