"""Tab 2, Attention: where each token looks, as plotly heatmaps per head, per layer and averaged."""

from __future__ import annotations

import functools
import math

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch

from gpt.generate import prompt_pieces
from ui import lens_view, surprisal_view
from ui.common import check_number, clip_chars, on_first_open, require_text, user_errors, with_notices
from ui.figures import Plot
from ui.labels import piece_label
from ui.registry import ModelRegistry

MAX_TOKENS = 128  # a heatmap wider than this has unreadable labels; the grid gets slow too
VIEWS = ("one head", "all heads", "mean over heads")
MASKED_COLOUR = "#d1d5db"  # the causal mask: cells a token may not look at show the plot background
GRID_COLUMNS = 4
ONE_HEAD_PX, MIN_CELL_PX, MAX_CELL_PX = 900, 14, 40  # a short text's heatmap is ~900 px; a cell never under 14
EXAMPLE_TEXT = "The cat sat on the mat because the cat was tired, and the mat was warm."


def attention_for(registry: ModelRegistry, model_name: str, text: str) -> tuple[list[str], list[np.ndarray], str]:
    """Token labels, each layer's (H, T, T) weights for the text, and a notice if it was cut. The model reads the
    ids every view reads for the text (`encode_prompt`): a Llama-style tokenizer's BOS first, shown as a token."""
    text, cut = clip_chars(require_text(text))
    ckpt = registry.load(model_name)
    pieces = prompt_pieces(ckpt.tokenizer, text)
    limit = min(MAX_TOKENS, ckpt.model.cfg.context_length)
    if len(pieces) > limit:
        cut = f"The text has {len(pieces):,} tokens; the heatmaps show the first {limit}."
        pieces = pieces[:limit]
    idx = torch.tensor([[p.id for p in pieces]])
    maps = ckpt.model.attention_maps(idx)
    return [piece_label(p) for p in pieces], [m[0].float().numpy() for m in maps], cut


def masked(weights: np.ndarray) -> np.ndarray:
    """Weights with the future (above the diagonal) set to NaN: plotly leaves those cells empty."""
    out = weights.astype(np.float64).copy()
    out[np.triu_indices(out.shape[-1], k=1)] = np.nan
    return out


def hover_labels(labels: list[str]) -> np.ndarray:
    """(T, T) 'query → key' strings; a numpy array, which plotly takes without checking each string."""
    return np.array([[f"{labels[q]} (#{q}) → {labels[k]} (#{k})" for k in range(len(labels))]
                     for q in range(len(labels))])


