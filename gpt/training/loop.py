"""The epoch loop the classifier, instruction and preference finetunings share; each brings its own loss.

A finetuning hands `EpochLoop.epochs` a `step(batch)` that runs its forward pass and returns the loss
with the figures its step events show; the loop does the rest the same way for all three: the
optimizer step, the step counts, the stop requests (checked between batches), and the step, quick
evaluation, epoch and closing events. What happens at an epoch's end (a full evaluation, keeping the
best epoch, a checkpoint) stays with each finetuning, in the body of its `for` over the epochs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from gpt.training.events import TrainEvent, TrainingMonitor

Metrics = dict[str, float]
# A finetuning's batch is padded to its longest entry rounded up to this many tokens. Each new batch shape
# costs memory that stays (the process grew by about 7 MB per shape: a spam finetuning on exact lengths
# went from 541 to 1,456 MB in 160 steps, an instruction one peaked at 5.6 GB), and a few shapes keep it
# flat; the rounding costs at most PAD_MULTIPLE - 1 padded positions per row.
PAD_MULTIPLE = 16


def padded_width(longest: int, limit: int | None = None) -> int:
    """The width a batch whose longest entry has `longest` tokens is padded to: rounded up to PAD_MULTIPLE,
    at most `limit` (the context) but never below `longest`."""
    width = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
    return max(longest, min(width, limit)) if limit is not None else width


class Loader(Iterable, Sized, Protocol):
    """Batches, and how many there are in an epoch (a `DataLoader`)."""


@dataclass
class StepOutput:
    loss: torch.Tensor  # what backward runs from
    metrics: Metrics  # what the step event shows; "train_loss" is the loss's value
    tokens: int = 0  # tokens the batch held, for the events' running count


class EpochLoop:
    """`epochs` passes over `loader` with `optimizer`, counting steps and tokens for the events it emits."""

    def __init__(self, model: torch.nn.Module, loader: Loader, optimizer: torch.optim.Optimizer, epochs: int,
                 monitor: TrainingMonitor | None = None):
        self.model, self.loader, self.optimizer, self.n_epochs = model, loader, optimizer, epochs
        self.monitor = monitor or TrainingMonitor()
        self.total_steps = epochs * len(loader)
        self.step, self.tokens_seen, self.epoch = 0, 0, 0
        self.stopped = False  # a stop request ended it, in `epoch`, before its last step
        self._epoch_start = time.perf_counter()

    def emit(self, kind: str, epoch: int | None = None, **kwargs: Any) -> None:
        self.monitor.emit(TrainEvent(kind, self.step, self.total_steps, self.tokens_seen, epoch, **kwargs))

    def epochs(self, step: Callable[[Any], StepOutput], evaluate: Callable[[], Metrics] | None = None,
               eval_every: int = 0, eval_at_epoch_end: bool = False) -> Iterator[tuple[int, float]]:
        """Train, and after each finished epoch yield it with its mean training loss.

        Every `eval_every` steps `evaluate` gives a quick held-out figure (an "eval" event); at an
        epoch's last step only with `eval_at_epoch_end`, since the epoch's end usually measures anyway.
        """
        for epoch in range(1, self.n_epochs + 1):
            self.epoch, self._epoch_start = epoch, time.perf_counter()
            self.model.train()
            loss_sum = 0.0
            for batch in self.loader:
                if self.monitor.stop_requested:
                    self.stopped = True
                    return
                out = step(batch)
                self.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                self.optimizer.step()
                self.step += 1
                self.tokens_seen += out.tokens
                loss_sum += out.metrics["train_loss"]
                self.emit("step", epoch, metrics=out.metrics)
                at_epoch_end = self.step % len(self.loader) == 0
                if evaluate and eval_every and self.step % eval_every == 0 and (eval_at_epoch_end or not at_epoch_end):
                    self.emit("eval", epoch, metrics=evaluate())
            yield epoch, loss_sum / len(self.loader)

    def epoch_seconds(self) -> float:
        """Seconds since the current epoch began."""
        return time.perf_counter() - self._epoch_start

    def end_epoch(self, epoch: int, metrics: Metrics, text: str = "") -> None:
        """The epoch's figures, once its end is measured."""
        self.emit("epoch", epoch, metrics=metrics, text=text)

    def finish(self, seconds: float) -> None:
        """The last event: stopped on request (what was saved is still returned), or done."""
        if self.stopped:
            self.emit("stopped", text=f"stopped at step {self.step} of {self.total_steps}: stop requested",
                      metrics={"elapsed_s": seconds})
        else:
            self.emit("done", text=f"finished {self.n_epochs} epochs ({self.step} steps)",
                      metrics={"elapsed_s": seconds})
