"""Inference speed of our model beside Hugging Face transformers' GPT2LMHeadModel, in one run.

Both get the same random gpt2-small weights, the same threads and the same inputs; the machines
are shared, so the ratio is the figure to read, not the absolute speed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from gpt.config import GPTConfig
from gpt.generate import SamplingConfig, generate
from gpt.model import GPTModel

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def interleaved_median_seconds(steps: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each step, timed in turns (A, B, A, B, ...) after one warm-up each.

    On a shared machine the load changes from second to second; taking turns exposes both
    implementations to the same load, so their ratio stays meaningful.
    """
    for step in steps.values():
        step()  # warm-up: first calls allocate and pick kernels
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def hf_model(cfg: GPTConfig, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """transformers' GPT2LMHeadModel of the same shape: random weights, no dropout, its default attention."""
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.emb_dim,
                        n_layer=cfg.n_layers, n_head=cfg.n_heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=cfg.vocab_size - 1, eos_token_id=cfg.vocab_size - 1)
    return GPT2LMHeadModel(hf_cfg).to(dtype)


def throughput_row(workload: str, n_tokens: int, seconds: dict[str, float]) -> dict[str, float | str]:
    """Tokens/s of each implementation timed by `interleaved_median_seconds`, and ours over transformers'."""
    row: dict[str, float | str] = {"workload": workload} | {name: n_tokens / s for name, s in seconds.items()}
    if "transformers" in seconds:
        row["ratio"] = seconds["transformers"] / seconds["ours"]
    return row


def run_benchmarks(preset: str = "gpt2-small", dtype: str = "float32", repeats: int = 3,
                   prefill_len: int = 256, prompt_len: int = 32, new_tokens: int = 128,
                   with_hf: bool = True) -> list[dict[str, float | str]]:
    torch.manual_seed(0)
    cfg = GPTConfig.preset(preset)
    ours = GPTModel(cfg).to(DTYPES[dtype]).eval()
    prefill_ids = torch.randint(0, cfg.vocab_size, (1, prefill_len))
    prompt = torch.randint(0, cfg.vocab_size, (1, prompt_len))
    greedy = SamplingConfig(max_new_tokens=new_tokens, temperature=0, stop_at_eot=False)

    hf = hf_model(cfg, DTYPES[dtype]).eval() if with_hf else None
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


def format_table(rows: list[dict[str, float | str]], title: str, digits: int = 1) -> str:
    """A markdown table of `throughput_row`s, with a params column when the rows carry `params_m`."""
    with_params = any("params_m" in r for r in rows)
    head = ["workload", *(["params"] if with_params else []), "ours (tokens/s)", "transformers (tokens/s)", "ratio"]
    lines = [title, "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["workload"]), *([f"{float(r['params_m']):.1f}M"] if with_params else []),
                 f"{float(r['ours']):.{digits}f}",
                 f"{float(r['transformers']):.{digits}f}" if "transformers" in r else "-",
                 f"{float(r['ratio']):.2f}x" if "ratio" in r else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="gpt2-small")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers reference")


def run(args: argparse.Namespace) -> None:
    rows = run_benchmarks(args.preset, args.dtype, args.repeats, with_hf=not args.no_hf)
    title = f"{args.preset}, random weights, {args.dtype}, {torch.get_num_threads()} threads, median of {args.repeats}"
    print(format_table(rows, title))
