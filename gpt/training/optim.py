"""AdamW's parameter groups, the warmup + cosine learning-rate schedule, and one training step to time."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from gpt.precision import autocast
from gpt.training.loss import lm_loss


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


def training_step(model: torch.nn.Module, logits_of: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor,
                  precision: str = "float32") -> Callable[[], None]:
    """A closure running one step on `batch` (B, T+1): forward, loss, backward, clipping, fused AdamW.

    `logits_of` maps inputs to logits, so any model (ours, transformers') runs the same step.
    """
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4, fused=True)
    inputs, targets = batch[:, :-1], batch[:, 1:]

    def step() -> None:
        with autocast(precision, "cpu"):
            loss = lm_loss(logits_of(inputs), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def seconds_per_step(model: torch.nn.Module, batch: torch.Tensor, steps: int = 2) -> float:
    """A measured time per training step of `model`: `steps` timed steps after one warm-up step."""
    step = training_step(model.train(), model, batch)
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps
