"""The model picker the Tokenizer, Attention and Generate tabs share, and a summary of the picked model."""

from __future__ import annotations

import functools

import gradio as gr

from gpt.checkpoint import Checkpoint
from ui.common import public_message, user_errors
from ui.registry import ModelRegistry
from ui.training_panel import asker_of, owner_token, visible_choices


def tokenizer_kind(ckpt: Checkpoint) -> str:
    """Which tokenizer the model reads, in words."""
    if ckpt.tokenizer.name == "gpt2":
        return "GPT-2's BPE"
    if ckpt.tokenizer.pretokenizer == "tokenizer.json":  # a Hub model's (gpt.hub_tokenizer)
        return "its Hub tokenizer (tokenizer.json)"
    return "its own BPE"


def describe(ckpt: Checkpoint, name: str) -> str:
    cfg = ckpt.model.cfg
    bpe = tokenizer_kind(ckpt)
    switches = cfg.architecture() or "GPT-2's"
    family = ckpt.meta.get("family")
    origin = f"{family}, from {ckpt.meta['hub']} · " if family and "hub" in ckpt.meta else ""
    return (f"**{name}**: {origin}{ckpt.model.n_params() / 1e6:.1f}M parameters · {cfg.n_layers} layers · "
            f"{cfg.n_heads} heads · {cfg.emb_dim} wide · context {cfg.context_length} tokens · "
            f"{bpe} ({ckpt.tokenizer.n_vocab:,} tokens)"
            + (" · numbers digit by digit" if ckpt.tokenizer.pretokenizer == "digits" else "")
            + f"  \nArchitecture: {switches}")


def show_model(registry: ModelRegistry, name: str, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str:
    """Load (or fetch from the cache) the picked model; GPT-2's and open models' downloads show their tqdm bar
    here.

    A model that is not there (not shipped yet, offline and not in the Hugging Face cache) is reported in the
    summary, in one line and at once; an unknown name is bad input and raises. A folder without checksums loads,
    with a line saying its files cannot be verified.
    """
    registry.resolve(name)
    progress(0, desc=f"loading {name}")
    try:
        summary = describe(registry.load(name), name)
    except FileNotFoundError as err:  # not shipped yet, or GPT-2 offline and not in the cache
        return public_message(f"⚠️ {err}")
    return "  \n".join([summary, *(public_message(f"⚠️ {line}.") for line in registry.warnings_of(name))])


def picker_choices(registry: ModelRegistry, token: str | None = None, request: gr.Request = None) -> gr.Dropdown:
    """The picker's choices for this page: on a public server, of the runs only the visitor's own."""
    return gr.Dropdown(choices=visible_choices(registry, asker_of(token, request)))


def build(registry: ModelRegistry, demo: gr.Blocks) -> gr.Dropdown:
    """The picker row: a dropdown (a `local:<folder>` name can be typed) and the model's summary."""
    token = owner_token()
    with gr.Row(equal_height=True):
        picker = gr.Dropdown(
            choices=visible_choices(registry, None), value=registry.default(), allow_custom_value=True, scale=1,
            elem_id="model-picker",
            label="Model (Tokenizer, Attention and Generate tabs; runs trained in the Train tab appear here)",
            info="shipped models, OpenAI GPT-2 and today's open models (Qwen3, SmolLM2: downloaded when picked, "
                 "needs internet once; or type a Hugging Face repo id, org/name), or local:<folder> for a checkpoint "
                 "inside the app's model folder",
        )
        summary = gr.Markdown(elem_id="model-summary")
    load = user_errors(functools.partial(show_model, registry))
    picker.change(load, picker, summary, api_name="load_model")
    demo.load(load, picker, summary, api_visibility="private")
    # The choices are read anew for each page: runs trained since the server started are among them.
    demo.load(user_errors(functools.partial(picker_choices, registry)), token, picker, api_visibility="private")
    return picker
