"""The optimizers (AdamW, or Muon with AdamW), the warmup + cosine schedule, and one training step to time."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from gpt.precision import autocast, fast_bfloat16
from gpt.training.loss import lm_loss

OPTIMIZERS = ("adamw", "muon")


def hidden_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable 2-D weights inside the transformer blocks (projections, MLPs, LoRA's A and B): what Muon takes.

    Embeddings, the output head, norms and biases are not hidden matrices: a row of an embedding is
    looked up alone, and a vector has no shape to orthogonalise.
    """
    return [p for name, p in model.named_parameters() if p.requires_grad and p.dim() == 2 and "trf_blocks." in name]


def param_groups(model: torch.nn.Module, weight_decay: float, leave_out: list[torch.nn.Parameter] | None = None
                 ) -> list[dict[str, Any]]:
    """Decay the matrices (linear weights, embeddings); never biases or norm gains/shifts.

    Decaying a norm's gain or a bias pulls it toward 0, which changes what the layer computes
    instead of regularising it. Frozen parameters, and those in `leave_out` (another optimizer's), are left out.
    """
    skip = {id(p) for p in leave_out or []}
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # a tied head is the embedding: named once
        if p.requires_grad and id(p) not in skip:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)  # the quintic's coefficients of Keller Jordan's Muon (and torch.optim.Muon)


def orthogonalize(matrix: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """About the nearest orthogonal matrix to `matrix` (U V^T of its SVD), by `steps` Newton-Schulz iterations;
    (rows, cols), or a batch of them (n, rows, cols).

    Each iteration X <- aX + (bA + cA^2)X with A = X X^T pushes every singular value toward 1 (to
    somewhere in 0.7-1.2, which trains as well as exactly 1) with matrix products alone, no SVD.
    """
    a, b, c = NEWTON_SCHULZ
    product = torch.addmm if matrix.dim() == 2 else torch.baddbmm  # beta * input + alpha * (m1 @ m2)
    x = matrix.to(dtype)
    tall = x.shape[-2] > x.shape[-1]
    if tall:  # iterate on the short side: X X^T is then the smaller Gram matrix
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=1e-7)  # singular values at most 1: where it converges
    for _ in range(steps):
        gram = x @ x.mT
        x = product(x, product(gram, gram, gram, beta=b, alpha=c), x, beta=a)  # aX + (bA + cA^2) X
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """Muon (MomentUm Orthogonalized by Newton-Schulz) for 2-D weights: torch.optim.Muon's algorithm with
    `adjust_lr_fn="match_rms_adamw"`, whose Newton-Schulz products run in `ns_dtype`.

    Each step: Nesterov momentum of the gradient, orthogonalised (every direction of the matrix then
    moves by the same amount, where Adam's update is dominated by a few), scaled by 0.2 sqrt(max(rows,
    cols)) so its size matches AdamW's and one learning rate serves both, after decoupled weight decay.
    torch.optim.Muon always orthogonalises in bfloat16, which a CPU without bfloat16 instructions
    multiplies several times slower than float32 (`gpt.precision.fast_bfloat16`): there this one uses
    float32, more exact and faster.
    """

    def __init__(self, params: list[torch.nn.Parameter], lr: float, weight_decay: float, momentum: float = 0.95,
                 ns_steps: int = 5, ns_dtype: torch.dtype = torch.bfloat16):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "ns_steps": ns_steps})
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            same_shape: dict[torch.Size, list[torch.nn.Parameter]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is not None:
                    same_shape[p.shape].append(p)
            for shape, params in same_shape.items():  # one batched orthogonalisation per shape: fewer, larger products
                nesterov = []
                for p in params:
                    momentum = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                    momentum.lerp_(p.grad, 1 - group["momentum"])
                    nesterov.append(p.grad.lerp(momentum, group["momentum"]))
                updates = orthogonalize(torch.stack(nesterov), group["ns_steps"], self.ns_dtype)
                for p, update in zip(params, updates, strict=True):
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update.to(p.dtype), alpha=-group["lr"] * 0.2 * math.sqrt(max(shape)))


