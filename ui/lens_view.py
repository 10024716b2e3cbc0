"""The logit lens, in the Attention tab: what each layer would predict if the model stopped there."""

from __future__ import annotations

import dataclasses
import functools

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from gpt.checkpoint import Checkpoint
from gpt.generate import encode_prompt
from gpt.instruct.prompt import wrap_in_chat_prompt
from gpt.lens import LogitLens, logit_lens
from gpt.tokenizer import TokenPiece
from ui.common import check_number, clip_chars, require_text, user_errors, with_notices
from ui.figures import Plot
from ui.inside import ModelText, chat_prompt_option, model_text, where, window_pieces
from ui.labels import id_label
from ui.registry import ModelRegistry

MAX_TOKENS = 48  # columns of the grid: each cell carries a token's text, so it must stay readable
MAX_CHAT_TOKENS = 256  # a chat prompt is read whole up to this (the grid shows its end): every layer scores each
EXPLAIN = ("**The logit lens.** After each block the residual stream is read through the final normalisation and the "
           "output head, as if the model ended there: each cell is the token that layer finds most likely next, "
           "coloured by its probability. The bottom row reads the embeddings alone; the top row is the model's "
           "real prediction. The second chart follows that final prediction down the layers at one position.")


def layer_names(n_layers: int) -> list[str]:
    return ["embeddings"] + [f"layer {i}" for i in range(1, n_layers)] + [f"layer {n_layers} (output)"]


def lens_grid(result: LogitLens, inputs: list[str], top: list[list[str]], pos: int) -> go.Figure:
    """Layers (rows, embeddings at the bottom) by positions: the top token's text on a probability colour."""
    probs = result.top_probs.numpy()  # (L+1, T)
    rows, cols = probs.shape
    names = layer_names(rows - 1)
    hover = np.array([[f"{names[r]}, after {inputs[c]!r} (#{c + 1}): {top[r][c]!r}" for c in range(cols)]
                      for r in range(rows)])
    fig = go.Figure(go.Heatmap(z=probs, text=np.array(top), texttemplate="%{text}", textfont={"size": 10},
                               customdata=hover, hovertemplate="%{customdata}, p = %{z:.3f}<extra></extra>",
                               colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "p"}))
    fig.add_shape(type="rect", x0=pos - 0.5, x1=pos + 0.5, y0=-0.5, y1=rows - 0.5,
                  line={"color": "#dc2626", "width": 2})
    fig.update_layout(title="Each layer's most likely next token (red: the position followed below)",
                      height=max(320, 34 * rows + 170), margin={"l": 40, "r": 10, "t": 50, "b": 40},
                      xaxis={"tickmode": "array", "tickvals": list(range(cols)), "ticktext": inputs,
                             "title": "after this input token", "showgrid": False},
                      yaxis={"tickmode": "array", "tickvals": list(range(rows)), "ticktext": names, "showgrid": False})
    return fig


def lens_trace(result: LogitLens, final: str, after: str, pos: int) -> go.Figure:
    """At one position: the final prediction's probability and rank under each layer."""
    names = layer_names(result.top_ids.shape[0] - 1)
    x = list(range(len(names)))
    fig = go.Figure([
        go.Scatter(x=x, y=result.final_probs[:, pos].tolist(), name="probability", mode="lines+markers"),
        go.Scatter(x=x, y=(result.final_ranks[:, pos] + 1).tolist(), name="rank (1 = top)", mode="lines+markers",
                   yaxis="y2", line={"dash": "dot"}),
    ])
    fig.update_layout(title=f"{final!r}, the prediction after {after!r} (#{pos + 1}), layer by layer", height=360,
                      margin={"l": 50, "r": 50, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.2},
                      xaxis={"tickmode": "array", "tickvals": x, "ticktext": names},
                      yaxis={"title": "probability", "range": [0, 1.02]},
                      yaxis2={"title": "rank (1 = top, log scale)", "type": "log", "autorange": "reversed",
                              "dtick": 1, "overlaying": "y", "side": "right", "showgrid": False})
    return fig


def last_positions(result: LogitLens, n: int) -> LogitLens:
    """The lens at the last `n` positions alone."""
    return LogitLens(**{f.name: getattr(result, f.name)[..., -n:] for f in dataclasses.fields(result)})


