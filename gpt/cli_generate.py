"""`python -m gpt generate`: stream a continuation of a prompt from OpenAI's GPT-2 or one of our checkpoints."""

from __future__ import annotations

import argparse
import codecs
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from gpt.checkpoint import Checkpoint, load_checkpoint
from gpt.generate import SamplingConfig, stream
from gpt.tokenizer import Tokenizer
from gpt.weights import PRETRAINED, describe, load_pretrained

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="gpt2-small",
                        help=f"{', '.join(PRETRAINED)} (OpenAI's weights), "
                             "or a checkpoint folder such as assets/models/base")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--weights", type=Path,
                        help="local safetensors file (the Hub's layout or ours, or a folder holding "
                             "model.safetensors) instead of downloading --model's")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--max-new-tokens", type=int, default=SamplingConfig.max_new_tokens)
    parser.add_argument("--temperature", type=float, default=SamplingConfig.temperature, help="0 is greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None, help="same seed, same text")


def load_model(model: str, weights: Path | None, dtype: torch.dtype) -> Checkpoint:
    """A GPT-2 size (from the Hub cache, a download or `weights`), or a checkpoint folder."""
    if model in PRETRAINED:
        print(describe(model, dtype), file=sys.stderr)
        return load_pretrained(model, dtype, progress=True, weights=weights)
    if weights is not None:
        raise ValueError(f"--weights goes with a GPT-2 size ({', '.join(PRETRAINED)}), not with --model {model}")
    if not Path(model).is_dir():
        raise ValueError(f"--model {model!r} is neither one of {', '.join(PRETRAINED)} nor a checkpoint folder")
    return load_checkpoint(model, dtype)


def stream_text(tokenizer: Tokenizer, tokens: Iterable[int]) -> Iterator[str]:
    """Text as tokens arrive. A character can span two tokens, so bytes wait until they decode."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token in tokens:
        text = decoder.decode(tokenizer.decode_bytes([token]))
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def run(args: argparse.Namespace) -> None:
    # Check every argument before loading (maybe downloading) gigabytes.
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    if not args.prompt:
        raise ValueError("--prompt is empty: give at least one character")
    ckpt = load_model(args.model, args.weights, DTYPES[args.dtype])
    prompt_ids = ckpt.tokenizer.encode(args.prompt)
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    tokens = stream(ckpt.model, prompt_ids, sampling, eot_id=ckpt.tokenizer.eot_id, vocab_size=ckpt.tokenizer.n_vocab)
    for text in stream_text(ckpt.tokenizer, tokens):
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")
