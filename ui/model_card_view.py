"""How the picked model was made, under the model picker: its card, loss curve, baselines and evaluations; for an
open model of the Hub, its README, licence and config.json, read from the Hugging Face cache (no network)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go
import plotly.io

from gpt.checkpoint import CheckpointError, read_config
from gpt.instruct.evaluate import format_task_report
from gpt.model_card import ModelHistory, read_history
from gpt.open_models import CATALOGUE, CONFIG_FILE, FAMILIES, config_from_hub, is_hub_folder
from gpt.pretrain.state import loss_figure
from ui.common import user_errors
from ui.figures import Plot
from ui.inside import where
from ui.registry import ModelEntry, ModelRegistry

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


README = "README.md"  # a Hub repository's model card, with YAML front matter (license, datasets...)
# config.json's fields the card shows, in this order, with what each means.
HUB_FIELDS = {"model_type": "model type", "architectures": "transformers class", "hidden_size": "width",
              "num_hidden_layers": "layers", "num_attention_heads": "query heads",
              "num_key_value_heads": "key/value heads", "head_dim": "head width", "intermediate_size": "MLP width",
              "vocab_size": "vocabulary", "max_position_embeddings": "longest context trained",
              "rope_theta": "rotary base", "rms_norm_eps": "RMSNorm eps", "tie_word_embeddings": "head tied",
              "torch_dtype": "weights stored in"}


def front_matter(readme: str) -> tuple[dict[str, str], str]:
    """A README's front matter's top-level `key: value` lines, and the text after it."""
    if not readme.startswith("---"):
        return {}, readme
    head, _, body = readme[3:].partition("\n---")
    fields = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        if colon and key and not key.startswith((" ", "-")) and value.strip():
            fields[key.strip()] = value.strip().strip("'\"")
    return fields, body.lstrip("-\n")


def open_model_card(entry: ModelEntry) -> tuple[str, None, str]:
    """An open model's README (cut to MAX_CARD_CHARS) and its config.json as a table, from the files on disk; a
    catalogue model not on disk is described from what the catalogue knows."""
    catalogued = CATALOGUE.get(entry.name)
    if entry.path is None:
        return (f"**{entry.name}** ({entry.repo_id}) is not on disk yet: its card and config.json come with it. "
                + (f"What the app knows before a download: {catalogued.describe()}." if catalogued else "")), None, ""
    hub = json.loads((entry.path / CONFIG_FILE).read_text(encoding="utf-8"))
    readme = entry.path / README
    fields, body = front_matter(readme.read_text(encoding="utf-8")) if readme.is_file() else ({}, "")
    card = body.strip() or (f"**{entry.name}**: no {README} on disk (the app downloads a model's config, tokenizer "
                            f"and weights; its card is on its Hugging Face page).")
    if len(card) > MAX_CARD_CHARS:
        card = card[:MAX_CARD_CHARS] + f"\n\n*(the card goes on in its {README})*"
    rows = [("repository", entry.repo_id or entry.name), ("family", FAMILIES.get(hub.get("model_type"), "?")),
            ("licence", fields.get("license", f"not stated in its {README}" if readme.is_file() else "unknown"))]
    rows += [(label, ", ".join(map(str, v)) if isinstance(v := hub[key], list) else v)
             for key, label in HUB_FIELDS.items() if key in hub]
    table = "| field | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    switches = config_from_hub(hub, None, entry.name).architecture()
    return card, None, (f"**Architecture in this app's terms**: {switches} (`gpt.open_models.config_from_hub` maps "
                        f"config.json onto `GPTConfig`).\n\n### config.json\n\n{table}\n\n"
                        f"{where(config_from_hub)}")


def model_card(registry: ModelRegistry, model_name: str) -> tuple[str, go.Figure | None, str]:
    """The card (markdown), the loss curve, and the architecture, baselines and evaluations; a GPT-2 size has a
    note instead, an open model its README and config.json."""
    entry = registry.resolve(model_name)
    if entry.kind == "hub" or entry.path is not None and is_hub_folder(entry.path):
        return open_model_card(entry)
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
            loss = Plot(label="Loss curve", elem_id="model-card-loss")
        figures = gr.Markdown(elem_id="model-card-figures")
    fn = user_errors(functools.partial(model_card, registry))
    accordion.expand(fn, picker, [card, loss, figures], api_name="model_card")
    picker.change(fn, picker, [card, loss, figures], api_visibility="private")
