"""Low-rank adaptation (LoRA, the book's appendix E): finetune a few small matrices instead of the model.

A frozen linear layer W (out x in) gets a trainable update B @ A, with A (rank x in) and B
(out x rank), scaled by alpha / rank:  y = W x + (alpha / rank) * B (A x).  B starts at zero, so an
adapted model is exactly its base until training moves it. Scaling by alpha / rank (not alpha
alone) keeps the update's size independent of the rank, so one alpha works across ranks.

The targets are the blocks' linear layers by name, whatever the architecture switches: `qkv` is the
fused query|key|value projection, narrower with grouped-query attention (emb_dim + 2 x kv_dim
outputs), so one adapter updates the queries and the shared keys and values together; `fc` is
GELU's expansion or SwiGLU's fused gate|up, one adapter for both halves; `out_proj` and `proj` lead
back to the residual stream.

Only the adapters are saved (safetensors), with the sha256 of the base weights they were trained
on: loading them onto another base is refused, because the update means nothing without its W.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from gpt.config import config_from_dict
from gpt.files import atomic_path, write_text_atomic

ADAPTERS_FILE = "adapters.safetensors"
ADAPTERS_CONFIG = "adapters.json"
TARGETS = ("qkv", "out_proj", "fc", "proj")  # the attention's and the MLP's linear layers, by attribute name


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = TARGETS

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
        if not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha}")
        unknown = set(self.targets) - set(TARGETS)
        if unknown or not self.targets:
            raise ValueError(f"LoRA targets must be some of {', '.join(TARGETS)}, got {', '.join(self.targets)}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update; `merge()` folds the update into it."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scaling = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises its weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        return self.base(x) + (x @ self.lora_a.t().to(x.dtype)) @ self.lora_b.t().to(x.dtype) * self.scaling

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        """The base layer with W + scaling * B A written into its weight: same outputs, no extra cost."""
        delta = (self.lora_b.float() @ self.lora_a.float()) * self.scaling
        self.base.weight += delta.to(self.base.weight.dtype)
        return self.base


def _adapted(model: nn.Module) -> Iterable[tuple[str, LoRALinear]]:
    return ((name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear))


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> nn.Module:
    """Freeze every parameter, then wrap the target linear layers in adapters (the only trainable tensors).

    Trainable heads added afterwards (a classifier's output layer) stay trainable: they are new.
    """
    model.requires_grad_(False)
    targets = [(parent, attr) for parent in model.modules() for attr in cfg.targets
               if isinstance(getattr(parent, attr, None), nn.Linear)]
    if not targets:
        raise ValueError(f"the model has no linear layer named {', '.join(cfg.targets)}")
    for parent, attr in targets:
        setattr(parent, attr, LoRALinear(getattr(parent, attr), cfg.rank, cfg.alpha))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every adapter by its base layer with the update folded in (for inference and export)."""
    for name, module in list(_adapted(model)):
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, module.merge())
    return model


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{name}.{p}": getattr(m, p).detach().contiguous().cpu() for name, m in _adapted(model)
            for p in ("lora_a", "lora_b")}


def save_adapters(model: nn.Module, directory: str | Path, cfg: LoRAConfig, base_sha256: str) -> Path:
    """Write only the adapters (a few hundred KB) and what they need: their config and the base's digest."""
    directory = Path(directory)
    state = adapter_state(model)
    if not state:
        raise ValueError("the model has no LoRA adapters to save")
    with atomic_path(directory / ADAPTERS_FILE) as tmp:
        save_file(state, str(tmp))
    meta = {"lora": asdict(cfg), "base_sha256": base_sha256}
    write_text_atomic(directory / ADAPTERS_CONFIG, json.dumps(meta, indent=2) + "\n")
    return directory


def load_adapters(model: nn.Module, directory: str | Path, base_sha256: str) -> nn.Module:
    """Adapt `model` and load saved adapters into it; refuses adapters trained on another base."""
    directory = Path(directory)
    meta = json.loads((directory / ADAPTERS_CONFIG).read_text(encoding="utf-8"))
    if meta["base_sha256"] != base_sha256:
        raise ValueError(f"these adapters were trained on another base model (sha256 {meta['base_sha256'][:12]}…, "
                         f"this one is {base_sha256[:12]}…)")
    apply_lora(model, config_from_dict(LoRAConfig, meta["lora"]))  # a file's settings: typed as the fields say
    state = load_file(str(directory / ADAPTERS_FILE))
    expected = adapter_state(model)
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in state):
        raise ValueError(f"{directory / ADAPTERS_FILE} does not match this model's layers")
    model.load_state_dict(state, strict=False)
    return model


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
