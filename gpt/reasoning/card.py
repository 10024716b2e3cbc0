"""The model card of a GRPO run: what it started from, what it was asked, what it reached, how to run it again.

`finetune_rl` writes it beside the checkpoint whenever it saves one (so a stopped run's card says so), from the
run's own figures: nothing typed by hand. The app shows it where it shows every model's history.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, fields
from typing import Any

from gpt.reasoning.problems import EASY_KINDS

WINDOW = 10  # steps averaged at the start and at the end of the run


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows) if rows else 0.0


def reproduce_command(cfg: Any, base_model: str, out_dir: str) -> str:
    """The `python -m gpt finetune-rl` line that runs these settings again, every one spelled out."""
    flags = " ".join(f"--{f.name.replace('_', '-')} {getattr(cfg, f.name)}" for f in fields(cfg))
    return f"python -m gpt finetune-rl --model {shlex.quote(base_model)} {flags} --out {shlex.quote(out_dir)}"


def rl_model_card(cfg: Any, result: Any, base_model: str, out_dir: str, base_source: str | None = None) -> str:
    """Markdown for MODEL_CARD.md: `cfg` an RLConfig, `result` an RLResult. `base_model` names the start as its
    user knows it (an app's model name), `base_source` as `--model` takes it (its folder), where they differ."""
    evals = result.evals
    history = result.history
    state = (f"stopped at step {result.steps} of {cfg.steps} (Resume goes on)" if result.steps < cfg.steps
             else f"all {cfg.steps} steps")
    rehearsal = (f" A {cfg.rehearse:.0%} share of the training problems rehearse the families the model already "
                 f"knows ({', '.join(EASY_KINDS)}), so that it does not unlearn them." if cfg.rehearse else "")
    lines = [
        f"# GRPO: {cfg.task} from `{base_model}`",
        "",
        f"Reinforcement learning with verifiable rewards (GRPO, `gpt/reasoning/grpo.py`) from the chat model "
        f"`{base_model}`: {state}, {result.seconds:,.0f} s. Each step asks {cfg.problems_per_step} training "
        f"problems of `{cfg.task}`, samples {cfg.group_size} replies to each at temperature {cfg.temperature:g}, "
        f"and scores each reply with the verifier: 1 for the right number, {cfg.format_reward:g} more for a bare "
        f"number. A reply is made likelier by how much better it did than its group (the group's mean, over its "
        f"spread), within PPO's clip of {cfg.clip_eps:g}, with a KL penalty of {cfg.kl_coef:g} to the starting "
        f"model; AdamW at lr {cfg.lr:g}.{rehearsal}",
        "",
    ]
    if evals:
        lines += [f"## Held-out accuracy (greedy, {cfg.eval_problems} problems of `{cfg.task}` never trained on)",
                  "", "| step | right (%) | a bare number (%) |", "|---|---|---|"]
        lines += [f"| {e['step']:.0f} | {e['held_out_accuracy']:.1f} | {e.get('held_out_well_formed', 0):.1f} |"
                  for e in evals]
        lines.append("")
    if history:
        first, last = history[:WINDOW], history[-WINDOW:]
        lines += [f"## Training (means over the first and the last {len(last)} steps)", "",
                  "| | mean reward | sampled replies right (%) | KL to the start | groups that learn (%) |",
                  "|---|---|---|---|---|"]
        for name, rows in (("first steps", first), ("last steps", last)):
            lines.append(f"| {name} | {_mean(rows, 'reward'):.3f} | {_mean(rows, 'accuracy'):.1f} | "
                         f"{_mean(rows, 'kl'):.3f} | {_mean(rows, 'groups_learning'):.1f} |")
        lines.append("")
    lines += ["## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in asdict(cfg).items()]
    lines += ["", f"Run it again: `{reproduce_command(cfg, base_source or base_model, out_dir)}`", ""]
    return "\n".join(lines)
