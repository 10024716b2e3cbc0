"""A speedrun: which recipe reaches a held-out loss in the fewest tokens and seconds, trained from scratch here.

    python -m benchmarks.speedrun                                   # classroom size, 3 recipes, 1.5M tokens each
    python -m benchmarks.speedrun --size shipped-small --tokens 4000000 --recipes gpt2-adamw modern-muon

Every recipe trains from the same seed on the same shipped corpora (all nine sources), encoded by
the shipped base's tokenizer, with the same batches in the same order, the same token budget and
the same warmup + cosine schedule (each ends at the budget): only the architecture and the
optimizer differ. The recipes take turns, one optimizer step each, so the load of a shared machine
falls on all of them alike; each recipe's seconds are the time of its own steps. Every `--evals`-th
of the budget, each is scored on the same fixed held-out windows; at the end on the whole held-out
text, beside `xz -9` after the training text.

The table gives, for each recipe, the tokens and seconds it needed to reach the first recipe's
final held-out loss (the first crossing of the evaluation curve, interpolated), and their ratio to
the first recipe's: the goal is at most half the tokens and 60% of the time.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gpt.config import GPTConfig
from gpt.data.corpus import join_documents, load_corpus
from gpt.precision import resolve_autocast
from gpt.pretrain.baselines import xz_bits_per_byte
from gpt.pretrain.trainer import PretrainConfig, Pretraining, set_up, train_step
from gpt.tokenizer import Tokenizer, load_tokenizer
from gpt.training.distributed import Distributed
from gpt.training.events import TrainingMonitor
from gpt.training.loss import bits_per_byte, heldout_loss

TOKENIZER = Path(__file__).resolve().parent.parent / "assets" / "models" / "base" / "tokenizer.tiktoken"


@dataclass(frozen=True)
class Recipe:
    """An architecture (the size's preset, or its `-modern` counterpart) and an optimizer with its peak rate."""

    name: str
    modern: bool
    optimizer: str
    lr: float


RECIPES = {r.name: r for r in (
    Recipe("gpt2-adamw", False, "adamw", 2e-3),  # today's recipe: the shipped base's
    Recipe("gpt2-muon", False, "muon", 2e-3),
    Recipe("modern-adamw", True, "adamw", 2e-3),
    Recipe("modern-muon", True, "muon", 2e-3),
    Recipe("modern-muon-4e-3", True, "muon", 4e-3),
    Recipe("modern-adamw-4e-3", True, "adamw", 4e-3),
)}
DEFAULT_RECIPES = ("gpt2-adamw", "modern-adamw", "modern-muon")


def crossing(points: list[tuple[float, float, float]], target: float) -> tuple[float, float] | None:
    """(tokens, seconds) where a falling curve of (tokens, seconds, loss) points first reaches `target`,
    interpolated linearly between the two evaluations around it; None if it never does."""
    for (t0, s0, l0), (t1, s1, l1) in zip(points, points[1:], strict=False):
        if l1 <= target:
            f = 1.0 if l0 <= l1 else min(1.0, max(0.0, (l0 - target) / (l0 - l1)))
            return t0 + f * (t1 - t0), s0 + f * (s1 - s0)
    return None


def pretrain_config(model: GPTConfig, recipe: Recipe, steps: int, batch_size: int, eval_windows: int
                    ) -> PretrainConfig:
    return PretrainConfig(model=model, max_steps=steps, batch_size=batch_size, lr=recipe.lr, min_lr=recipe.lr / 10,
                          warmup_steps=max(1, steps // 20), optimizer=recipe.optimizer, eval_windows=eval_windows,
                          eval_interval=steps, checkpoint_interval=steps, seed=123)


def speedrun(recipes: list[Recipe], size: str, tokens: int, batch_size: int, evals: int, eval_windows: int,
             out: Path, train_texts: list[str], val_texts: list[str], tokenizer: Tokenizer) -> dict:
    """Train every recipe in turns on the texts; their evaluation curves, final held-out bits per byte and timings."""
    runs: dict[str, Pretraining] = {}
    for recipe in recipes:
        model = GPTConfig.preset(f"{size}-modern" if recipe.modern else size, vocab_size=tokenizer.n_vocab,
                                 drop_rate=0.0)
        steps = max(evals, tokens // (batch_size * model.context_length))
        cfg = pretrain_config(model, recipe, steps, batch_size, eval_windows)
        runs[recipe.name] = set_up(cfg, train_texts, val_texts, tokenizer, out / recipe.name, Distributed(),
                                   TrainingMonitor(), resume=False)
    first = runs[recipes[0].name]
    val_tokens = np.asarray(first.val_tokens)
    n_bytes = len(join_documents(val_texts).encode("utf-8"))
    tokens_per_byte = len(val_tokens) / n_bytes
    eval_steps = sorted({round(first.cfg.max_steps * k / evals) for k in range(1, evals + 1)})
    curves: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
    seconds = dict.fromkeys(runs, 0.0)
    print(f"{len(recipes)} recipes, {first.cfg.max_steps} steps of {first.cfg.tokens_per_step} tokens each, "
          f"{torch.get_num_threads()} threads", flush=True)
    while first.step < first.cfg.max_steps:
        for name, run in runs.items():
            start = time.perf_counter()
            train_step(run)
            seconds[name] += time.perf_counter() - start
        if first.step in eval_steps:
            line = [f"step {first.step:5d} ({first.tokens_seen / 1e6:.2f}M tokens)"]
            for name, run in runs.items():
                loss, _ = heldout_loss(run.model, val_tokens, eval_windows)
                curves[name].append((run.tokens_seen, seconds[name], loss))
                line.append(f"{name} {loss:.3f} ({seconds[name]:.0f} s)")
            print(" | ".join(line), flush=True)
    results = {}
    for name, run in runs.items():
        loss, n_scored = heldout_loss(run.model, val_tokens)
        results[name] = {"params": run.model.n_params(), "final_windows_loss": curves[name][-1][2],
                         "arithmetic": resolve_autocast(run.cfg.autocast, run.ddp.device),
                         "held_out_loss": loss, "held_out_bits_per_byte": bits_per_byte(loss * n_scored, n_bytes),
                         "seconds": seconds[name], "tokens": run.tokens_seen,
                         "tokens_per_s": run.tokens_seen / seconds[name], "curve": curves[name],
                         "recipe": vars(recipes[[r.name for r in recipes].index(name)])}
    target = results[recipes[0].name]["final_windows_loss"]
    base_tokens, base_seconds = results[recipes[0].name]["tokens"], results[recipes[0].name]["seconds"]
    for r in results.values():
        reached = crossing(r["curve"], target)
        r["reaches_target"] = None if reached is None else {
            "tokens": reached[0], "seconds": reached[1],
            "token_ratio": reached[0] / base_tokens, "time_ratio": reached[1] / base_seconds}
    return {"size": size, "tokens_per_recipe": base_tokens, "batch_size": batch_size,
            "threads": torch.get_num_threads(), "tokens_per_byte": tokens_per_byte, "target_loss": target,
            "recipes": results,
            "windows_bits_per_byte_factor": tokens_per_byte / math.log(2)}


def format_table(report: dict, xz: float | None) -> str:
    factor = report["windows_bits_per_byte_factor"]
    lines = [f"Speedrun: {report['size']}, {report['tokens_per_recipe']:,} tokens per recipe, batch "
             f"{report['batch_size']}, {report['threads']} threads; target = the first recipe's final loss on the "
             f"fixed held-out windows, {report['target_loss']:.3f} "
             f"({report['target_loss'] * factor:.3f} bits per byte)",
             "",
             "| recipe | params | held-out bits/byte (whole text) | tokens/s | tokens to target | × first | "
             "seconds to target | × first |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in report["recipes"].items():
        reach = r["reaches_target"]
        reached = ("not reached", "", "not reached", "") if reach is None else (
            f"{reach['tokens']:,.0f}", f"{reach['token_ratio']:.2f}", f"{reach['seconds']:.0f}",
            f"{reach['time_ratio']:.2f}")
        lines.append(f"| {name} | {r['params'] / 1e6:.2f}M | {r['held_out_bits_per_byte']:.3f} | "
                     f"{r['tokens_per_s']:,.0f} | {' | '.join(reached)} |")
    if xz is not None:
        lines.append(f"\n`xz -9` after the training text: {xz:.3f} bits per byte on the same held-out text.")
    lines.append("\nHeld-out loss (fixed windows) at each evaluation, as bits per byte:")
    for name, r in report["recipes"].items():
        lines.append(f"- {name}: " + ", ".join(f"{t / 1e6:.2f}M {loss * factor:.3f}" for t, _, loss in r["curve"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speedrun", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="classroom", choices=("tiny", "classroom", "shipped-small"),
                        help="the model size: its preset, and its -modern counterpart for modern recipes")
    parser.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES), choices=sorted(RECIPES),
                        help="the first is the reference the others are measured against")
    parser.add_argument("--tokens", type=int, default=1_500_000, help="training tokens per recipe")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--evals", type=int, default=20, help="evaluations over the run")
    parser.add_argument("--eval-windows", type=int, default=64, help="fixed held-out windows at each evaluation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-xz", action="store_true", help="skip xz -9 after the training text (a minute)")
    parser.add_argument("--out", type=Path, default=Path("runs/speedrun"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    split = load_corpus()
    train_texts, val_texts = [d.text for d in split.train], [d.text for d in split.held_out]
    report = speedrun([RECIPES[name] for name in args.recipes], args.size, args.tokens, args.batch_size, args.evals,
                      args.eval_windows, args.out, train_texts, val_texts, load_tokenizer(str(TOKENIZER)))
    xz = None if args.no_xz else xz_bits_per_byte(join_documents(val_texts), context=join_documents(train_texts))
    report["xz_after_training_text"] = xz
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speedrun.json").write_text(json.dumps(report, indent=2) + "\n")
    table = format_table(report, xz)
    (args.out / "speedrun.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