def chat_window(ckpt: Checkpoint, read: ModelText) -> tuple[list[TokenPiece], str]:
    """A chat prompt's tokens as the model reads them (its last `MAX_CHAT_TOKENS`, at most its window), and a
    notice of what was cut. The prompt starts with fixed text: its end, where the answer starts, matters."""
    pieces = read.pieces(ckpt.tokenizer)
    limit = min(MAX_CHAT_TOKENS, ckpt.model.cfg.context_length)
    if len(pieces) <= limit:
        return pieces, ""
    return pieces[-limit:], f"The chat prompt has {len(pieces):,} tokens; only its last {limit:,} are read."


def lens(registry: ModelRegistry, model_name: str, text: str, position: float, wrap: bool = False
         ) -> tuple[go.Figure, go.Figure, str]:
    """The grid, the trace at `position` (1-based among the columns; 0 = the last token), and a line on what is
    shown. With `wrap`, a chat model reads its chat prompt around the text, and the grid shows the prompt's end.
    The model reads the ids every view reads for the text (`encode_prompt`: a Llama-style BOS first)."""
    ckpt = registry.load(model_name)
    tokenizer, cfg = ckpt.tokenizer, ckpt.model.cfg
    text, clipped = clip_chars(require_text(text))
    read = model_text(ckpt, model_name, text, wrap)
    if read.wrapped:
        pieces, cut = chat_window(ckpt, read)
    else:
        pieces, cut = window_pieces(read.pieces(tokenizer), min(MAX_TOKENS, cfg.context_length))
    cut = cut or clipped
    shown = min(len(pieces), MAX_TOKENS)
    line = (f"The model reads the chat prompt around your text ({len(pieces)} tokens, shown above); the grid shows "
            f"the last {shown}, where the answer starts." if read.wrapped else "")
    pos = check_number(position, "Position", 0, shown, integer=True) or shown
    result = last_positions(logit_lens(ckpt.model, [p.id for p in pieces], tokenizer.n_vocab), shown)
    pieces = pieces[-shown:]
    inputs = [id_label(tokenizer, p.id) for p in pieces]
    top = [[id_label(tokenizer, i) for i in row] for row in result.top_ids.tolist()]
    final = top[-1][pos - 1]
    settled = max((i + 1 for i, rank in enumerate(result.final_ranks[:, pos - 1].tolist()) if rank), default=0)
    code = (logit_lens, wrap_in_chat_prompt) if read.wrapped else (logit_lens, encode_prompt)
    info = (f"{len(pieces)} tokens × {cfg.n_layers} layers. After {inputs[pos - 1]!r} the model predicts {final!r} "
            f"(p = {float(result.final_probs[-1, pos - 1]):.3f}); it is the top guess from "
            f"{layer_names(cfg.n_layers)[settled]} on.")
    return lens_grid(result, inputs, top, pos - 1), lens_trace(result, final, inputs[pos - 1], pos - 1), \
        with_notices("\n\n".join(filter(None, [info, line, where(*code)])), cut, read.notice)


def build(registry: ModelRegistry, picker: gr.Dropdown, text: gr.Textbox) -> None:
    """An accordion under the attention heatmaps, reading the tab's text."""
    with gr.Accordion("Logit lens: what each layer would predict", open=False, elem_id="lens"):
        gr.Markdown(EXPLAIN)
        with gr.Row(equal_height=True):
            position = gr.Slider(0, MAX_TOKENS, value=0, step=1, label="Position to follow", scale=3,
                                 info="1 = the first token, 0 = the last")
            button = gr.Button("Read every layer", variant="primary", elem_id="lens-run", scale=1)
        wrap = chat_prompt_option(registry, [picker], text, "lens")
        info = gr.Markdown(elem_id="lens-info")
        grid = Plot(label="Logit lens", elem_id="lens-grid")
        trace = Plot(label="The final prediction, layer by layer", elem_id="lens-trace")
    fn = user_errors(functools.partial(lens, registry))
    button.click(fn, [picker, text, position, wrap], [grid, trace, info], api_name="logit_lens")
