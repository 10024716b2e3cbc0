"""Several recipes trained one after the other on the same data, tokenizer and tokens, with steps fitted to a
measured rate.

What the Train tab's job runs in its training process (so that process imports no Gradio): a step of each
recipe is timed on the training's own threads, the first recipe's steps fill the budget at that rate, and
every later recipe sees as many tokens. `benchmarks.train_app` fits its steps the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from gpt.config import GPTConfig
from gpt.files import write_text_atomic
from gpt.kernels import accelerate
from gpt.model import GPTModel
from gpt.pretrain.runs import PretrainRun, train_run
from gpt.pretrain.state import STATE_FILE
from gpt.pretrain.trainer import SCHEDULE_SHARE, PretrainConfig
from gpt.training.events import TrainEvent, TrainingMonitor
from gpt.training.optim import seconds_per_step

PROBE_STEPS = 2  # timed after one warm-up step
PLAN_FILE = "recipes.json"  # in the first run's folder: the fitted steps, and each finished recipe's figures


@dataclass(frozen=True)
class Plan:
    """One recipe as the Train tab starts it: its label, its settings (the steps are fitted in the training
    process), its run folder."""

    label: str
    cfg: PretrainConfig
    out_dir: Path


@dataclass(frozen=True)
class Trained:
    """What `train_recipes` returns: each recipe's run (None for one that never reached its first step)."""

    labels: tuple[str, ...]
    names: tuple[str, ...]  # the run folders
    runs: tuple[PretrainRun | None, ...]

    @property
    def finished(self) -> bool:
        """False while a recipe is short of its last step: Resume continues it."""
        return all(run is not None and run.finished for run in self.runs)

    @property
    def steps(self) -> int:
        """The step where Resume goes on: the first unfinished recipe's."""
        unfinished = [run.steps if run else 0 for run in self.runs if run is None or not run.finished]
        return unfinished[0] if unfinished else self.runs[-1].steps


