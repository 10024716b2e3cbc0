"""Inference speed of our model beside Hugging Face transformers' GPT2LMHeadModel, in one run.

Both get the same random weights of one shape (gpt2-small by default, or the shape of a checkpoint
folder such as assets/models/base), the same threads and the same inputs; ours runs with its fast
modules (`to_precision` swaps them in, as for the app and the CLI). The machines are shared, so the
ratio is the figure to read, not the absolute speed. Each precision of ours is timed beside
transformers in the same precision (int8, which transformers has no CPU path for, beside its
float32). A decode step reads every weight once, so the weights' bytes over the memory bandwidth
is the fastest decoding can be: the share of that limit reached is printed. The bandwidth is
measured in turns with the decode timings (a full read of a buffer far larger than the caches),
so that both see the same load on a shared host.

    python -m benchmarks.inference [--dtype float32 bfloat16 int8] [--model assets/models/base] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.common import format_table, hf_model, interleaved_median_seconds, throughput_row
from benchmarks.machine import memory_read
from gpt.checkpoint import read_config
from gpt.config import PRESETS, GPTConfig
from gpt.generate import SamplingConfig, generate
from gpt.model import GPTModel
from gpt.quantize import PRECISIONS, to_precision

DECODE = "decode"
MEMORY_READ = "memory read"  # the bandwidth probe timed in turns with the decode workload


def config_of(model: str) -> GPTConfig:
    """A preset's shape, or a checkpoint folder's (its weights are not read: the timing needs the shape only)."""
    return GPTConfig.preset(model) if model in PRESETS else read_config(model)["model"]


def run_benchmarks(model: str = "gpt2-small", precision: str = "float32", repeats: int = 3,
                   prefill_len: int = 256, prompt_len: int = 32, new_tokens: int = 128,
                   with_hf: bool = True, probe_bytes: int = 2 * 1024**3
                   ) -> tuple[list[dict[str, float | str]], int, float]:
    """The rows of one precision, the bytes of our weights in it, and the memory bandwidth (bytes/s)
    measured in turns with the decode timings."""
    torch.manual_seed(0)
    cfg = config_of(model)
    ours = to_precision(GPTModel(cfg).eval(), precision)
    prefill_len = min(prefill_len, cfg.context_length)
    prefill_ids = torch.randint(0, cfg.vocab_size, (1, prefill_len))
    batch_ids = torch.randint(0, cfg.vocab_size, (8, prefill_len))
    prompt = torch.randint(0, cfg.vocab_size, (1, prompt_len))
    greedy = SamplingConfig(max_new_tokens=new_tokens, temperature=0, stop_at_eot=False)

    hf_dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    hf = hf_model(cfg, hf_dtype).eval() if with_hf else None
    workloads = [
        (f"prefill 1x{prefill_len}", prefill_len,
         lambda: ours(prefill_ids, last_only=True),
         None if hf is None else lambda: hf(prefill_ids, logits_to_keep=1)),
        (f"prefill 8x{prefill_len}", 8 * prefill_len,
         lambda: ours(batch_ids, last_only=True),
         None if hf is None else lambda: hf(batch_ids, logits_to_keep=1)),
        (f"{DECODE} {prompt_len}+{new_tokens} (KV cache)", new_tokens,
         lambda: generate(ours, prompt[0].tolist(), greedy),
         None if hf is None else lambda: hf.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                     do_sample=False, pad_token_id=0)),
    ]
    rows: list[dict[str, float | str]] = []
    with torch.inference_mode():
        for name, n_tokens, ours_fn, hf_fn in workloads:
            steps = {"ours": ours_fn} if hf_fn is None else {"ours": ours_fn, "transformers": hf_fn}
            if name.startswith(DECODE):
                steps[MEMORY_READ] = memory_read(probe_bytes)
            seconds = interleaved_median_seconds(steps, repeats)
            if MEMORY_READ in seconds:
                bandwidth = probe_bytes / seconds.pop(MEMORY_READ)
            rows.append(throughput_row(name, n_tokens, seconds))
    return rows, decode_bytes(ours), bandwidth


def decode_bytes(model: GPTModel) -> int:
    """Bytes a decode step reads: every weight but the embedding tables, of which it reads one row each (a
    head tied to the token embedding is read whole, as the head)."""
    state = model.state_dict(keep_vars=True)
    tensors = {t.data_ptr(): t for name, t in state.items() if name not in ("tok_emb.weight", "pos_emb.weight")}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def bandwidth_line(rows: list[dict[str, float | str]], n_bytes: int, bandwidth: float) -> str:
    """What the memory allows a decode step, and the share of it ours and transformers reach."""
    decode = next(r for r in rows if str(r["workload"]).startswith(DECODE))
    limit = bandwidth / n_bytes
    shares = ", ".join(f"{name} {100 * float(decode[name]) / limit:.0f}%" for name in ("ours", "transformers")
                       if name in decode)
    return (f"a decode step reads {n_bytes / 1e6:,.1f} MB of weights; memory bandwidth {bandwidth / 1e9:.1f} GB/s "
            f"allows {limit:.1f} decode tokens/s; reached: {shares}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "--preset", default="gpt2-small",
                        help="a preset (gpt2-small, ...) or a checkpoint folder whose shape is timed")
    parser.add_argument("--dtype", nargs="+", choices=PRECISIONS, default=["float32"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers reference")
    args = parser.parse_args(argv)
    for precision in args.dtype:
        rows, n_bytes, bandwidth = run_benchmarks(args.model, precision, args.repeats, with_hf=not args.no_hf)
        reference = " (transformers in float32)" if precision == "int8" else ""
        title = (f"{args.model}, random weights, {precision}{reference}, {torch.get_num_threads()} threads, "
                 f"median of {args.repeats}")
        print(format_table(rows, title))
        print(bandwidth_line(rows, n_bytes, bandwidth) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
