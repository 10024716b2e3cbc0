"""The Train tab's speed beside the command line, and what its defaults reach within their budget.

    python -m benchmarks.train_app [--seconds 60] [--budgets MINUTES ...] [--out runs/bench-train]

Part 1: the same training (same data, tokenizer, model, optimizer, batch, seed, threads) through the app's job
runner (a child process, events sent back to the server) and through `python -m gpt pretrain`, each for
`--seconds` of training; tokens/s is tokens seen over the training's own elapsed time, so the export at the end
is not counted. Part 2: the Train tab as it opens (`ui.train_tab.DEFAULTS`: its recipe, data, tokenizer,
vocabulary and minutes), started by the tab's own handler: its training process times a step and fits the
steps to the minutes (`gpt.pretrain.recipes`). It prints the held-out bits per byte reached beside `xz -9` and
the byte 5-gram on the same held-out text; `--budgets` runs the same at other minutes.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from gpt.config import GPTConfig
from gpt.data.corpus import join_documents, select_corpus
from gpt.pretrain.runs import PretrainRun, train_run
from gpt.pretrain.trainer import PretrainConfig
from ui.jobs import JobRunner, TrainLimits
from ui.train_tab import CORPORA, DEFAULTS, TrainForm, start_training

THREADS = 2
OWNER = "benchmark"  # the jobs' owner, as a browser's stored token names it
# (name, preset, optimizer, peak lr, vocabulary, data): the Train tab's default recipe on its default data, and the
# shipped base model's shape on the shipped corpora.
SETTINGS = ((f"Train tab default ({DEFAULTS.preset}, {DEFAULTS.optimizer}, {' + '.join(DEFAULTS.corpora)})",
             DEFAULTS.preset, DEFAULTS.optimizer, DEFAULTS.lr, DEFAULTS.vocab_size,
             tuple(CORPORA[c] for c in DEFAULTS.corpora)),
            ("shipped-small on the shipped corpora", "shipped-small", "adamw", 3e-3, None, ("austen", "kjv")))


def corpus(chosen: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The chosen shipped corpora (sources or single novels) and their fixed held-out documents, as the Train tab
    picks them."""
    split = select_corpus(chosen)
    return [d.text for d in split.train], [d.text for d in split.held_out]