def recipe_seconds_per_step(cfg: PretrainConfig) -> float:
    """Seconds per training step of a fresh model of `cfg` with its optimizer, batch size and precision, on this
    process's threads (`seconds_per_step` on random tokens).

    The model and batch are drawn from their own seed: the caller's random numbers are left as they were.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = accelerate(GPTModel(cfg.model))  # the model the trainer runs
        batch = torch.randint(0, cfg.model.vocab_size, (cfg.batch_size, cfg.model.context_length + 1))
        return seconds_per_step(model, batch, PROBE_STEPS, cfg.optimizer, cfg.autocast)


def fitted_steps(budget_s: float, step_s: float, max_steps: int) -> int:
    """The steps whose learning-rate schedule ends inside the budget at `step_s` seconds per step (the steps take
    SCHEDULE_SHARE of the budget)."""
    return max(1, min(max_steps, int(SCHEDULE_SHARE * budget_s / step_s)))


def same_tokens(steps: int, first: GPTConfig, other: GPTConfig, max_steps: int) -> int:
    """The other recipe's steps for as many tokens as the first's `steps`: the batch is the same, the contexts may
    differ."""
    return max(1, min(max_steps, round(steps * first.context_length / other.context_length)))


WARMUP_SHARE = 0.1  # fitted steps warm up for at most this share of them


def with_steps(cfg: PretrainConfig, steps: int, fitted: bool = False) -> PretrainConfig:
    """`cfg` for `steps` steps: twenty evaluations, ten checkpoints, the warmup no longer than the run.

    `fitted` steps were not asked for but fitted to a budget: on a slow machine they may be few, and a warmup
    sized for more would take the whole run (no decay at all), so it is cut to WARMUP_SHARE of them.
    """
    warmup = min(cfg.warmup_steps, max(1, int(WARMUP_SHARE * steps)) if fitted else steps)
    return replace(cfg, max_steps=steps, warmup_steps=warmup,
                   eval_interval=max(1, steps // 20), checkpoint_interval=max(1, steps // 10))


def plan_recipes(plans: list[Plan], fit_s: float | None, max_steps: int, time_limit_s: float) -> list[dict[str, Any]]:
    """Measure each recipe's step here (the training's threads) and fix its steps: the first's fill `fit_s` when set
    (else as sent), the others see as many tokens. A later recipe may take longer than the first for those tokens: its
    time limit grows in proportion."""
    rates = [recipe_seconds_per_step(p.cfg) for p in plans]
    first = plans[0].cfg
    steps = fitted_steps(fit_s, rates[0], max_steps) if fit_s else first.max_steps
    cfgs = [with_steps(p.cfg, same_tokens(steps, first.model, p.cfg.model, max_steps), fitted=fit_s is not None)
            for p in plans]
    first_s = cfgs[0].max_steps * rates[0]
    return [{"config": cfg.to_dict(), "seconds_per_step": rate, "run": None,
             "time_limit_s": time_limit_s * max(1.0, cfg.max_steps * rate / first_s)}
            for cfg, rate in zip(cfgs, rates, strict=True)]


def train_recipes(monitor: TrainingMonitor, plans: list[Plan], fit_s: float | None, max_steps: int,
                  time_limit_s: float, train_texts: list[str], val_texts: list[str], tokenizer_spec: str,
                  data_name: str, resume: bool = False) -> Trained | None:
    """The Train tab's job, in the training process: plan the recipes (`plan_recipes`), then train them one after
    the other on the same data and tokenizer. None when stopped before any first step.

    Before each recipe a "start" event names it (metrics: `recipe`, its index; the measured `seconds_per_step`;
    `later_s`, what the recipes after it should take). The plan goes to the first run's folder before training:
    Resume reads it back (the same steps and schedule), and each finished recipe's figures are added to it, so a
    resumed comparison does not train or score a finished recipe again.
    """
    record = plans[0].out_dir / PLAN_FILE
    planned = json.loads(record.read_text()) if resume else plan_recipes(plans, fit_s, max_steps, time_limit_s)
    write_text_atomic(record, json.dumps(planned))
    runs: list[PretrainRun | None] = []
    for i, (plan, entry) in enumerate(zip(plans, planned, strict=True)):
        if entry["run"] is not None:
            runs.append(PretrainRun(**entry["run"]))
            continue
        if monitor.stop_requested:
            runs.append(None)
            continue
        cfg = PretrainConfig.from_dict(entry["config"])
        later = sum(e["config"]["max_steps"] * e["seconds_per_step"] for e in planned[i + 1:] if e["run"] is None)
        monitor.emit(TrainEvent("start", 0, cfg.max_steps, text=plan.label, metrics={
            "recipe": i, "seconds_per_step": entry["seconds_per_step"], "later_s": later}))
        run = train_run(cfg, train_texts, val_texts, tokenizer_spec, plan.out_dir, data_name,
                        resume=resume and (plan.out_dir / STATE_FILE).is_file(), time_limit_s=entry["time_limit_s"],
                        monitor=monitor, baseline_orders=(5,), fit_to_time=fit_s is not None)
        runs.append(run)
        if run is None:
            continue
        entry["config"]["max_steps"] = run.max_steps  # a resume goes on with the schedule as the machine left it
        if run.finished:
            entry["run"] = asdict(run)
        if i == 0:  # the recipes after it see as many tokens as it did
            for later_entry in planned[1:]:
                other = PretrainConfig.from_dict(later_entry["config"])
                steps = same_tokens(run.max_steps, cfg.model, other.model, max_steps)
                later_entry["config"] = with_steps(other, steps, fitted=fit_s is not None).to_dict()
        write_text_atomic(record, json.dumps(planned))
    if all(run is None for run in runs):
        return None
    return Trained(tuple(p.label for p in plans), tuple(p.out_dir.name for p in plans), tuple(runs))
