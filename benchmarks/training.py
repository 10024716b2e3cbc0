"""Training throughput of our model beside transformers' GPT2LMHeadModel, in one run, as a ratio.

Both models get the same architecture, the same random batch, the same fused AdamW, the same
gradient clipping, the same threads and the same precision (fp32, or bf16 autocast over fp32
master weights); ours runs with its fast modules (`gpt.kernels.accelerate`). A step is forward,
cross-entropy, backward, clip, optimizer step. The machines are shared, so read the ratio rather
than the absolute tokens/s. Each row also gives the model FLOP utilisation: training FLOP/s over the
matrix-product peak measured in the same run.

    python -m benchmarks.training                      # shipped-small at 16x256 and gpt2-small at 4x256, fp32
    python -m benchmarks.training --autocast bfloat16
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.common import format_table, hf_model, interleaved_median_seconds, throughput_row
from benchmarks.machine import matmul_peak, training_flops_per_token
from gpt.config import GPTConfig
from gpt.kernels import accelerate
from gpt.model import GPTModel
from gpt.precision import AUTOCAST_CHOICES
from gpt.training.optim import training_step

WORKLOADS = (("shipped-small", 16, 256), ("gpt2-small", 4, 256))  # (preset, batch, sequence length)


def run_benchmarks(workloads=WORKLOADS, precision: str = "float32", repeats: int = 3,
                   with_hf: bool = True) -> list[dict[str, float | str]]:
    rows: list[dict[str, float | str]] = []
    for preset, batch_size, seq_len in workloads:
        torch.manual_seed(0)
        cfg = GPTConfig.preset(preset, context_length=max(seq_len, 256), drop_rate=0.0)
        batch = torch.randint(0, cfg.vocab_size, (batch_size, seq_len + 1))
        tokens = batch_size * seq_len
        ours = accelerate(GPTModel(cfg)).train()
        steps = {"ours": training_step(ours, ours, batch, precision)}
        if with_hf:
            hf = hf_model(cfg).train()
            steps["transformers"] = training_step(hf, lambda x, hf=hf: hf(x).logits, batch, precision)
        row = throughput_row(f"{preset} {batch_size}x{seq_len}", tokens, interleaved_median_seconds(steps, repeats))
        flops = training_flops_per_token(cfg, seq_len)
        rows.append(row | {"params_m": ours.n_params() / 1e6, "flops_per_token": flops})
        del ours, steps
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--autocast", choices=AUTOCAST_CHOICES, default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers reference")
    args = parser.parse_args(argv)
    rows = run_benchmarks(precision=args.autocast, repeats=args.repeats, with_hf=not args.no_hf)
    title = (f"training step (fwd+bwd+clip+fused AdamW), random weights, {args.autocast}, "
             f"{torch.get_num_threads()} threads, median of {args.repeats} taken in turns")
    print(format_table(rows, title, digits=0))
    peak = matmul_peak(torch.bfloat16 if args.autocast == "bfloat16" else torch.float32)
    print(f"model FLOP utilisation against the measured {args.autocast} matrix-product peak, {peak / 1e9:.0f} GFLOP/s:")
    for row in rows:
        shares = ", ".join(f"{name} {100 * float(row[name]) * float(row['flops_per_token']) / peak:.0f}%"
                           for name in ("ours", "transformers") if name in row)
        print(f"  {row['workload']}: {shares}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
