"""Model against model, in the Generate tab: one prompt, two next-token distributions and two greedy continuations."""

from __future__ import annotations

import functools

import gradio as gr
import plotly.graph_objects as go
import torch

from gpt.checkpoint import Checkpoint
from gpt.generate import SamplingConfig, next_token_logits, stream
from gpt.tokenizer import Tokenizer
from ui.common import check_number, clip_chars, fit_context, require_text, user_errors, with_notices
from ui.figures import Plot
from ui.inside import chat_prompt_option, load_two, model_text, other_dropdown, same_tokenizer, where
from ui.labels import bytes_label
from ui.registry import ModelRegistry

TOP = 10  # each model's most likely tokens; the chart shows their union
MAX_NEW_TOKENS = 64
EXPLAIN = ("**Model against model.** The same prompt to two models: their probabilities for the next token on "
           "one chart (each model's top tokens, matched by their text), and what each writes when it always "
           "takes its most likely token (greedy), so the difference is the models', not the dice's.")


def token_id(tokenizer: Tokenizer, piece: bytes) -> int | None:
    """The id of the token with exactly these bytes in this vocabulary, or None (the text is several tokens there)."""
    return tokenizer.token_id(piece)


def distributions_figure(pair: list[tuple[str, Checkpoint, torch.Tensor]]) -> tuple[go.Figure, list[str]]:
    """Grouped bars over the union of both models' top tokens, matched by their bytes; and the tokens that one
    vocabulary lacks."""
    pieces = list(dict.fromkeys(ckpt.tokenizer.decode_bytes([i]) for _, ckpt, probs in pair
                                for i in probs.topk(TOP).indices.tolist()))
    positions = list(range(len(pieces)))  # plotly would merge equal labels: plot positions, label the ticks
    bars, missing = [], []
    for (name, ckpt, probs), colour in zip(pair, ("#4f46e5", "#f59e0b"), strict=True):
        ids = [token_id(ckpt.tokenizer, p) for p in pieces]
        missing += [f"{bytes_label(p)!r} in {name}" for p, i in zip(pieces, ids, strict=True) if i is None]
        bars.append(go.Bar(x=positions, y=[None if i is None else float(probs[i]) for i in ids], name=name,
                           marker_color=colour, hovertemplate="%{y:.3f}<extra>" + name + "</extra>"))
    fig = go.Figure(bars)
    fig.update_layout(barmode="group", title="Next token: both models' top tokens", yaxis_title="probability",
                      height=400, legend={"orientation": "h", "y": -0.25}, margin={"l": 40, "r": 10, "t": 50, "b": 40})
    fig.update_xaxes(tickmode="array", tickvals=positions, ticktext=[bytes_label(p) for p in pieces])
    return fig, missing


def compare(registry: ModelRegistry, model_name: str, other: str, prompt: str, max_new_tokens: float,
            wrap: bool = False) -> tuple[go.Figure, str, str, str]:
    """The chart, the picked model's and the other model's greedy continuations, and a line on them. With `wrap`,
    a chat model reads the prompt inside its chat prompt and a plain model reads it as it is: each as it is used."""
    prompt, cut = clip_chars(require_text(prompt, "prompt"))
    new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
    pair, texts, notices, reads = [], [], [cut], []
    for name, ckpt in zip((model_name, other), load_two(registry, model_name, other), strict=True):
        tokenizer = ckpt.tokenizer
        read = model_text(ckpt, name, prompt, wrap)
        reads.append((name, read.wrapped))
        ids, too_long = fit_context(read.ids(tokenizer), ckpt.model.cfg.context_length)
        notices += [read.notice, too_long and f"{name}: {too_long}"]
        probs = torch.softmax(next_token_logits(ckpt.model, ids, tokenizer.n_vocab), dim=-1)
        pair.append((name, ckpt, probs))
        greedy = stream(ckpt.model, ids, SamplingConfig(max_new_tokens=new_tokens, temperature=0),
                        eot_id=tokenizer.stop_ids, vocab_size=tokenizer.n_vocab)
        texts.append(tokenizer.decode(list(greedy)))
    fig, missing = distributions_figure(pair)
    shared = same_tokenizer(pair[0][1].tokenizer, pair[1][1].tokenizer)
    info = f"Greedy text: **{model_name}** on the left, **{other}** on the right. " + (
        "The two share a tokenizer: each bar pair is the same token." if shared else
        "The two models have different tokenizers: bars are matched by the token's text, and a bar is "
        "missing where that text is not one token of the other vocabulary"
        + (f" (no token {', '.join(missing)})." if missing else "."))
    if any(wrapped for _, wrapped in reads):
        info += " " + "; ".join(f"**{name}** reads " + ("the chat prompt above, yours inside it" if wrapped else
                                                        "your prompt as it is") for name, wrapped in reads) + "."
    return fig, texts[0], texts[1], with_notices(f"{info}\n\n{where(next_token_logits, stream)}", *notices)


def build(registry: ModelRegistry, picker: gr.Dropdown, prompt: gr.Textbox) -> None:
    """An accordion in the Generate tab, on the tab's prompt."""
    with gr.Accordion("Model against model: one prompt, two models", open=False, elem_id="compare") as accordion:
        gr.Markdown(EXPLAIN)
        with gr.Row(equal_height=True):
            other = other_dropdown(registry, accordion, "Against the picked model", "compare-other")
            new_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=30, step=1, label="Greedy tokens", scale=2)
            button = gr.Button("Compare", variant="primary", elem_id="compare-run", scale=1)
        wrap = chat_prompt_option(registry, [picker, other], prompt, "compare")
        info = gr.Markdown(elem_id="compare-info")
        plot = Plot(label="Next-token probabilities, both models", elem_id="compare-plot")
        with gr.Row():
            first = gr.Textbox(label="The picked model, greedy", lines=4, elem_id="compare-a")
            second = gr.Textbox(label="The other model, greedy", lines=4, elem_id="compare-b")
    fn = user_errors(functools.partial(compare, registry))
    button.click(fn, [picker, other, prompt, new_tokens, wrap], [plot, first, second, info], api_name="compare_models")
