"""The KV cache, in the Generate tab's one-token mode: its shape and bytes as the text grows, what it saves in
time, and what weights plus cache take in memory for every preset."""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from gpt.cache_cost import cache_bytes, cache_shape, seconds_per_token, weights_bytes
from gpt.config import PRESETS, GPTConfig
from gpt.open_models import CATALOGUE
from gpt.precision import DTYPES
from ui.common import check_number, user_errors, with_notices
from ui.figures import Plot
from ui.generation import GREEDY_STEP, make_request
from ui.inside import where
from ui.registry import ModelRegistry

MAX_TIMED_TOKENS = 32
MAX_TIMED_PROMPT = 256  # without the cache each step reads the whole text again: bounded so a request stays short
MAX_CONTEXT = 8_192
MAX_BATCH = 64
EXPLAIN = ("**The KV cache.** To write the next token, each layer needs the keys and values of every token before "
           "it. Without a cache they are computed again at every step; with one (`KVCache`, preallocated for the "
           "whole window) a step computes them for one new token and reads the rest. Click *One token at a time* "
           "above and watch it fill.")


def mb(n_bytes: float) -> str:
    """Bytes in the unit that reads best: kB, MB or GB."""
    if n_bytes < 1e6:
        return f"{n_bytes / 1e3:,.1f} kB"
    return f"{n_bytes / 1e6:,.2f} MB" if n_bytes < 1e9 else f"{n_bytes / 1e9:,.2f} GB"