def config(preset: str, optimizer: str, lr: float, vocab_size: int | None, steps: int) -> PretrainConfig:
    """Part 1's settings: the Train tab's batch, warmup, decay and seed; `vocab_size` None is the preset's."""
    model = GPTConfig.preset(preset, drop_rate=0.0, **({"vocab_size": vocab_size} if vocab_size else {}))
    return PretrainConfig(model=model, optimizer=optimizer, max_steps=steps, batch_size=DEFAULTS.batch_size, lr=lr,
                          min_lr=lr / 10, warmup_steps=min(DEFAULTS.warmup_steps, steps),
                          weight_decay=DEFAULTS.weight_decay, eval_interval=max(1, steps // 20),
                          checkpoint_interval=max(1, steps // 10), eval_windows=32, seed=DEFAULTS.seed)


def app_run(cfg: PretrainConfig, train: list[str], val: list[str], out: Path, seconds: float) -> PretrainRun:
    """Through the app's job runner: `train_run` in a child process, as the Train tab's job trains each recipe."""
    runner = JobRunner(TrainLimits(runs_dir=out.parent, threads=THREADS))
    kwargs = {"cfg": cfg, "train_texts": train, "val_texts": val, "tokenizer_spec": "bpe", "out_dir": out,
              "data_name": "benchmark", "time_limit_s": seconds, "baseline_orders": (5,)}
    job = runner.submit(OWNER, out.name, train_run, kwargs)
    runner.wait(job, seconds + 3600)
    if job.state != "done":
        raise SystemExit(f"the app's training ended {job.state}: {job.error}")
    return job.result


def cli_run(cfg: PretrainConfig, preset: str, text: Path, out: Path, seconds: float) -> dict:
    """The same settings through `python -m gpt pretrain --text FILE` (it holds out the file's last tenth)."""
    m = cfg.model
    command = [sys.executable, "-m", "gpt", "pretrain", "--out", str(out), "--text", str(text),
               "--preset", preset, "--vocab-size", str(m.vocab_size), "--context-length", str(m.context_length),
               "--emb-dim", str(m.emb_dim), "--n-layers", str(m.n_layers), "--n-heads", str(m.n_heads),
               "--drop-rate", "0", "--optimizer", cfg.optimizer, "--max-steps", str(cfg.max_steps),
               "--batch-size", str(cfg.batch_size), "--weight-decay", str(cfg.weight_decay), "--seed", str(cfg.seed),
               "--lr", str(cfg.lr), "--min-lr", str(cfg.min_lr), "--warmup-steps", str(cfg.warmup_steps),
               "--eval-interval", str(cfg.eval_interval), "--checkpoint-interval", str(cfg.checkpoint_interval),
               "--eval-windows", str(cfg.eval_windows), "--time-limit-min", str(seconds / 60), "--quiet"]
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(THREADS)},
                   stdout=subprocess.DEVNULL)
    with (out / "log.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    return {"tokens_seen": int(float(last["tokens_seen"])), "train_time_s": float(last["elapsed_s"])}


def tab_run(form: TrainForm, out: Path) -> tuple[PretrainRun, float]:
    """`form` started by the Train tab's handler through the app's job runner, as a visitor starts it; the run of its
    (first) recipe, and the seconds per step its training process measured to fit the steps."""
    runner = JobRunner(TrainLimits(runs_dir=out, threads=THREADS))
    start_training(runner, OWNER, form)
    job = runner.job_of(OWNER)
    runner.wait(job, 60 * form.minutes + 3600)
    if job.state != "done":
        raise SystemExit(f"the Train tab's training ended {job.state}: {job.error}")
    measured = next(e.metrics["seconds_per_step"] for e in job.events if e.kind == "start" and "recipe" in e.metrics)
    return job.result.runs[0], measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="training time of each app/CLI comparison")
    parser.add_argument("--budgets", type=float, nargs="*", default=[DEFAULTS.minutes],
                        help=f"minutes, for part 2 (default: the Train tab's, {DEFAULTS.minutes:g}); none skips it")
    parser.add_argument("--settings", type=int, nargs="*", default=list(range(len(SETTINGS))),
                        help="which of part 1's settings to run (0: the Train tab's default, 1: shipped-small); "
                             "none skips part 1")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-train"))
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    if args.settings:
        print("| setting | app (tokens/s) | `python -m gpt pretrain` (tokens/s) | app / CLI |\n|---|---|---|---|")
    for i in args.settings:
        name, preset, optimizer, lr, vocab_size, books = SETTINGS[i]
        train, val = corpus(books)
        cfg = config(preset, optimizer, lr, vocab_size, 100_000)  # the time limit ends it
        app = app_run(cfg, train, val, args.out / f"app-{i}", args.seconds)
        text = args.out / f"train-{i}.txt"
        text.write_text(join_documents(train))
        cli = cli_run(cfg, preset, text, args.out / f"cli-{i}", args.seconds)
        app_speed = app.tokens_seen / app.train_time_s
        cli_speed = cli["tokens_seen"] / cli["train_time_s"]
        print(f"| {name} | {app_speed:,.0f} | {cli_speed:,.0f} | {app_speed / cli_speed:.2f} |", flush=True)
    if not args.budgets:
        return 0
    print(f"\nThe Train tab's defaults: {DEFAULTS.preset}, {DEFAULTS.optimizer}, peak lr {DEFAULTS.lr:g}, "
          f"{' + '.join(DEFAULTS.corpora)}, our BPE to {DEFAULTS.vocab_size:,} tokens, batch {DEFAULTS.batch_size}, "
          f"steps fitted to the minutes\n")
    print("| budget | measured step | steps done / fitted | tokens seen | training time | held-out bits per byte "
          "| xz -9 after training text | 5-gram | / xz -9 |\n|---|---|---|---|---|---|---|---|---|")
    for minutes in args.budgets:
        run, measured = tab_run(replace(DEFAULTS, minutes=minutes), args.out / f"budget-{minutes:g}")
        base = run.baselines
        xz = base["xz -9 (after the training text)"]
        print(f"| {minutes:g} min | {measured * 1000:.0f} ms | {run.steps:,} / {run.max_steps:,} | "
              f"{run.tokens_seen:,} | {run.train_time_s:.0f} s | {run.held_out_bits_per_byte:.3f} | {xz:.3f} | "
              f"{base['Kneser-Ney byte 5-gram']:.3f} | {run.held_out_bits_per_byte / xz:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
