"""`python -m gpt baselines`: bits per byte of `xz -9` and Kneser-Ney byte n-grams on the shipped held-out text."""

from __future__ import annotations

import argparse

from gpt.pretrain.baselines import shipped_corpus_baselines

HELP = "bits per byte the base model must beat: xz -9 and byte n-grams on the same held-out text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 5], help="n-gram orders to fit")


def run(args: argparse.Namespace) -> None:
    for name, bpb in shipped_corpus_baselines(tuple(args.orders)).items():
        print(f"| {name} | {bpb:.4f} |")
