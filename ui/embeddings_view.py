"""Embeddings, in the Tokenizer tab: where the picked model puts tokens, and how it tells positions apart."""

from __future__ import annotations

import functools

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from gpt.embeddings import nearest_tokens, position_similarity, project_tokens, vocabulary_sample
from gpt.tokenizer import Tokenizer
from ui.common import clip_chars, join_notices, on_first_open, require_text, user_errors
from ui.figures import Plot
from ui.inside import where
from ui.labels import id_label
from ui.registry import ModelRegistry

SAMPLE = 1_500  # the grey cloud: enough to see the shape of the vocabulary, few enough to draw fast
MAX_WORDS = 12
N_NEIGHBOURS = 8
MAX_POSITIONS = 256  # the heatmap's side: longer windows are shown at every 2nd or 4th position
EXAMPLE_WORDS = "king, queen, man, woman, London, Paris, one, two, three, red, green, God"
EXPLAIN = ("**Embeddings.** A token's id picks one row of the embedding table (`tok_emb`): the vector the model "
           "starts from. Training moves tokens that are used alike close together. The scatter flattens a sample "
           "of the vocabulary and your words onto their main directions (PCA); the table lists each word's "
           "nearest tokens by cosine similarity, in all dimensions. Below: how alike the position vectors are.")


def word_tokens(tokenizer: Tokenizer, words: str, leading_space: bool) -> tuple[list[tuple[str, int]], str]:
    """(word, token id) for each typed word that is one token, and a notice naming the others."""
    words, cut = clip_chars(require_text(words, "list of words"), 1_000)
    typed = list(dict.fromkeys(w.strip() for w in words.split(",") if w.strip()))
    if not typed:
        raise ValueError("The list of words is empty: type some words, separated by commas.")
    if len(typed) > MAX_WORDS:
        cut, typed = f"Only the first {MAX_WORDS} words are shown.", typed[:MAX_WORDS]
    found, missing = [], []
    for word in typed:
        ids = tokenizer.encode((" " if leading_space else "") + word)
        if len(ids) == 1:
            found.append((word, ids[0]))
        else:
            shown = word if len(word) <= 40 else word[:40] + "…"
            pieces = " · ".join(id_label(tokenizer, i) for i in ids[:8]) + (" · …" if len(ids) > 8 else "")
            missing.append(f"{shown!r} ({len(ids)} tokens: {pieces})")
    note = "Not one token in this vocabulary, so it has no row of its own: " + ", ".join(missing) if missing else ""
    if not found:
        said = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"None of the words is a single token of this model's vocabulary: {said}.")
    return found, join_notices(cut, note)


def scatter(tokenizer: Tokenizer, points, sample: list[int], found: list[tuple[str, int]], dims: int) -> go.Figure:
    """The sample in grey, the typed words in colour with their labels."""
    n = len(sample)
    labels = [id_label(tokenizer, i) for i in sample]
    coords = points.T.tolist()  # dims lists
    trace = go.Scatter3d if dims == 3 else go.Scatter
    axes = dict(zip("xyz", coords, strict=False))
    marker = {"size": 3 if dims == 3 else 5}
    fig = go.Figure([
        trace(**{k: v[:n] for k, v in axes.items()}, mode="markers", name="a sample of the vocabulary",
              text=labels, hovertemplate="%{text}<extra></extra>", marker={**marker, "color": "#cbd5e1"}),
        trace(**{k: v[n:] for k, v in axes.items()}, mode="markers+text", name="your words",
              text=[w for w, _ in found], textposition="top center", hovertemplate="%{text}<extra></extra>",
              marker={"size": 6 if dims == 3 else 10, "color": "#4f46e5"}),
    ])
    titles = {f"{axis}axis": {"title": f"principal direction {i}"} for i, axis in enumerate("xyz"[:dims], 1)}
    fig.update_layout(title=f"Token embeddings on their top {dims} principal directions", height=560,
                      margin={"l": 50, "r": 10, "t": 50, "b": 30}, legend={"orientation": "h", "y": -0.15},
                      plot_bgcolor="white", **({"scene": titles} if dims == 3 else titles))
    return fig


ROTARY_NOTE = ("**This model's positions are rotary**: no position vector is added to the tokens; attention turns "
               "each query and key by angles that grow with its position. The heatmap below compares those "
               "rotations instead: the same for the same offset, wherever it is.")