def growth_figure(cfg: GPTConfig, tokens: int, dtype: str) -> go.Figure:
    """Cache bytes against tokens over the whole window, the weights beside them, a marker at `tokens`."""
    x = list(range(0, cfg.context_length + 1, max(1, cfg.context_length // 64))) + [cfg.context_length]
    fig = go.Figure([
        go.Scatter(x=x, y=[cache_bytes(cfg, t, dtype) / 1e6 for t in x], name="KV cache, filled", mode="lines"),
        go.Scatter(x=[0, cfg.context_length], y=[weights_bytes(cfg, dtype) / 1e6] * 2, name="weights",
                   mode="lines", line={"dash": "dot"}),
        go.Scatter(x=[tokens], y=[cache_bytes(cfg, tokens, dtype) / 1e6], name="now", mode="markers",
                   marker={"size": 12, "color": "#dc2626"}),
    ])
    fig.update_layout(title=f"The cache grows by {mb(cache_bytes(cfg, 1, dtype))} a token ({dtype})", height=340,
                      xaxis_title="tokens in the window", yaxis_title="MB", legend={"orientation": "h", "y": -0.3},
                      margin={"l": 50, "r": 10, "t": 50, "b": 40})
    return fig


def kv_cache(registry: ModelRegistry, model_name: str, prompt: str, dtype: str, wrap: bool = False
             ) -> tuple[str, go.Figure]:
    """The cache once the prompt (as it stands after the last step; in a chat model's prompt if `wrap`) has been
    read: shape, bytes, a chart."""
    if dtype not in DTYPES:
        raise ValueError(f"Precision must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    req = make_request(registry, model_name, prompt, dataclasses.replace(GREEDY_STEP, wrap=wrap))
    cfg, tokens = req.ckpt.model.cfg, len(req.ids)
    shape = " × ".join(map(str, cache_shape(cfg, tokens)))
    window = cache_bytes(cfg, cfg.context_length, dtype)
    info = (f"After reading {tokens} tokens the cache holds keys **({shape})** (layers × batch × key/value heads × "
            f"tokens × head width) and values of the same shape: **{mb(cache_bytes(cfg, tokens, dtype))}** in {dtype}, "
            f"of {mb(window)} allocated for the {cfg.context_length}-token window. The next token adds "
            f"{mb(cache_bytes(cfg, 1, dtype))}.{grouped_heads(cfg, tokens, dtype)}\n\n"
            f"{where(cache_shape, cache_bytes)}")
    return with_notices(info, *req.notices), growth_figure(cfg, tokens, dtype)


def grouped_heads(cfg: GPTConfig, tokens: int, dtype: str) -> str:
    """For grouped-query attention, a sentence on what sharing key/value heads saves; '' for multi-head attention."""
    if cfg.kv_heads == cfg.n_heads:
        return ""
    multi_head = dataclasses.replace(cfg, n_kv_heads=None)
    read = ("1 key/value head (multi-query)" if cfg.kv_heads == 1 else
            f"{cfg.kv_heads} key/value heads (one per group of {cfg.n_heads // cfg.kv_heads})")
    return (f" Its {cfg.n_heads} query heads read {read}, so the cache is {cfg.n_heads // cfg.kv_heads}× smaller "
            f"than multi-head attention's {mb(cache_bytes(multi_head, tokens, dtype))}.")


def kv_timing(registry: ModelRegistry, model_name: str, prompt: str, n_tokens: float, wrap: bool = False) -> str:
    """Greedy decoding of `n_tokens` after the prompt, timed per token with the cache and without it."""
    n_tokens = check_number(n_tokens, "Tokens to time", 2, MAX_TIMED_TOKENS, integer=True)
    req = make_request(registry, model_name, prompt, dataclasses.replace(GREEDY_STEP, wrap=wrap))  # as it is read
    model = req.ckpt.model
    ids = req.ids[-min(MAX_TIMED_PROMPT, model.cfg.context_length - n_tokens):]
    cut = "" if len(ids) == len(req.ids) else f"Only the prompt's last {len(ids)} tokens are used for the timing."
    with_cache, without = (seconds_per_token(model, ids, n_tokens, use_cache) for use_cache in (True, False))
    info = (f"| {len(ids)}-token prompt, {n_tokens} greedy tokens | time per token |\n|---|---|\n"
            f"| with the KV cache | **{with_cache * 1e3:.1f} ms** |\n| without (the whole text again) | "
            f"**{without * 1e3:.1f} ms** |\n\nThe cache makes a step {without / with_cache:.1f}× faster here; "
            f"the gap widens as the text grows (measured on this server's CPU, median of the steps).\n\n"
            f"{where(seconds_per_token)}")
    return with_notices(info, cut, *req.notices)


def open_model_configs() -> dict[str, GPTConfig]:
    """Today's open models of the catalogue, one row per shape (an instruct model has its base's): their configs
    are known without a download."""
    shapes: dict[str, GPTConfig] = {}
    for name, entry in CATALOGUE.items():
        cfg = entry.config()
        if cfg not in shapes.values():
            shapes[f"{name} ({entry.family})"] = cfg
    return shapes


def memory_table(registry: ModelRegistry, model_name: str, dtype: str, context: float, batch: float
                 ) -> pd.DataFrame:
    """Weights plus a cache of `context` tokens (at most each model's window) for `batch` texts: every preset, and
    today's open models, whose grouped key/value heads make their cache per token smaller than GPT-2's."""
    if dtype not in DTYPES:
        raise ValueError(f"Precision must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    context = check_number(context, "Context length", 1, MAX_CONTEXT, integer=True)
    batch = check_number(batch, "Batch size", 1, MAX_BATCH, integer=True)
    configs = {**PRESETS, **open_model_configs()}
    with contextlib.suppress(ValueError, FileNotFoundError):  # the picked model cannot load: the others still answer
        configs = {f"{model_name} (picked)": registry.load(model_name).model.cfg, **configs}
    rows = []
    for name, cfg in configs.items():
        tokens = min(context, cfg.context_length)
        weights, cache = weights_bytes(cfg, dtype), cache_bytes(cfg, tokens, dtype, batch)
        rows.append((name, f"{cfg.n_params() / 1e6:,.1f}M", f"{cfg.n_layers} × {cfg.emb_dim}",
                     f"{cfg.n_heads} / {cfg.kv_heads}", mb(cache_bytes(cfg, 1, dtype)), tokens, mb(weights),
                     mb(cache), mb(weights + cache)))
    return pd.DataFrame(rows, columns=["model", "parameters", "layers × width", "heads / KV heads",
                                       "KV cache per token", "tokens cached", "weights", f"KV cache (batch {batch})",
                                       "total"])


def build(registry: ModelRegistry, picker: gr.Dropdown, prompt: gr.Textbox, wrap: gr.Checkbox,
          step: gr.events.Dependency) -> None:
    """`step`: the one-token click, after which the cache view follows the grown prompt; `wrap`: the tab's
    "Wrap in the chat prompt"."""
    with gr.Accordion("The KV cache: memory for speed", open=False, elem_id="kv") as accordion:
        gr.Markdown(EXPLAIN)
        dtype = gr.Radio(list(DTYPES), value="float32", label="Precision")
        info = gr.Markdown(elem_id="kv-info")
        growth = Plot(label="Cache size", elem_id="kv-plot")
        with gr.Row(equal_height=True):
            n_tokens = gr.Slider(2, MAX_TIMED_TOKENS, value=16, step=1, label="Tokens to time", scale=3)
            time_it = gr.Button("Time it with and without the cache", elem_id="kv-time", scale=1)
        timing = gr.Markdown(elem_id="kv-timing")
        gr.Markdown("**What fits in memory**: weights plus the cache, for every preset and today's open models, at "
                    "a context length, batch and precision (`GPTConfig.memory_bytes` is the total at the full "
                    "window). The `-modern` presets keep half as many key/value heads as query heads: half the "
                    "cache. SmolLM2 shares each key/value head among 3 query heads, Qwen3 among 2: compare their "
                    "cache per token with GPT-2 small's, whose 12 heads each keep their own.")
        with gr.Row():
            context = gr.Slider(1, MAX_CONTEXT, value=1024, step=1, label="Context length (tokens)")
            batch = gr.Slider(1, MAX_BATCH, value=1, step=1, label="Batch size")
        table = gr.Dataframe(interactive=False, elem_id="kv-table")
    state = user_errors(functools.partial(kv_cache, registry))
    step.success(state, [picker, prompt, dtype, wrap], [info, growth], api_name="kv_cache")
    gr.on([accordion.expand, dtype.change], state, [picker, prompt, dtype, wrap], [info, growth],
          api_visibility="private")
    time_it.click(user_errors(functools.partial(kv_timing, registry)), [picker, prompt, n_tokens, wrap], timing,
                  api_name="kv_timing")
    calculator = user_errors(functools.partial(memory_table, registry))
    gr.on([accordion.expand, dtype.change, context.release, batch.release], calculator,
          [picker, dtype, context, batch], table, api_name="memory_table")
