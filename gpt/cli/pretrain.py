"""`python -m gpt pretrain`: pretrain a GPT on the shipped corpora (or text files), then export its model."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist

from gpt.cli.options import add_config_arguments, add_device_argument, check_device, config_overrides
from gpt.cli.progress import TqdmListener
from gpt.config import PRESETS, GPTConfig
from gpt.data.corpus import read_training_text
from gpt.pretrain.runs import train_run
from gpt.pretrain.state import STATE_FILE
from gpt.pretrain.trainer import PretrainConfig
from gpt.training.distributed import init_distributed
from gpt.training.events import TrainingMonitor

HELP = "pretrain a GPT on the shipped corpora (or text files)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/base", help="run folder: checkpoints, logs, figure, model/")
    parser.add_argument("--text", nargs="*", default=[],
                        help="text files (.txt or .txt.gz) instead of the shipped corpora")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="held-out tail of each --text file")
    parser.add_argument("--preset", default="shipped-small", choices=sorted(PRESETS), help="the model's shape")
    parser.add_argument("--tokenizer", default="bpe",
                        help="bpe (train our BPE to the preset's vocab), gpt2, or a .tiktoken file")
    parser.add_argument("--resume", action="store_true", help=f"continue from OUT/{STATE_FILE}")
    parser.add_argument("--time-limit-min", type=float, default=None, help="stop (with a checkpoint) after this long")
    add_device_argument(parser)
    parser.add_argument("--quiet", action="store_true")
    add_config_arguments(parser, GPTConfig, default_note="the preset's")
    add_config_arguments(parser, PretrainConfig, skip=("model",))


def run(args: argparse.Namespace) -> None:
    out_dir = Path(args.out)
    device = check_device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    model_cfg = GPTConfig.preset(args.preset, **config_overrides(args, GPTConfig))  # settings first: before any work
    cfg = PretrainConfig(model=model_cfg, **config_overrides(args, PretrainConfig))
    ddp = init_distributed(device)
    if ddp.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    train_texts, val_texts, corpus_name = read_training_text(args.text, args.val_fraction)
    time_limit = None if args.time_limit_min is None else 60 * args.time_limit_min
    bar = TqdmListener("pretrain", enabled=not args.quiet and ddp.is_main)
    try:
        run = train_run(cfg, train_texts, val_texts, args.tokenizer, out_dir, corpus_name, ddp, resume=args.resume,
                        time_limit_s=time_limit, monitor=TrainingMonitor(bar), progress=not args.quiet)
    finally:
        bar.close()
    if run is not None:
        print(f"held-out loss {run.held_out_loss:.4f}, perplexity {run.held_out_perplexity:.2f}, "
              f"{run.held_out_bits_per_byte:.4f} bits/byte over {run.held_out_bytes} bytes; "
              f"model saved to {run.model_dir}")
        for name, bpb in run.baselines.items():
            print(f"  {name}: {bpb:.4f} bits/byte")
    if ddp.world_size > 1:
        dist.destroy_process_group()
