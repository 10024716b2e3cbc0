"""A GRPO run as the app's Reasoning tab runs it: a chat model's folder in, a tuned chat model and its held-out
accuracy before and after out.

`rl_run` is the job runner's target (module level and plain values, so it crosses to the training process and
back): it loads the starting model, keeps its chat metadata (its prompt format and its finetune record, so the
result is a chat model the pickers list), and runs `finetune_rl` into `out_dir`, or resumes it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpt.instruct.prompt import CHAT_PROMPT_FORMAT
from gpt.pretrained import load_model
from gpt.reasoning.grpo import RLConfig, finetune_rl
from gpt.training.events import TrainingMonitor


@dataclass(frozen=True)
class RLRun:
    """What a finished or stopped run reports back to the app."""

    steps: int
    total_steps: int
    stopped: bool
    seconds: float
    task: str
    base_model: str
    evals: list[dict[str, float]]  # greedy held-out accuracy (%) by step: the starting model's at step 0

    @property
    def finished(self) -> bool:
        """Whether every step ran: the job runner offers Resume otherwise."""
        return self.steps >= self.total_steps


def rl_run(model: str, cfg: RLConfig, out_dir: str | Path, base_name: str, resume: bool = False,
           monitor: TrainingMonitor | None = None) -> RLRun:
    """GRPO from the chat model in folder `model` (`base_name` in the app) into `out_dir`; `resume` goes on from
    the state a stopped run left there (the same starting weights are loaded again, as the state requires)."""
    checkpoint = load_model(model)
    meta = {**checkpoint.meta, "base_model": base_name, "base_source": str(model)}  # the name, and what --model takes
    meta.setdefault("prompt_format", CHAT_PROMPT_FORMAT)
    meta.setdefault("finetune", {})  # a chat model by the registry's rule, whatever its start recorded
    result = finetune_rl(checkpoint, cfg, out_dir, monitor, meta, resume=resume)
    return RLRun(steps=result.steps, total_steps=cfg.steps, stopped=result.stopped, seconds=result.seconds,
                 task=cfg.task, base_model=base_name, evals=result.evals)
