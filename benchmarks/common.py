"""What the benchmarks share: timing in turns, transformers' model of the same shape, the result table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from gpt.config import GPTConfig


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
