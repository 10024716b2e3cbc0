"""Training events rendered in a terminal: a tqdm bar over the steps, a line per evaluation and epoch."""

from __future__ import annotations

from tqdm.auto import tqdm

from gpt.training.events import TrainEvent


class TqdmListener:
    """A `TrainingMonitor` listener: call it with each event; `close()` when the training returns."""

    def __init__(self, desc: str, enabled: bool = True):
        self.desc, self.enabled = desc, enabled
        self.bar: tqdm | None = None

    def __call__(self, event: TrainEvent) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=event.total_steps, initial=event.step, desc=self.desc, unit="step")
        m = event.metrics
        if event.kind == "step":
            self.bar.update(event.step - self.bar.n)
            postfix = {"loss": f"{m['train_loss']:.3f}"}
            if "tokens_per_s" in m:
                postfix["tok/s"] = f"{m['tokens_per_s']:.0f}"
            self.bar.set_postfix(postfix)
        elif event.kind == "eval":
            figures = ", ".join(f"{k} {v:.3f}" for k, v in m.items())
            tqdm.write(f"step {event.step}" + (f", epoch {event.epoch}" if event.epoch else "") + f": {figures}")
        elif event.kind == "sample":
            tqdm.write(f"step {event.step} sample: {event.text!r}")
        elif event.kind == "epoch":
            figures = " | ".join(f"{k} {v:.3f}" for k, v in m.items())
            tqdm.write(f"epoch {event.epoch}: {figures}")
        elif event.kind in ("stopped", "done"):
            self.close()
            if event.kind == "stopped":
                tqdm.write(event.text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
