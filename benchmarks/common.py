"""What the benchmarks share: timing in turns, transformers' model of the same shape, the result table."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gpt.config import GPTConfig
from gpt.kernels import median_seconds_in_turns


def interleaved_median_seconds(steps: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """The library's timing in turns (`gpt.kernels.median_seconds_in_turns`), so one rule times every choice."""
    return median_seconds_in_turns(steps, repeats)


GPT2_SWITCHES = ("positions", "norm", "mlp", "qk_norm", "bias", "qkv_bias", "tie_weights")


def hf_model(cfg: GPTConfig, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """transformers' GPT2LMHeadModel of the same shape: random weights, no dropout, its default attention.
    Refused for a model with today's switches on: a GPT-2 of its widths would be timed as if it were the same model."""
    gpt2 = GPTConfig()
    changed = [name for name in GPT2_SWITCHES if getattr(cfg, name) != getattr(gpt2, name)]
    widths = {"n_kv_heads": cfg.kv_heads == cfg.n_heads, "mlp_hidden": cfg.hidden_dim == 4 * cfg.emb_dim,
              "head_width": cfg.head_dim * cfg.n_heads == cfg.emb_dim}  # what GPT-2's widths are, however written
    changed += [name for name, as_gpt2 in widths.items() if not as_gpt2]
    if changed:
        raise ValueError(f"transformers' reference here is GPT-2, and this model differs from it in "
                         f"{', '.join(changed)}: leave the reference out (--no-hf)")
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
