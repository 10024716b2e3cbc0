"""`python -m gpt finetune-rl`: GRPO with verifiable rewards on checkable arithmetic (`gpt.reasoning.grpo`).

Tunes a chat model (the shipped one by default) on problems harder than its instruction data asked,
rewarded by the verifier, against its own starting weights; held-out accuracy is measured greedily
before, during and after. `--resume` goes on from the state a stopped run left in `--out`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from gpt.cli.instruct import add_finetune_arguments, finetune_setup
from gpt.cli.progress import TqdmListener
from gpt.files import SHIPPED_MODELS, write_text_atomic
from gpt.instruct.prompt import CHAT_PROMPT_FORMAT
from gpt.pretrained import MODEL_NAMES_HELP, load_model
from gpt.reasoning.grpo import RL_PRESETS, RLConfig, finetune_rl
from gpt.training.events import TrainingMonitor

HELP = "reinforcement learning (GRPO) on arithmetic whose answers the verifier checks"
RESULT_FILE = "rl_result.json"
KEPT_META = ("prompt_format", "chat_turns")  # the starting chat model's, so the result reads the same prompts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(SHIPPED_MODELS / "instruct"),
                        help=f"the chat model to tune: {MODEL_NAMES_HELP} (default: %(default)s)")
    parser.add_argument("--preset", choices=sorted(RL_PRESETS), help="default: shipped")
    parser.add_argument("--out", type=Path, default=Path("runs/rl"),
                        help=f"the tuned checkpoint, its resumable state and {RESULT_FILE} (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="go on from the state a stopped run left in --out")
    add_finetune_arguments(parser, RLConfig)


def run(args: argparse.Namespace) -> None:
    args.preset = args.preset or "shipped"
    device, cfg = finetune_setup(args, RL_PRESETS, RLConfig)
    checkpoint = load_model(args.model, device=str(device))
    meta = {"base_model": str(args.model), **{k: checkpoint.meta[k] for k in KEPT_META if k in checkpoint.meta}}
    meta.setdefault("prompt_format", CHAT_PROMPT_FORMAT)
    bar = TqdmListener("grpo", enabled=not args.quiet)
    try:
        result = finetune_rl(checkpoint, cfg, args.out, TrainingMonitor(bar), meta, resume=args.resume,
                             device=device)
    finally:
        bar.close()
    evals = result.evals
    if evals:
        first, last = evals[0], evals[-1]
        print(f"held-out accuracy (greedy, {cfg.eval_problems} problems of {cfg.task}): step {first['step']} "
              f"{first['held_out_accuracy']:.1f}% -> step {last['step']} {last['held_out_accuracy']:.1f}%")
    print(f"{'stopped' if result.stopped else 'tuned'} at step {result.steps} of {cfg.steps} in "
          f"{result.seconds:.0f} s; checkpoint: {args.out}")
    record = {"model": str(args.model), "rl": asdict(cfg), **asdict(result)}
    write_text_atomic(Path(args.out) / RESULT_FILE, json.dumps(record, indent=1) + "\n")
