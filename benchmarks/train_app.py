"""The Train tab's speed beside the command line, and what its default reaches in 1, 3 and 10 minutes.

    python -m benchmarks.train_app [--seconds 60] [--budgets 1 3 10] [--out runs/bench-train]

Part 1: the same training (same data, tokenizer, model, batch, seed, threads) through the app's job
runner (a child process, events sent back to the server) and through `python -m gpt pretrain`,
each for `--seconds` of training; tokens/s is tokens seen over the training's own elapsed time,
so the export at the end is not counted. Part 2: the Train tab's default settings with the step
count fitted to a budget of 1, 3 and 10 minutes (from part 1's speed), and the held-out bits per
byte each run reaches beside `xz -9` and the byte 5-gram on the same held-out text.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

from gpt.config import GPTConfig
from gpt.data.corpus import join_documents, select_corpus
from gpt.pretrain.runs import PretrainRun, train_run
from gpt.pretrain.trainer import PretrainConfig
from ui.jobs import JobRunner, TrainLimits

THREADS = 2
# (name, preset, data): the Train tab's default, and the shipped base model's shape on the shipped corpora.
SETTINGS = (("Train tab default (classroom, Pride and Prejudice)", "classroom", ("austen-prideprejudice",)),
            ("shipped-small on the shipped corpora", "shipped-small", ("austen", "kjv")))
BATCH = 16


def corpus(chosen: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The chosen shipped corpora (sources or single novels) and their fixed held-out documents, as the Train tab
    picks them."""
    split = select_corpus(chosen)
    return [d.text for d in split.train], [d.text for d in split.held_out]


def config(preset: str, steps: int) -> PretrainConfig:
    return PretrainConfig(model=GPTConfig.preset(preset, drop_rate=0.0), max_steps=steps, batch_size=BATCH,
                          lr=3e-3, min_lr=3e-4, warmup_steps=min(30, steps), eval_interval=max(1, steps // 20),
                          checkpoint_interval=max(1, steps // 10), eval_windows=32, seed=123)


def app_run(cfg: PretrainConfig, train: list[str], val: list[str], out: Path, seconds: float) -> PretrainRun:
    """Through the app's job runner, exactly as the Train tab starts it."""
    runner = JobRunner(TrainLimits(runs_dir=out.parent, threads=THREADS))
    kwargs = {"cfg": cfg, "train_texts": train, "val_texts": val, "tokenizer_spec": "bpe", "out_dir": out,
              "data_name": "benchmark", "time_limit_s": seconds, "baseline_orders": (5,)}
    job = runner.submit("benchmark", out.name, train_run, kwargs)
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
               "--drop-rate", "0", "--max-steps", str(cfg.max_steps), "--batch-size", str(cfg.batch_size),
               "--lr", str(cfg.lr), "--min-lr", str(cfg.min_lr), "--warmup-steps", str(cfg.warmup_steps),
               "--eval-interval", str(cfg.eval_interval), "--checkpoint-interval", str(cfg.checkpoint_interval),
               "--eval-windows", str(cfg.eval_windows), "--time-limit-min", str(seconds / 60), "--quiet"]
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(THREADS)},
                   stdout=subprocess.DEVNULL)
    with (out / "log.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    return {"tokens_seen": int(float(last["tokens_seen"])), "train_time_s": float(last["elapsed_s"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="training time of each app/CLI comparison")
    parser.add_argument("--budgets", type=float, nargs="*", default=[1, 3, 10], help="minutes, for part 2")
    parser.add_argument("--settings", type=int, nargs="*", default=list(range(len(SETTINGS))),
                        help="which of part 1's settings to run (0: the Train tab's default, 1: shipped-small)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-train"))
    args = parser.parse_args(argv)
    if args.budgets and 0 not in args.settings:
        parser.error("part 2 fits its steps to setting 0's speed: include 0 in --settings, or pass --budgets alone")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    print("| setting | app (tokens/s) | `python -m gpt pretrain` (tokens/s) | app / CLI |\n|---|---|---|---|")
    speed = {}
    for i in args.settings:
        name, preset, books = SETTINGS[i]
        train, val = corpus(books)
        cfg = config(preset, 100_000)  # the time limit ends it
        app = app_run(cfg, train, val, args.out / f"app-{i}", args.seconds)
        text = args.out / f"train-{i}.txt"
        text.write_text(join_documents(train))
        cli = cli_run(cfg, preset, text, args.out / f"cli-{i}", args.seconds)
        app_speed = app.tokens_seen / app.train_time_s
        cli_speed = cli["tokens_seen"] / cli["train_time_s"]
        speed[preset] = app_speed
        print(f"| {name} | {app_speed:,.0f} | {cli_speed:,.0f} | {app_speed / cli_speed:.2f} |", flush=True)
    if not args.budgets:
        return 0
    train, val = corpus(SETTINGS[0][2])
    tokens_per_step = BATCH * GPTConfig.preset("classroom").context_length
    print("\n| budget | steps | tokens seen | held-out bits per byte | xz -9 after training text | 5-gram |")
    print("|---|---|---|---|---|---|")
    for minutes in args.budgets:
        steps = max(1, int(minutes * 60 * speed["classroom"] / tokens_per_step))
        run = app_run(config("classroom", steps), train, val, args.out / f"budget-{minutes:g}", 60 * minutes * 1.5)
        base = run.baselines
        print(f"| {minutes:g} min | {run.steps:,} | {run.tokens_seen:,} | {run.held_out_bits_per_byte:.3f} "
              f"| {base['xz -9 (after the training text)']:.3f} | {base['Kneser-Ney byte 5-gram']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