def grid_columns(n_heads: int, group: int) -> int:
    """Tiles per row: GRID_COLUMNS, or the most whole key/value groups that fit in a row (at least one)."""
    if group == 1 or group >= GRID_COLUMNS:
        return min(GRID_COLUMNS, n_heads)
    return group * (GRID_COLUMNS // group)


def head_title(head: int, group: int) -> str:
    """'head 3', or with grouped-query attention 'head 3 · KV 2': the key/value head it reads (1-based)."""
    return f"head {head + 1}" if group == 1 else f"head {head + 1} · KV {head // group + 1}"


def mosaic(layer_maps: np.ndarray, labels: list[str], group: int = 1) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """Every head's map tiled into one array, NaN between tiles: one trace draws the whole grid.

    `group`: query heads per key/value head; a group's heads sit side by side. Returns the values, the
    hover text, the tile step (T + gap), and the grid's rows and columns.
    """
    n_heads, n = layer_maps.shape[:2]
    cols = grid_columns(n_heads, group)
    rows = math.ceil(n_heads / cols)
    step = n + max(2, n // 8)  # the gap between tiles holds the next row's titles
    z = np.full((rows * step - (step - n), cols * step - (step - n)), np.nan)
    hover = hover_labels(labels)
    text = np.full(z.shape, "", dtype=hover.dtype)
    for h in range(n_heads):
        r, c = divmod(h, cols)
        z[r * step : r * step + n, c * step : c * step + n] = masked(layer_maps[h])
        text[r * step : r * step + n, c * step : c * step + n] = np.char.add(f"{head_title(h, group)}: ", hover)
    return z, text, step, rows, cols


def group_boxes(n_heads: int, group: int, n: int, step: int, cols: int) -> list[dict]:
    """A frame around each key/value group's tiles: the heads inside one read the same keys and values.

    Drawn where a group is a rectangle of tiles (within a row, or whole rows); none for multi-head attention.
    """
    if group == 1:
        return []
    pad = (step - n) / 3
    boxes = []
    for first in range(0, n_heads, group):
        (r0, c0), (r1, c1) = divmod(first, cols), divmod(first + group - 1, cols)
        if r0 != r1 and (c0, c1) != (0, cols - 1):
            continue
        boxes.append({"type": "rect", "xref": "x", "yref": "y", "layer": "above",
                      "line": {"color": "#dc2626", "width": 2},
                      "x0": c0 * step - 0.5 - pad, "x1": c1 * step + n - 0.5 + pad,
                      "y0": r0 * step - 0.5 - pad, "y1": r1 * step + n - 0.5 + pad})
    return boxes


def gap_shapes(n: int, step: int, rows: int, cols: int) -> list[dict]:
    """White strips over the gaps, so the grey of the causal mask does not run from tile to tile."""
    strip = {"type": "rect", "fillcolor": "white", "line": {"width": 0}, "layer": "above"}
    x_gaps = [{**strip, "xref": "x", "yref": "paper", "x0": c * step - (step - n) - 0.5, "x1": c * step - 0.5,
               "y0": 0, "y1": 1} for c in range(1, cols)]
    y_gaps = [{**strip, "xref": "paper", "yref": "y", "y0": r * step - (step - n) - 0.5, "y1": r * step - 0.5,
               "x0": 0, "x1": 1} for r in range(1, rows)]
    return x_gaps + y_gaps


def cell_px(n: int) -> int:
    """A one-head heatmap's cell in pixels: large for a short text (readable on a projector), at least 14."""
    return max(MIN_CELL_PX, min(MAX_CELL_PX, ONE_HEAD_PX // max(n, 1)))


def ticks(labels: list[str], step: int, repeats: int, size: int = 10) -> dict:
    """Token labels at each tile's positions (repeated tokens keep their own tick)."""
    return {"tickmode": "array", "tickvals": [t * step + i for t in range(repeats) for i in range(len(labels))],
            "ticktext": labels * repeats, "tickfont": {"size": size}}


def attention_figure(labels: list[str], layer_maps: np.ndarray, layer: int, view: str, head: int,
                     kv_heads: int | None = None) -> go.Figure:
    """layer_maps: (H, T, T) of one layer. `layer`, `head` are 1-based, as the sliders show them; `kv_heads`
    fewer than H (grouped-query attention) frames the heads that share a key/value head.

    Heatmaps are drawn over integer positions, never over the token strings: plotly would merge
    repeated tokens into one row.
    """
    n, n_heads = len(labels), layer_maps.shape[0]
    group = n_heads // (kv_heads or n_heads)
    axis = {"showgrid": False, "zeroline": False}
    if view == "all heads":
        z, text, step, rows, cols = mosaic(layer_maps, labels, group)
        xaxis = {**axis, **(ticks(labels, step, cols) if n <= 16 else {"showticklabels": False})}
        yaxis = {**axis, **(ticks(labels, step, rows) if n <= 16 else {"showticklabels": False})}
        titles = [{"text": head_title(h, group), "x": (h % cols) * step + (n - 1) / 2, "y": (h // cols) * step - 0.5,
                   "yanchor": "bottom", "showarrow": False} for h in range(n_heads)]
        shapes = gap_shapes(n, step, rows, cols) + group_boxes(n_heads, group, n, step, cols)
        framed = " (red frames: heads sharing one key/value head)" if group > 1 else ""
        title, height = f"Layer {layer}: every head (grey = masked future){framed}", 280 * rows + 100
    else:
        weights = layer_maps.mean(axis=0) if view == "mean over heads" else layer_maps[head - 1]
        z, text = masked(weights), hover_labels(labels)
        cell = cell_px(n)
        font = 14 if cell >= 24 else 10
        xaxis = {**axis, "title": "looks at (key)", **ticks(labels, n, 1, font)}
        yaxis = {**axis, "title": "token (query)", **ticks(labels, n, 1, font)}
        what = "mean over heads" if view == "mean over heads" else head_title(head - 1, group)
        titles, shapes = [], []
        title, height = f"Layer {layer}, {what} (grey = masked future)", cell * n + 220
    trace = go.Heatmap(z=z, text=text, hovertemplate="%{text}: %{z:.3f}<extra></extra>", hoverongaps=False,
                       colorscale="Viridis", zmin=0, zmax=float(np.nanmax(z)))
    layout = {"title": title, "height": height, "plot_bgcolor": MASKED_COLOUR, "annotations": titles,
              "shapes": shapes, "margin": {"l": 40, "r": 20, "t": 70, "b": 40},
              "xaxis": {**xaxis, "constrain": "domain"},  # square cells: the longer axis shrinks, no grey padding
              "yaxis": {**yaxis, "autorange": "reversed", "scaleanchor": "x", "constrain": "domain"}}
    return go.Figure(trace, layout)


def attention(registry: ModelRegistry, model_name: str, text: str, layer: float, view: str,
              head: float) -> tuple[go.Figure, str]:
    """The heatmap(s) for one layer, and a line on what is shown."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}.")
    cfg = registry.load(model_name).model.cfg
    layer = check_number(layer, "Layer", 1, cfg.n_layers, integer=True)
    head = check_number(head, "Head", 1, cfg.n_heads, integer=True)
    labels, maps, cut = attention_for(registry, model_name, text)
    fig = attention_figure(labels, maps[layer - 1], layer, view, head, cfg.kv_heads)
    info = (f"{len(labels)} tokens · {cfg.n_layers} layers × {heads_line(cfg.n_heads, cfg.kv_heads)}. Each row is a "
            f"token and sums to 1 over the tokens it may see; the grey upper triangle is the causal mask (no peeking "
            f"ahead).")
    return fig, with_notices(info, cut)


def heads_line(n_heads: int, kv_heads: int) -> str:
    """'12 heads', or with grouped-query attention '8 query heads in 4 key/value groups' and what that means."""
    if kv_heads == n_heads:
        return f"{n_heads} heads"
    groups = "1 key/value group" if kv_heads == 1 else f"{kv_heads} key/value groups"
    return (f"{n_heads} query heads in {groups} (the heads of a group read the same keys and values, so their maps "
            f"differ only by their queries)")


def slider_limits(registry: ModelRegistry, model_name: str) -> tuple[dict, dict]:
    """Fit the layer and head sliders to the picked model; leave them alone if it cannot load."""
    try:
        cfg = registry.load(model_name).model.cfg
    except (ValueError, FileNotFoundError):
        return gr.update(), gr.update()
    return gr.update(maximum=cfg.n_layers, value=1), gr.update(maximum=cfg.n_heads, value=1)


def build(registry: ModelRegistry, picker: gr.Dropdown, demo: gr.Blocks) -> None:
    gr.Markdown("Each layer's heads decide how much every token takes from the tokens before it. "
                "Pick a layer, then one head, all heads, or their mean.")
    try:
        cfg = registry.load(registry.default()).model.cfg
        n_layers, n_heads = cfg.n_layers, cfg.n_heads
    except (ValueError, FileNotFoundError):
        n_layers, n_heads = 12, 12
    with gr.Row():
        text = gr.Textbox(EXAMPLE_TEXT, lines=2, label="Text", scale=3, elem_id="att-text")
        with gr.Column(scale=2):
            view = gr.Radio(list(VIEWS), value="one head", label="Show")
            with gr.Row():
                layer = gr.Slider(1, n_layers, value=1, step=1, label="Layer")
                head = gr.Slider(1, n_heads, value=1, step=1, label="Head")
            button = gr.Button("Show attention", variant="primary", elem_id="att-run")
    info = gr.Markdown()
    plot = Plot(label="Attention", elem_id="att-plot")
    lens_view.build(registry, picker, text)
    surprisal_view.build(registry, picker, text)

    fn = user_errors(functools.partial(attention, registry))
    inputs = [picker, text, layer, view, head]
    button.click(fn, inputs, [plot, info], api_name="attention")
    for control in (layer, view, head):
        control.change(fn, inputs, [plot, info], api_visibility="private")
    demo.load(on_first_open(fn, 2), inputs, [plot, info], api_visibility="private")  # the example text's heatmap
    picker.change(functools.partial(slider_limits, registry), picker, [layer, head], api_visibility="private")
