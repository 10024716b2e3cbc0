"""`python -m gpt generate`: continue a prompt with OpenAI's GPT-2 or one of our checkpoints.

Sampling streams the text as it is drawn; `--beams N` searches N beams and prints the best one, and on
stderr every beam with its score and the token where it splits from the best, beside the greedy and
the sampled continuation (so stdout stays the text alone, ready for a pipe).
"""

from __future__ import annotations

import argparse
import codecs
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from gpt.cli.options import add_config_arguments, add_device_argument, check_device, config_overrides
from gpt.generate import Beam, SamplingConfig, common_prefix, generate, search_beams, stream
from gpt.model import GPTModel
from gpt.open_models import CATALOGUE
from gpt.precision import DTYPES, dtype_of
from gpt.pretrained import MODEL_NAMES_HELP, PRETRAINED, describe, load_model
from gpt.quantize import to_precision
from gpt.tokenizer import Tokenizer

HELP = ("continue a prompt with OpenAI's GPT-2, an open model from the Hub or a checkpoint folder (sampling, or "
        "beam search)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="gpt2-small",
                        help=f"{MODEL_NAMES_HELP}, such as assets/models/base")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--weights", type=Path,
                        help="local safetensors file (the Hub's layout or ours, or a folder holding "
                             "model.safetensors) instead of downloading --model's")
    parser.add_argument("--dtype", choices=[*DTYPES, "int8"], default="float32",
                        help="int8: every linear layer's weight as int8 with per-channel scales (gpt/quantize.py); "
                             "a checkpoint saved by `python -m gpt quantize` is int8 already")
    parser.add_argument("--beams", type=int, default=0,
                        help="beam search with this many beams instead of sampling (0: sample); stdout gets the "
                             "best, stderr every beam's score and split point beside the greedy and sampled text")
    parser.add_argument("--length-penalty", type=float, default=1.0,
                        help="beam scores are log-probability / length**penalty")
    add_device_argument(parser)
    add_config_arguments(parser, SamplingConfig, skip=("stop_at_eot",))


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


def beam_report(model: GPTModel, tokenizer: Tokenizer, prompt_ids: list[int], found: list[Beam],
                sampling: SamplingConfig) -> str:
    """Every beam (score, log-probability, the token where it leaves the best), then greedy and sampled text."""
    lines = [f"{len(found)} beams, best first (score = log-probability / length**penalty):"]
    for rank, beam in enumerate(found, 1):
        split = common_prefix(beam.tokens, found[0].tokens)
        where = "the best" if rank == 1 else f"splits from the best at new token {split + 1}"
        end = " <|endoftext|>" if beam.ended else ""
        lines.append(f"  {rank}. score {beam.score:.3f}, log-prob {beam.logprob:.2f}, {where}: "
                     f"{tokenizer.decode(beam.tokens)!r}{end}")
    eot, n_vocab = tokenizer.eot_id, tokenizer.n_vocab
    greedy = generate(model, prompt_ids, SamplingConfig(max_new_tokens=sampling.max_new_tokens, temperature=0),
                      eot_id=eot, vocab_size=n_vocab)
    sampled = generate(model, prompt_ids, sampling, eot_id=eot, vocab_size=n_vocab)
    lines.append(f"greedy: {tokenizer.decode(greedy)!r}")
    lines.append(f"sampled (temperature {sampling.temperature:g}, seed {sampling.seed}): {tokenizer.decode(sampled)!r}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> None:
    # Check every argument before loading (maybe downloading) gigabytes.
    sampling = SamplingConfig(**config_overrides(args, SamplingConfig))
    if not args.prompt:
        raise ValueError("--prompt is empty: give at least one character")
    if args.beams < 0:
        raise ValueError(f"--beams must be >= 0, got {args.beams}")
    device = check_device(args.device)
    float_dtype = dtype_of("float32" if args.dtype == "int8" else args.dtype)  # int8 quantizes the float32 weights
    if args.model in PRETRAINED or args.model in CATALOGUE:
        print(describe(args.model, float_dtype), file=sys.stderr)
    ckpt = load_model(args.model, float_dtype, str(device), weights=args.weights)
    if args.dtype == "int8":
        to_precision(ckpt.model, "int8")
    prompt_ids = ckpt.tokenizer.encode(args.prompt)
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    if args.beams:
        found = search_beams(ckpt.model, prompt_ids, args.beams, sampling.max_new_tokens,
                             eot_id=ckpt.tokenizer.eot_id, length_penalty=args.length_penalty,
                             vocab_size=ckpt.tokenizer.n_vocab)
        tokens: Iterable[int] = found[0].tokens
    else:
        tokens = stream(ckpt.model, prompt_ids, sampling, eot_id=ckpt.tokenizer.eot_id,
                        vocab_size=ckpt.tokenizer.n_vocab)
    for text in stream_text(ckpt.tokenizer, tokens):
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.beams:  # after the text, so that a terminal shows the two apart
        sys.stdout.flush()
        sys.stderr.write(beam_report(ckpt.model, ckpt.tokenizer, prompt_ids, found, sampling))
