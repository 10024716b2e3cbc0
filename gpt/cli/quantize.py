"""`python -m gpt quantize`: write an int8 copy of a model (weight-only, gpt/quantize.py) and say what it cost.

Every linear layer's weight becomes int8 with float scales per output channel (or per group of
`--group-size` inputs); embeddings and norms stay float. Prints the rounding error of every layer and
the bytes before and after; the folder loads like any checkpoint (`--model OUT` anywhere), int8 as saved.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gpt.checkpoint import save_checkpoint
from gpt.pretrained import MODEL_NAMES_HELP, load_model
from gpt.quantize import format_errors, is_quantized, quantize_model, weight_bytes

HELP = "write an int8 (weight-only) copy of a model, with each layer's rounding error"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help=MODEL_NAMES_HELP)
    parser.add_argument("--out", type=Path, required=True, help="the int8 checkpoint folder to write")
    parser.add_argument("--group-size", type=int,
                        help="one scale per this many inputs of a row (must divide every layer's width); "
                             "default: one scale per output channel")


def run(args: argparse.Namespace) -> None:
    if args.group_size is not None and args.group_size < 1:
        raise ValueError(f"--group-size must be >= 1, got {args.group_size}")
    ckpt = load_model(args.model)
    if is_quantized(ckpt.model):
        raise ValueError(f"{args.model} is int8 already")
    before = weight_bytes(ckpt.model)
    errors = quantize_model(ckpt.model, args.group_size)
    after = weight_bytes(ckpt.model)
    meta = {**ckpt.meta, "quantized_from": str(args.model)}
    save_checkpoint(ckpt.model, args.out, ckpt.tokenizer, meta)
    print(format_errors(errors))
    worst = max(errors, key=lambda e: e.relative_error)
    print(f"{len(errors)} layers to int8; largest relative error {worst.relative_error:.4f} ({worst.name}); "
          f"weights {before / 1e6:,.1f} MB -> {after / 1e6:,.1f} MB; saved in {args.out}")