def positions_figure(similarity, positions: list[int], kind: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=similarity.numpy().round(3), x=positions, y=positions, colorscale="RdBu",
                               zmid=0, hovertemplate="positions %{y} and %{x}: cosine %{z:.2f}<extra></extra>"))
    if kind == "rotary":
        title = "No position vectors (rotary): cosine similarity of the positions' rotations"
    else:
        pattern = "a band: near positions look alike" if kind == "learned" else "stripes: each offset is one rotation"
        title = f"Cosine similarity of the {kind} position vectors ({pattern})"
    fig.update_layout(title=title, height=520,
                      xaxis={"title": "position", "constrain": "domain"},
                      yaxis={"title": "position", "autorange": "reversed", "scaleanchor": "x"},
                      margin={"l": 50, "r": 10, "t": 50, "b": 40})
    return fig


def embeddings(registry: ModelRegistry, model_name: str, words: str, dims: str | int, leading_space: bool
               ) -> tuple[go.Figure, pd.DataFrame, go.Figure, str]:
    """The scatter, each word's nearest tokens, the position heatmap, and notices."""
    if isinstance(dims, bool) or str(dims) not in ("2", "3"):  # the API's choices are text ("2", "3"): both do
        raise ValueError(f"Dimensions must be 2 or 3, got {dims!r}.")
    dims = int(str(dims))
    ckpt = registry.load(model_name)
    tokenizer, model = ckpt.tokenizer, ckpt.model
    found, notice = word_tokens(tokenizer, words, leading_space)
    typed = {i for _, i in found}
    sample = [i for i in vocabulary_sample(tokenizer.n_vocab, SAMPLE + len(typed)) if i not in typed][:SAMPLE]
    points = project_tokens(model, sample + [i for _, i in found], int(dims))
    neighbours = nearest_tokens(model, [i for _, i in found], N_NEIGHBOURS, tokenizer.n_vocab)
    rows = [(word, i, ", ".join(f"{id_label(tokenizer, j)} ({cos:.2f})" for j, cos in near))
            for (word, i), near in zip(found, neighbours, strict=True)]
    table = pd.DataFrame(rows, columns=["word", "token id", f"{N_NEIGHBOURS} nearest tokens (cosine similarity)"])
    similarity, positions = position_similarity(model, MAX_POSITIONS)
    info = (f"{len(found)} words among {len(sample):,} of the {tokenizer.n_vocab:,} tokens; "
            f"{model.cfg.emb_dim} dimensions flattened to {int(dims)}.\n\n"
            f"{where(project_tokens, nearest_tokens, position_similarity)}")
    rotary = ROTARY_NOTE if model.cfg.positions == "rotary" else ""
    return (scatter(tokenizer, points, sample, found, int(dims)), table,
            positions_figure(similarity, positions, model.cfg.positions),
            "\n\n".join(filter(None, [notice, info, rotary])))


def build(registry: ModelRegistry, picker: gr.Dropdown, demo: gr.Blocks) -> None:
    """An accordion at the foot of the Tokenizer tab: after the ids, the vectors they stand for."""
    with gr.Accordion("Embeddings: where the model puts each token", open=False, elem_id="emb"):
        gr.Markdown(EXPLAIN)
        with gr.Row():
            words = gr.Textbox(EXAMPLE_WORDS, label=f"Words, separated by commas (up to {MAX_WORDS})", scale=3,
                               lines=2, elem_id="emb-words")
            with gr.Column(scale=1):
                dims = gr.Radio(["2", "3"], value="2", label="Dimensions")
                space = gr.Checkbox(True, label="With a leading space, as inside a sentence")
                button = gr.Button("Show embeddings", variant="primary", elem_id="emb-run")
        info = gr.Markdown(elem_id="emb-info")
        plot = Plot(label="Token embeddings", elem_id="emb-plot")
        table = gr.Dataframe(label="Nearest tokens", interactive=False, wrap=True, column_widths=["12%", "10%", "78%"],
                             elem_id="emb-table")
        positions = Plot(label="Position embeddings", elem_id="emb-positions")
    fn = user_errors(functools.partial(embeddings, registry))
    button.click(fn, [picker, words, dims, space], [plot, table, positions, info], api_name="embeddings")
    demo.load(on_first_open(fn, 4), [picker, words, dims, space], [plot, table, positions, info],
              api_visibility="private")
