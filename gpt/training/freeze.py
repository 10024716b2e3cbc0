"""Which weights a finetuning trains: the last N transformer blocks, the final norm and the head.

Chapters 6 and 7 both freeze the early layers, which hold what pretraining learnt about text, and
train the top of the model for the new task; both finetunings use this one rule.
"""

from __future__ import annotations

from gpt.model import GPTModel


def trainable_prefixes(n_layers: int, trainable_blocks: int | None) -> tuple[str, ...]:
    """State-dict name prefixes that finetuning changes; None (all layers) is the empty prefix."""
    if trainable_blocks is None:
        return ("",)
    if trainable_blocks > n_layers:
        raise ValueError(f"cannot unfreeze {trainable_blocks} blocks: the model has {n_layers}")
    blocks = tuple(f"trf_blocks.{i}." for i in range(n_layers - trainable_blocks, n_layers))
    return blocks + ("final_norm.", "out_head.")


def freeze_all_but_last_blocks(model: GPTModel, trainable_blocks: int | None) -> list[str]:
    """Freeze everything but the last `trainable_blocks` blocks, the final norm and the head (None: nothing
    frozen); returns the names of the parameters left trainable."""
    prefixes = trainable_prefixes(model.cfg.n_layers, trainable_blocks)
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
        if param.requires_grad:
            trainable.append(name)
    return trainable
