"""How a training reports progress and is asked to stop: one small interface for the CLI and the app.

A training function takes a `TrainingMonitor`, calls `emit` with a `TrainEvent` at each step,
evaluation, sample (a text the model wrote), epoch and checkpoint, and at each held-out answer
scored after training ("score": how many of how many, in `metrics`); it checks `stop_requested`
between steps. A stopped training writes what it has (a checkpoint, or the best epoch so far) and
returns normally. The CLI renders the events with tqdm; the app streams them to the page. Each
training owns its monitor, so two trainings in one process never see each other's events or stop requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# "refit": a pretraining fitted to a time budget ended its schedule sooner because the machine slowed
EVENT_KINDS = ("start", "step", "eval", "sample", "score", "epoch", "checkpoint", "refit", "stopped", "done")


@dataclass(frozen=True)
class TrainEvent:
    kind: str  # one of EVENT_KINDS
    step: int  # optimizer steps done so far
    total_steps: int
    tokens_seen: int = 0
    epoch: int | None = None  # finetunings count epochs; pretraining counts steps only
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. train_loss, val_loss, lr, tokens_per_s
    text: str = ""  # the sample (kind "sample") or a sentence about what happened
    path: str = ""  # what was written (kind "checkpoint")

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; one of {', '.join(EVENT_KINDS)}")


Listener = Callable[[TrainEvent], None]


class TrainingMonitor:
    """The listeners one training reports to, and its stop flag (safe to set from another thread)."""

    def __init__(self, *listeners: Listener):
        self.listeners: list[Listener] = list(listeners)
        self._stop = threading.Event()

    def emit(self, event: TrainEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()
