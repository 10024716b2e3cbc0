"""What int8 costs the shipped base model: held-out loss and bits per byte, greedy text, bytes; beside
float32 and bfloat16, in one run.

The held-out text is the whole held-out part of every source (`gpt.data.corpus`), scored as the
model card scores it; the greedy continuations of the Generate tab's example prompts are compared
token by token with float32's.

    python -m benchmarks.quantization [--model assets/models/base] [--group-size G]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from gpt.checkpoint import load_checkpoint
from gpt.data.corpus import join_documents, load_corpus
from gpt.files import SHIPPED_BASE
from gpt.generate import SamplingConfig, common_prefix, generate
from gpt.quantize import PRECISIONS, quantize_model, to_precision, weight_bytes
from gpt.training.loss import bits_per_byte, heldout_loss

PROMPTS = ("It is a truth universally acknowledged, that", "And God said unto Noah,", "The Roman Empire was",
           "Preheat the oven to", "A friend is someone who")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quantization", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHIPPED_BASE), help="a checkpoint folder (default: %(default)s)")
    parser.add_argument("--group-size", type=int, help="int8 scales per group of this many inputs")
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args(argv)

    held_out = load_corpus().held_out
    n_bytes = len(join_documents(d.text for d in held_out).encode("utf-8"))
    greedy = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0)
    rows, texts = [], {}
    for precision in PRECISIONS:
        ckpt = load_checkpoint(args.model)
        tokenizer = ckpt.tokenizer
        if precision == "int8":
            errors = quantize_model(ckpt.model, args.group_size)
            worst = max(e.relative_error for e in errors)
        else:
            to_precision(ckpt.model, precision)
        ids = [i for doc in held_out for i in tokenizer.encode(doc.text) + [tokenizer.eot_id]]
        loss, count = heldout_loss(ckpt.model, np.asarray(ids, dtype=np.int64), batch_size=32)
        texts[precision] = [generate(ckpt.model, tokenizer.encode(p), greedy, eot_id=tokenizer.eot_id,
                                     vocab_size=tokenizer.n_vocab) for p in PROMPTS]
        rows.append((precision, weight_bytes(ckpt.model), loss, bits_per_byte(loss * count, n_bytes)))
    fp32_loss = rows[0][2]
    print(f"{args.model}: held-out text of every source, {count:,} tokens, {n_bytes:,} bytes; "
          f"{torch.get_num_threads()} threads")
    print("| precision | weights | held-out loss | vs float32 | bits per byte | greedy tokens as float32 |")
    print("|---|---|---|---|---|---|")
    for precision, size, loss, bpb in rows:
        pairs = list(zip(texts[precision], texts["float32"], strict=True))
        same = sum(common_prefix(a, b) for a, b in pairs)
        differ = sum(a != b for a, b in pairs)
        print(f"| {precision} | {size / 1e6:.1f} MB | {loss:.4f} | {100 * (loss / fp32_loss - 1):+.3f}% | {bpb:.4f} | "
              f"{same} of {sum(len(t) for t in texts['float32'])} before a split; {differ} of {len(pairs)} "
              f"continuations differ |")
    print(f"int8: largest relative weight error of a layer {worst:.4f}")
    for prompt, a, b in zip(PROMPTS, texts["float32"], texts["int8"], strict=True):
        print(f"\n{prompt!r}\n  float32: {tokenizer.decode(a)!r}\n  int8:    {tokenizer.decode(b)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
