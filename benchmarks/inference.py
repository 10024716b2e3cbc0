"""Inference speed of our model beside Hugging Face transformers' GPT2LMHeadModel, in one run.

Both get the same random gpt2-small weights, the same threads and the same inputs; the machines
are shared, so the ratio is the figure to read, not the absolute speed.

    python -m benchmarks.inference [--dtype bfloat16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.common import format_table, hf_model, interleaved_median_seconds, throughput_row
from gpt.config import GPTConfig
from gpt.generate import SamplingConfig, generate
from gpt.model import GPTModel
from gpt.precision import AUTOCAST_CHOICES, dtype_of


def run_benchmarks(preset: str = "gpt2-small", dtype: str = "float32", repeats: int = 3,
                   prefill_len: int = 256, prompt_len: int = 32, new_tokens: int = 128,
                   with_hf: bool = True) -> list[dict[str, float | str]]:
    torch.manual_seed(0)
    cfg = GPTConfig.preset(preset)
    ours = GPTModel(cfg).to(dtype_of(dtype)).eval()
    prefill_ids = torch.randint(0, cfg.vocab_size, (1, prefill_len))
    prompt = torch.randint(0, cfg.vocab_size, (1, prompt_len))
    greedy = SamplingConfig(max_new_tokens=new_tokens, temperature=0, stop_at_eot=False)

    hf = hf_model(cfg, dtype_of(dtype)).eval() if with_hf else None
    workloads = [
        (f"prefill 1x{prefill_len}", prefill_len,
         lambda: ours(prefill_ids, last_only=True),
         None if hf is None else lambda: hf(prefill_ids, logits_to_keep=1)),
        (f"decode {prompt_len}+{new_tokens} (KV cache)", new_tokens,
         lambda: generate(ours, prompt[0].tolist(), greedy),
         None if hf is None else lambda: hf.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                     do_sample=False, pad_token_id=0)),
    ]
    rows: list[dict[str, float | str]] = []
    with torch.inference_mode():
        for name, n_tokens, ours_fn, hf_fn in workloads:
            steps = {"ours": ours_fn} if hf_fn is None else {"ours": ours_fn, "transformers": hf_fn}
            rows.append(throughput_row(name, n_tokens, interleaved_median_seconds(steps, repeats)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gpt2-small")
    parser.add_argument("--dtype", choices=AUTOCAST_CHOICES, default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers reference")
    args = parser.parse_args(argv)
    rows = run_benchmarks(args.preset, args.dtype, args.repeats, with_hf=not args.no_hf)
    title = f"{args.preset}, random weights, {args.dtype}, {torch.get_num_threads()} threads, median of {args.repeats}"
    print(format_table(rows, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
