"""The finetunings' shared epoch loop: its optimizer steps, counts, events, quick evaluations and stops."""

from __future__ import annotations

import pytest
import torch

from gpt.training.events import TrainEvent, TrainingMonitor
from gpt.training.loop import EpochLoop, StepOutput


def setup(epochs: int = 2, batches: int = 3, listener=None) -> tuple[EpochLoop, torch.nn.Linear, list[TrainEvent]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    loader = [(torch.randn(4, 2), torch.randn(4, 1)) for _ in range(batches)]
    events: list[TrainEvent] = []
    monitor = TrainingMonitor(events.append)
    if listener is not None:
        monitor.listeners.append(lambda event: listener(event, monitor))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return EpochLoop(model, loader, optimizer, epochs, monitor), model, events


def mse_step(model: torch.nn.Module):
    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        inputs, targets = batch
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        return StepOutput(loss, {"train_loss": loss.item()}, tokens=inputs.numel())

    return step


def test_every_batch_is_one_optimizer_step_and_an_epoch_yields_its_mean_loss() -> None:
    loop, model, events = setup()
    before = model.weight.detach().clone()
    finished = list(loop.epochs(mse_step(model)))
    assert [epoch for epoch, _ in finished] == [1, 2] and not loop.stopped
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == list(range(1, 7)) and [e.epoch for e in steps] == [1, 1, 1, 2, 2, 2]
    assert steps[-1].tokens_seen == 6 * 8 and all(e.total_steps == 6 for e in events)
    assert finished[0][1] == pytest.approx(sum(e.metrics["train_loss"] for e in steps[:3]) / 3)
    assert not torch.equal(model.weight, before) and model.training


def test_quick_evaluations_skip_an_epochs_end_unless_asked() -> None:
    for at_end, expected in ((False, [2, 4]), (True, [2, 4, 6])):
        loop, model, events = setup()
        list(loop.epochs(mse_step(model), lambda: {"val_loss": 1.0}, eval_every=2, eval_at_epoch_end=at_end))
        evals = [e for e in events if e.kind == "eval"]
        assert [e.step for e in evals] == expected and all(e.metrics == {"val_loss": 1.0} for e in evals)
    loop, model, events = setup()
    list(loop.epochs(mse_step(model), None, eval_every=1))
    assert not any(e.kind == "eval" for e in events)


def test_a_stop_request_ends_the_loop_before_the_next_batch() -> None:
    def stop_at_step_4(event: TrainEvent, monitor: TrainingMonitor) -> None:
        if event.kind == "step" and event.step == 4:
            monitor.request_stop()

    loop, model, events = setup(listener=stop_at_step_4)
    finished = []
    for epoch, _ in loop.epochs(mse_step(model)):
        finished.append(epoch)
        loop.end_epoch(epoch, {"val_loss": 0.5})
    assert finished == [1] and loop.stopped and (loop.step, loop.epoch) == (4, 2)
    assert [e.kind for e in events] == ["step"] * 3 + ["epoch"] + ["step"]
    assert events[3].epoch == 1 and events[3].metrics == {"val_loss": 0.5}