class MuonWithAdamW:
    """Muon for the hidden matrices, AdamW for everything else, driven as one optimizer.

    The speedrun records of small GPTs use Muon for exactly these weights. `param_groups` lists both
    optimizers' groups (the schedule sets each group's lr); the state dict numbers their parameters one
    after the other, as one optimizer's would.
    """

    def __init__(self, adamw: torch.optim.Optimizer, muon: torch.optim.Optimizer | None):
        self.optimizers = [adamw] + ([muon] if muon is not None else [])

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.optimizers for group in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        state, groups, offset = {}, [], 0
        for opt in self.optimizers:
            sd = opt.state_dict()
            state |= {offset + i: s for i, s in sd["state"].items()}
            groups += [{**g, "params": [offset + i for i in g["params"]]} for g in sd["param_groups"]]
            offset += sum(len(g["params"]) for g in opt.param_groups)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups, offset = list(state_dict["param_groups"]), 0
        for opt in self.optimizers:
            mine, groups = groups[:len(opt.param_groups)], groups[len(opt.param_groups):]
            n = sum(len(g["params"]) for g in mine)
            opt.load_state_dict({
                "state": {i - offset: s for i, s in state_dict["state"].items() if offset <= int(i) < offset + n},
                "param_groups": [{**g, "params": [i - offset for i in g["params"]]} for g in mine]})
            offset += n


def make_optimizer(name: str, model: torch.nn.Module, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.999), fused: bool = False, decay_everything: bool = False
                   ) -> torch.optim.Optimizer | MuonWithAdamW:
    """`adamw`: AdamW over every trainable parameter; `muon`: Muon for the hidden matrices and AdamW for the rest
    (`MuonWithAdamW`).

    AdamW decays the matrices only (`param_groups`); `decay_everything` decays biases and norms too, as the
    finetunes always have: their recorded runs stay reproducible.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    hidden = hidden_matrices(model) if name == "muon" else []
    groups = param_groups(model, weight_decay, leave_out=hidden)
    if decay_everything:
        groups = [{"params": [p for g in groups for p in g["params"]], "weight_decay": weight_decay}]
    adamw = torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
    if name == "adamw":
        return adamw
    if not hidden:
        return MuonWithAdamW(adamw, None)
    ns_dtype = torch.bfloat16 if fast_bfloat16(hidden[0].device.type) else torch.float32
    return MuonWithAdamW(adamw, Muon(hidden, lr=lr, weight_decay=weight_decay, ns_dtype=ns_dtype))


def warmup_cosine_lr(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warmup from 0 to `lr`, then cosine decay to `min_lr` at `max_steps`."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def training_step(model: torch.nn.Module, logits_of: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor,
                  precision: str = "float32", optimizer: str = "adamw") -> Callable[[], None]:
    """A closure running one step on `batch` (B, T+1): forward, loss, backward, clipping, the optimizer's step
    (`make_optimizer`'s, fused), in `precision` (`gpt.precision.autocast`).

    `logits_of` maps inputs to logits, so any model (ours, transformers') runs the same step. The optimizer is
    part of the step: Muon's orthogonalisation can cost more than the model's own step on a CPU.
    """
    opt = make_optimizer(optimizer, model, lr=1e-4, weight_decay=0.1, fused=True)
    inputs, targets = batch[:, :-1], batch[:, 1:]

    def step() -> None:
        with autocast(precision, batch.device):
            loss = lm_loss(logits_of(inputs), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def seconds_per_step(model: torch.nn.Module, batch: torch.Tensor, steps: int = 2, optimizer: str = "adamw",
                     precision: str = "auto") -> float:
    """A measured time per training step of `model` with `optimizer`: `steps` timed steps after one warm-up step,
    in the trainer's precision by default (`auto`: bfloat16 where this machine multiplies it faster)."""
    step = training_step(model.train(), model, batch, precision, optimizer)
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps
