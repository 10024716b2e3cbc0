"""Instruction finetuning (the book's chapter 7): Alpaca prompts tokenized, padded and masked, and
the training loop.

`finetune_instruct` trains with AdamW and writes a checkpoint after each epoch: every weight, only
the last N blocks, or LoRA adapters (the book's appendix E) with the rest frozen; a LoRA run saves
the merged model (a plain checkpoint) and, beside it, the adapters alone. It reports through a
`TrainingMonitor` (the command line draws a progress bar, the app streams the events), with the
trainable parameters, the seconds per epoch and the peak memory, and, asked to stop, saves what it
has and returns normally.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gpt.checkpoint import Checkpoint, save_checkpoint
from gpt.config import GPTConfig, check_options, config_from_dict, option
from gpt.instruct.data import Entry
from gpt.instruct.prompt import format_prompt
from gpt.lora import LoRAConfig, apply_lora, merge_lora, save_adapters, trainable_parameters
from gpt.memory import peak_memory, peak_memory_source
from gpt.model import GPTModel
from gpt.precision import AUTOCAST_CHOICES, autocast
from gpt.tokenizer import PRETOKENIZERS, Tokenizer
from gpt.training import limits
from gpt.training.events import TrainingMonitor
from gpt.training.freeze import freeze_all_but_last_blocks
from gpt.training.loop import EpochLoop, StepOutput, padded_width
from gpt.training.loss import IGNORE_INDEX, lm_loss
from gpt.training.optim import OPTIMIZERS, make_optimizer

# -- data ----------------------------------------------------------------------------------------


class InstructionDataset(Dataset):
    """Pre-tokenized entries: (prompt + response ids, prompt length), for the collate to pad and mask.

    Prompt and response are encoded apart: the response header ends in a newline, which GPT-2's
    pre-tokenizer always splits off, so this equals encoding the whole text and tells us exactly
    where the response starts.
    """

    def __init__(self, entries: Sequence[Entry], tokenizer: Tokenizer):
        self.items = []
        for entry in entries:
            prompt = tokenizer.encode(format_prompt(entry))
            self.items.append((prompt + tokenizer.encode(entry["output"]), len(prompt)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.items[i]


def collate(batch: Sequence[tuple[list[int], int]], pad_token_id: int, ignore_index: int = IGNORE_INDEX,
            allowed_max_length: int | None = None, mask_prompt: bool = False, round_width: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a batch with end-of-text, shift targets by one, and mask what the loss must not see.

    Each sequence gets one end-of-text appended; it stays a target (the model learns to stop), every
    later padding target becomes `ignore_index`. With `mask_prompt` the prompt's targets are ignored
    too, so only the response is learned. Both tensors are cropped to `allowed_max_length`. The book
    pads to the longest sequence; `round_width` rounds that up (`padded_width`: a training run then sees
    a few batch shapes, which keeps its memory flat); the extra positions are ignored targets.
    """
    width = max(len(ids) for ids, _ in batch) + 1
    if round_width:
        width = padded_width(width - 1, allowed_max_length) + 1
    inputs = torch.full((len(batch), width - 1), pad_token_id, dtype=torch.long)
    targets = torch.full((len(batch), width - 1), ignore_index, dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(batch):
        n = len(ids)
        inputs[row, :n] = torch.tensor(ids)
        targets[row, : n - 1] = torch.tensor(ids[1:])
        targets[row, n - 1] = pad_token_id  # the first end-of-text: kept
        if mask_prompt:
            targets[row, : prompt_len - 1] = ignore_index  # position prompt_len-1 predicts the response
    if allowed_max_length is not None:
        inputs, targets = inputs[:, :allowed_max_length], targets[:, :allowed_max_length]
    return inputs, targets


class LengthGroupedBatches(Sampler[list[int]]):
    """Full batches of entries of about the same length, in a seeded random order (Hugging Face's
    `group_by_length`): each epoch shuffles the entries, sorts each run of `group` batches by length,
    cuts it into batches and shuffles the batches. A batch pads to its longest entry, so on data that
    mixes one-word answers with sentences this trains the same entries on a third fewer tokens."""

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator, group: int = 50):
        self.lengths, self.batch_size, self.generator, self.group = list(lengths), batch_size, generator, group

    def __len__(self) -> int:
        return len(self.lengths) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()[: len(self) * self.batch_size]
        batches = []
        for start in range(0, len(order), self.batch_size * self.group):
            run = sorted(order[start:start + self.batch_size * self.group], key=self.lengths.__getitem__)
            batches += [run[i:i + self.batch_size] for i in range(0, len(run), self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]


def make_loader(entries: Sequence[Entry], tokenizer: Tokenizer, context_length: int, batch_size: int,
                mask_prompt: bool, shuffle: bool, seed: int = 123, group_by_length: bool = False) -> DataLoader:
    """Batches of (inputs, targets); a shuffled (training) loader drops its last partial batch and, with
    `group_by_length`, batches entries of about the same length together."""
    def collate_batch(batch: Sequence[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor]:
        return collate(batch, tokenizer.eot_id, allowed_max_length=context_length, mask_prompt=mask_prompt,
                       round_width=True)

    dataset = InstructionDataset(entries, tokenizer)
    generator = torch.Generator().manual_seed(seed)
    if shuffle and group_by_length:
        batches = LengthGroupedBatches([len(ids) for ids, _ in dataset.items], batch_size, generator)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate_batch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle, collate_fn=collate_batch,
                      generator=generator)


# -- training ------------------------------------------------------------------------------------

def _blocks(value: str) -> int | None:
    """`--trainable-blocks`: a number of blocks, or 'all' (None: every layer)."""
    return None if value.lower() in ("all", "none") else int(value)


_blocks.__name__ = "int"  # argparse names the type in its error message


@dataclass(frozen=True)
class InstructConfig:
    """Hyperparameters of an instruction finetuning run."""

    epochs: int = option(2, "passes over the training entries; a checkpoint is written after each",
                         low=1, high=limits.MAX_EPOCHS)
    batch_size: int = option(8, "entries per optimizer step", low=1, high=limits.MAX_BATCH)
    lr: float = option(5e-5, "AdamW learning rate (constant)", low=limits.MIN_LR, high=limits.MAX_LR)
    weight_decay: float = option(0.1, "AdamW weight decay", low=0.0, high=1.0)
    optimizer: str = option("adamw", "adamw, or muon for the blocks' matrices with AdamW for the rest",
                            choices=OPTIMIZERS)
    mask_prompt: bool = option(False, "learn the response only: the prompt's targets are left out of the loss")
    group_by_length: bool = option(False, "batch training entries of about the same length together (less padding)")
    seed: int = option(123, "seeds the training (batch order, dropout) and, on the command line, the split",
                       low=0, high=limits.MAX_SEED)
    autocast: str = option("auto", "bfloat16: matmuls in bf16 over fp32 master weights; float32: exact; auto: "
                           "bfloat16 where this machine multiplies it faster (gpt.precision.fast_bfloat16)",
                           choices=AUTOCAST_CHOICES)
    lora_rank: int = option(0, "0: the weights themselves train; N > 0: LoRA adapters of rank N on the attention "
                               "and MLP linears train, every weight frozen (the saved model is the merged one)",
                            low=0, high=limits.MAX_LORA_RANK)
    lora_alpha: float = option(16.0, "LoRA's scale: the adapters' update is multiplied by alpha / rank",
                               low=limits.MIN_LORA_ALPHA, high=limits.MAX_LORA_ALPHA)
    trainable_blocks: int | None = option(
        None, "train only the last N transformer blocks (with the final norm, and the head when it is not tied to "
              "the embedding); with LoRA, adapt only those blocks; 'all' (None): every layer",
        low=0, high=limits.MAX_BLOCKS, parse=_blocks)
    eval_every: int = option(0, "steps between validation losses within an epoch (0: only at the end of each)",
                             low=0, high=limits.MAX_EVAL_EVERY)
    pretokenizer: str | None = option(
        None, "cut text before the BPE with another pattern than the base's: 'digits' gives every digit its own "
              "token, so sums are learnt digit by digit (the saved model keeps it); default: the base's",
        choices=tuple(PRETOKENIZERS))

    def __post_init__(self) -> None:
        check_options(self)
        if self.lora_rank and self.trainable_blocks == 0:  # LoRA on no block would train nothing
            raise ValueError("trainable_blocks must be >= 1 with LoRA (or None for all layers), got 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any], ignore_unknown: bool = False) -> InstructConfig:
        """Settings read from a file (a chat model's record), typed as the fields say."""
        return config_from_dict(cls, data, ignore_unknown)

    @property
    def method(self) -> str:
        """What trains, in words: 'all layers', 'the last 2 blocks', 'LoRA rank 8 on all layers'..."""
        where = "all layers" if self.trainable_blocks is None else (
            f"the last {self.trainable_blocks} block{'s' if self.trainable_blocks != 1 else ''}")
        return f"LoRA rank {self.lora_rank} on {where}" if self.lora_rank else where


INSTRUCT_PRESETS: dict[str, InstructConfig] = {
    # The small shipped model: a larger rate than GPT-2's, and the loss on responses only, so that
    # the few steps a CPU affords go to answers rather than to the 54-token prompt template.
    # Entries grouped by length: the shipped data mixes one-word answers with one-sentence facts.
    "shipped": InstructConfig(epochs=2, batch_size=16, lr=1e-3, mask_prompt=True, group_by_length=True),
    "gpt2": InstructConfig(epochs=2, batch_size=8, lr=5e-5),  # the book's settings
}


@dataclass
class InstructResult:
    """What a run did; it goes into each checkpoint's metadata."""

    train_losses: list[float] = field(default_factory=list)  # mean training loss of each finished epoch
    val_losses: list[float] = field(default_factory=list)
    steps: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0
    stopped: bool = False  # a stop request ended the run early
    trainable_params: int = 0
    total_params: int = 0
    epoch_seconds: list[float] = field(default_factory=list)  # wall time of each finished epoch
    peak_memory_mb: float = 0.0  # see `peak_memory_mb`
    memory_measure: str = ""  # what peak_memory_mb measured


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """The peak memory so far, in MiB, and what it measures: on CUDA the tensors PyTorch allocated on the
    device, elsewhere the process's peak resident set (everything it ever held: Python, data, model)."""
    return peak_memory(device) / 2**20, peak_memory_source(device)


def select_trainable(model: GPTModel, cfg: InstructConfig) -> list[torch.nn.Parameter]:
    """Freeze what `cfg` does not train (LoRA adapters are added first); returns the parameters that train."""
    if cfg.lora_rank:
        n_layers = model.cfg.n_layers
        if cfg.trainable_blocks is not None and cfg.trainable_blocks > n_layers:
            raise ValueError(f"cannot adapt {cfg.trainable_blocks} blocks: the model has {n_layers}")
        model.requires_grad_(False)
        for block in model.trf_blocks[n_layers - (cfg.trainable_blocks or n_layers):]:
            apply_lora(block, LoRAConfig(cfg.lora_rank, cfg.lora_alpha))
    elif cfg.trainable_blocks is not None:
        freeze_all_but_last_blocks(model, cfg.trainable_blocks)
    else:
        model.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    return params


def is_adapted(model: GPTModel) -> bool:
    return any(name.endswith(".lora_a") for name, _ in model.named_parameters())


def batch_loss(model: GPTModel, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The language-model loss over the targets the collate kept (padding and masked prompts are skipped)."""
    return lm_loss(model(inputs), targets)


@torch.no_grad()
def loader_loss(model: GPTModel, loader: DataLoader, precision: str = "float32") -> float:
    """Mean loss over a loader's entries, without dropout; the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for inputs, targets in loader:
        with autocast(precision, device):
            total += batch_loss(model, inputs.to(device), targets.to(device)).item() * len(inputs)
        count += len(inputs)
    model.train(was_training)
    return total / max(count, 1)


def finetune_instruct(checkpoint: Checkpoint, train: Sequence[Entry], val: Sequence[Entry], cfg: InstructConfig,
                      out_dir: str | Path | None = None, meta: dict[str, Any] | None = None,
                      save_dtype: torch.dtype | None = torch.bfloat16, device: torch.device | str = "cpu",
                      monitor: TrainingMonitor | None = None, base_sha256: str | None = None) -> InstructResult:
    """AdamW over the entries for `cfg.epochs` epochs on `device`; a checkpoint after every epoch.

    With `cfg.lora_rank` the checkpoint is the merged model, and the adapters alone are saved beside
    it (`gpt.lora.save_adapters`) when the base's digest `base_sha256` is given; at the end the
    adapters are merged into `checkpoint.model` too, so it is the model that was saved.
    A stop request is honoured between batches: the weights so far are saved (unless nothing was
    trained since the last checkpoint) and the result comes back with `stopped` set.
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    if cfg.pretokenizer:  # the model then learns, and is saved and evaluated with, the new cut
        checkpoint.tokenizer = checkpoint.tokenizer.with_pretokenizer(cfg.pretokenizer)
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    ctx = model.cfg.context_length
    train_loader = make_loader(train, tokenizer, ctx, cfg.batch_size, cfg.mask_prompt, True, cfg.seed,
                               cfg.group_by_length)
    val_loader = make_loader(val, tokenizer, ctx, cfg.batch_size, cfg.mask_prompt, False)
    if len(train_loader) == 0:
        raise ValueError(f"{len(train)} training entries make no full batch of {cfg.batch_size}")
    model.to(device=device, dtype=torch.float32)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = InstructResult(total_params=model.n_params())
    select_trainable(model, cfg)
    result.trainable_params = trainable_parameters(model)
    optimizer = make_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay, decay_everything=True)
    loop = EpochLoop(model, train_loader, optimizer, cfg.epochs, monitor)
    start = time.perf_counter()
    saved_at_step = 0  # the base weights are no finetuned checkpoint

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        inputs, targets = batch[0].to(device), batch[1].to(device)
        with autocast(cfg.autocast, device):
            loss = batch_loss(model, inputs, targets)
        return StepOutput(loss, {"train_loss": loss.item()}, inputs.numel())

    def measure() -> None:
        result.steps, result.tokens_seen, result.stopped = loop.step, loop.tokens_seen, loop.stopped
        result.seconds = time.perf_counter() - start
        result.peak_memory_mb, result.memory_measure = peak_memory_mb(device)

    def save(epochs_done: int) -> None:
        nonlocal saved_at_step
        measure()
        adapted = is_adapted(model)
        merged = merge_lora(copy.deepcopy(model)) if adapted else model  # training goes on with the adapters
        save_checkpoint(merged, out_dir, tokenizer, {**(meta or {}), "finetune": asdict(cfg),
                                                     "epochs_done": epochs_done, **asdict(result)}, dtype=save_dtype)
        if adapted and base_sha256:
            save_adapters(model, out_dir, LoRAConfig(cfg.lora_rank, cfg.lora_alpha), base_sha256)
        saved_at_step = loop.step
        loop.emit("checkpoint", epochs_done, path=str(out_dir))

    def val_loss() -> float:
        return loader_loss(model, val_loader, cfg.autocast) if len(val_loader) else math.nan

    def quick_check() -> dict[str, float]:
        return {"val_loss": val_loss()}

    loop.emit("start", metrics={"train_entries": len(train), "val_entries": len(val),
                                "trainable_params": result.trainable_params, "total_params": result.total_params})
    for epoch, train_loss in loop.epochs(step, quick_check if len(val_loader) else None, cfg.eval_every):
        result.train_losses.append(train_loss)
        result.val_losses.append(val_loss())
        result.epoch_seconds.append(loop.epoch_seconds())
        measure()
        loop.end_epoch(epoch, {"train_loss": train_loss, "val_loss": result.val_losses[-1],
                               "epoch_s": result.epoch_seconds[-1], "peak_memory_mb": result.peak_memory_mb})
        if out_dir is not None:
            save(epoch)
    if loop.stopped and out_dir is not None and saved_at_step != loop.step:
        save(len(result.train_losses))
    if is_adapted(model):
        merge_lora(model)
    model.eval()
    measure()
    loop.finish(result.seconds)
    return result


# -- before a finetune starts: the memory it needs and the time a step takes --------------------------------------

WARMUP_STEPS = 1  # the first step is not timed: allocation and caches


def finetune_memory_bytes(model: GPTConfig, batch_size: int, tokens: int, lora: bool) -> int:
    """What finetuning `model` takes on batches of `batch_size` sequences of up to `tokens` tokens: the estimate of
    `GPTConfig.training_memory_bytes` at that length rounded as a batch is (`padded_width`: a finetune pads each
    batch to about its longest entry, never to the whole context). With LoRA the frozen weights keep no gradient
    and no AdamW moments: 4 bytes a parameter instead of 16 (the adapters are a rounding error beside them)."""
    cfg = replace(model, context_length=max(1, padded_width(min(tokens, model.context_length), model.context_length)))
    full = cfg.training_memory_bytes(batch_size)
    return full - 12 * cfg.n_params() if lora else full


def seconds_per_step(checkpoint: Checkpoint, train: Sequence[Entry], cfg: InstructConfig, steps: int = 2) -> float:
    """The median seconds of `steps` optimizer steps of `cfg` on `train` (after WARMUP_STEPS), on this process's
    threads: `finetune_instruct` itself, stopped once they are timed, nothing saved. It trains `checkpoint.model`:
    hand it a copy loaded for the purpose."""
    stamps: list[float] = []

    def on_event(event: Any) -> None:
        if event.kind == "step":
            stamps.append(time.perf_counter())
            if len(stamps) == WARMUP_STEPS + steps + 1:
                monitor.request_stop()

    monitor = TrainingMonitor(on_event)
    entries = list(train)[: cfg.batch_size * (WARMUP_STEPS + steps + 1)]
    finetune_instruct(checkpoint, entries, [], replace(cfg, epochs=1, eval_every=0), None, monitor=monitor)
    gaps = [after - before for before, after in zip(stamps[WARMUP_STEPS:], stamps[WARMUP_STEPS + 1:], strict=False)]
    if not gaps:
        raise ValueError(f"{len(entries)} entries make fewer than {WARMUP_STEPS + 2} batches of {cfg.batch_size}: "
                         "nothing to time")
    return statistics.median(gaps)
