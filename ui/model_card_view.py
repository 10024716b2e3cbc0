"""How the picked model was made, under the model picker: its card, loss curve, baselines and evaluations."""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go
import plotly.io

from gpt.checkpoint import CheckpointError, read_config
from gpt.instruct.evaluate import format_task_report
from gpt.model_card import ModelHistory, read_history
from gpt.pretrain.state import loss_figure
from ui.common import user_errors
from ui.inside import where
from ui.registry import ModelRegistry

MAX_CARD_CHARS = 20_000
GPT2_NOTE = ("**OpenAI's GPT-2** (Radford et al., 2019, *Language Models are Unsupervised Multitask Learners*): "
             "trained by OpenAI on WebText, about 40 GB of text from 8 million web pages linked from Reddit; its "
             "weights are loaded from the Hugging Face Hub and mapped onto `gpt/model.py` by `gpt/pretrained.py`. "
             "The app has no card, log or evaluation of its own for it.")


def curve(history: ModelHistory, name: str) -> go.Figure | None:
    """The training loss: from log.csv, else the saved loss.json, else a finetune's losses per epoch."""
    train, val = history.meta.get("train_losses"), history.meta.get("val_losses")
    if history.log:
        fig = loss_figure(history.log, title=f"How {name} learned (log.csv)")
    elif history.loss_figure_json:
        fig = plotly.io.from_json(history.loss_figure_json)
    elif isinstance(train, list) and train:
        epochs = list(range(1, len(train) + 1))
        fig = go.Figure([go.Scatter(x=epochs, y=train, name="train", mode="lines+markers")]
                        + ([go.Scatter(x=epochs, y=val, name="validation", mode="lines+markers")]
                           if isinstance(val, list) and len(val) == len(train) else []))
        fig.update_layout(title=f"How {name} was finetuned (loss per epoch)", xaxis={"title": "epoch", "dtick": 1},
                          yaxis_title="cross-entropy loss (nats)", template="plotly_white")
    else:
        return None
    fig.update_layout(height=380, legend={"orientation": "h", "y": -0.25}, margin={"l": 50, "r": 10, "t": 50, "b": 40})
    return fig


def baselines(metrics: dict) -> str:
    """The held-out bits per byte beside what the model must beat (metrics.json)."""
    model = metrics.get("held_out_bits_per_byte")
    others = metrics.get("baselines") or {}
    if model is None:
        return ""
    rows = [f"| **this model** | **{model:.3f}** | |"]
    rows += [f"| {name} | {bpb:.3f} | {'✓ beaten' if model < bpb else '✗ not beaten'} |"
             for name, bpb in sorted(others.items(), key=lambda kv: kv[1])]
    return ("### What it beats\nBits per byte on held-out text it never trained on (lower is better):\n\n"
            "| | bits per byte | |\n|---|---|---|\n" + "\n".join(rows))


def evaluations(history: ModelHistory) -> str:
    """A chat model's held-out scores (eval.json), or a classifier's test accuracy per test set."""
    parts = []
    if history.evaluation and "tasks" in history.evaluation:
        parts.append(f"### Held-out evaluation ({history.evaluation['n']:,} questions it was not trained on)\n\n"
                     + format_task_report(history.evaluation))
    if history.test_metrics:
        rows = [f"| {name} | {m.n_test:,} | {m.accuracy:.1%} |" for name, m in history.test_metrics.items()]
        parts.append("### Test accuracy\n\n| test set | messages | accuracy |\n|---|---|---|\n" + "\n".join(rows))
    return "\n\n".join(parts)


def architecture_line(folder: Path) -> str:
    """The switches in which the model's config.json differs from GPT-2 (a card written by hand may not say them);
    '' for GPT-2's architecture or an unreadable config."""
    try:
        switches = read_config(folder)["model"].architecture()
    except CheckpointError:
        return ""
    return f"**Architecture**: {switches} (otherwise GPT-2's)" if switches else ""


def model_card(registry: ModelRegistry, model_name: str) -> tuple[str, go.Figure | None, str]:
    """The card (markdown), the loss curve, and the architecture, baselines and evaluations; a GPT-2 size has a
    note instead."""
    entry = registry.resolve(model_name)
    if entry.path is None:
        return GPT2_NOTE, None, ""
    history = read_history(entry.path, entry.path.parent if entry.kind == "run" else None)
    loss = curve(history, entry.name)
    figures = "\n\n".join(filter(None, [baselines(history.metrics or {}), evaluations(history)]))
    card = history.card or (f"**{entry.name}** has no MODEL_CARD.md in its folder"
                            + ("; below is what the folder does record." if loss or figures else
                               ", and no training log or evaluation either."))
    if len(card) > MAX_CARD_CHARS:
        card = card[:MAX_CARD_CHARS] + "\n\n*(the card goes on: the rest is in its MODEL_CARD.md)*"
    code = where(read_history, *([loss_figure] if history.log else []))
    return card, loss, "\n\n".join(filter(None, [architecture_line(entry.path), figures, code]))


def build(registry: ModelRegistry, picker: gr.Dropdown) -> None:
    """An accordion under the picker that follows the picked model (call it right after `ui.picker.build`)."""
    title = "How this model was made: its card, loss curve and evaluations"
    with gr.Accordion(title, open=False, elem_id="model-card") as accordion:
        with gr.Row():
            card = gr.Markdown(elem_id="model-card-text", max_height=440)
            loss = gr.Plot(label="Loss curve", elem_id="model-card-loss")
        figures = gr.Markdown(elem_id="model-card-figures")
    fn = user_errors(functools.partial(model_card, registry))
    accordion.expand(fn, picker, [card, loss, figures], api_name="model_card")
    picker.change(fn, picker, [card, loss, figures], api_visibility="private")
