"""`python -m gpt baselines`: bits per byte of `xz -9` and Kneser-Ney byte n-grams on the shipped held-out text.

With `--by-source`, every source's held-out documents apart, and with `--model` that model's figure
beside them (the base model's card reports this table; `--out` writes it as JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gpt.checkpoint import load_checkpoint
from gpt.data.corpus import load_corpus
from gpt.files import write_text_atomic
from gpt.pretrain.baselines import per_source_figures, shipped_corpus_baselines

HELP = "bits per byte the base model must beat: xz -9 and byte n-grams on the same held-out text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 5], help="n-gram orders to fit")
    parser.add_argument("--by-source", action="store_true", help="one row per source (the highest order only)")
    parser.add_argument("--model", type=Path, default=None, help="with --by-source: a model folder to score too")
    parser.add_argument("--out", type=Path, default=None, help="with --by-source: write the table as JSON here")


def run(args: argparse.Namespace) -> None:
    if not args.by_source:
        for name, bpb in shipped_corpus_baselines(tuple(args.orders)).items():
            print(f"| {name} | {bpb:.4f} |")
        return
    checkpoint = load_checkpoint(args.model) if args.model else None
    figures = per_source_figures(load_corpus(), checkpoint.model if checkpoint else None,
                                 checkpoint.tokenizer if checkpoint else None, order=max(args.orders))
    print(f"| source | held-out bytes | model | xz -9 (primed) | byte {max(args.orders)}-gram | model / xz |")
    print("|---|---|---|---|---|---|")
    for f in figures:
        model = "" if f.model is None else f"{f.model:.3f}"
        ratio = "" if f.model_over_xz is None else f"{f.model_over_xz:.2f}"
        print(f"| {f.source} | {f.held_out_bytes:,} | {model} | {f.xz:.3f} | {f.ngram:.3f} | {ratio} |")
    if args.out:
        write_text_atomic(args.out, json.dumps([f.to_dict() for f in figures], indent=2) + "\n")
