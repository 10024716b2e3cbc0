"""Tab 4, Spam: the finetuned classifier's verdict, the tokens it looked at, and its test-set figures."""

from __future__ import annotations

import functools
import html

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from gpt.classify.classifier import TextClassifier, load_classifier
from ui.common import clip_chars, join_notices, require_text, user_errors
from ui.registry import ModelRegistry

CSS = (".attended {line-height: 2}\n"
       ".attended span {padding: 1px 2px; margin: 1px; border-radius: 3px; font-family: monospace; "
       "white-space: pre; color: #111}\n")
FALLBACK_EXAMPLES = {  # used only when the classifier ships without test examples
    "ham": ["Are we still on for dinner tonight? I'll be there at 7."],
    "spam": ["WINNER!! You have been selected for a £1000 prize. Call 09061701461 now to claim."],
}


def classifier(registry: ModelRegistry) -> TextClassifier:
    """The shipped classifier, loaded once; a clear message if it is not there."""
    return registry.cached(("classifier", "spam"), lambda: load_classifier(registry.shipped_path("spam")))


def attention_html(pairs: list[tuple[str, float]]) -> str:
    """Tokens shaded by how much the last token (where the verdict is read) attends to them."""
    top = max((w for _, w in pairs), default=1.0) or 1.0
    spans = []
    for piece, weight in pairs:
        alpha = weight / top
        text = html.escape(piece.replace(" ", "␣").replace("\n", "↵"))
        spans.append(f'<span title="{weight:.3f}" style="background: rgba(220, 38, 38, {alpha:.2f})">{text}</span>')
    return f'<div class="attended">{"".join(spans)}</div>'


def classify(registry: ModelRegistry, message: str) -> tuple[dict[str, float], str, str]:
    """Label probabilities, the attention shading, and any notice (a long message keeps its start)."""
    message, cut = clip_chars(require_text(message, "message"))
    model = classifier(registry)
    n_tokens, context = len(model.tokenizer.encode(message)), model.model.cfg.context_length
    too_long = (f"The message has {n_tokens:,} tokens; the classifier reads the first {context:,}."
                if n_tokens > context else "")
    prediction = model.predict(message)
    return prediction.probs, attention_html(model.token_attention(message)), join_notices(cut, too_long)


def confusion_figure(confusion: list[list[int]], labels: list[str]) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=confusion, x=list(range(len(labels))), y=list(range(len(labels))),
                               colorscale="Blues", text=confusion, texttemplate="%{text}", showscale=False))
    ticks = {"tickmode": "array", "tickvals": list(range(len(labels))), "ticktext": labels}
    fig.update_xaxes(title="predicted", **ticks)
    fig.update_yaxes(title="true", autorange="reversed", **ticks)
    fig.update_layout(title="Confusion matrix (test split)", height=320, width=380,
                      margin={"l": 60, "r": 10, "t": 50, "b": 50})
    return fig


def test_figures(registry: ModelRegistry) -> tuple[str, pd.DataFrame, go.Figure | None]:
    """Accuracy line, per-class table and confusion matrix of the classifier's held-out test split.

    Runs when the tab opens, so a missing classifier is reported in the tab, not as an error pop-up.
    """
    try:
        metrics = classifier(registry).test_metrics
    except (ValueError, FileNotFoundError) as err:  # not shipped yet, or made for another base model
        return f"⚠️ The spam classifier is not available: {err}", pd.DataFrame(), None
    if metrics is None:
        return "This classifier was saved without test figures.", pd.DataFrame(), None
    summary = (f"**Test accuracy {metrics.accuracy:.1%}** on {metrics.n_test} held-out messages "
               f"({metrics.data_source}).")
    table = metrics.per_class_frame().round(3).reset_index(names="class")
    return summary, table, confusion_figure(metrics.confusion, metrics.labels)


def examples(registry: ModelRegistry) -> list[str]:
    """A few messages of each class: the classifier's own test examples when it has them."""
    try:
        metrics = classifier(registry).test_metrics
    except (ValueError, FileNotFoundError):
        metrics = None
    by_label = metrics.examples if metrics is not None and metrics.examples else FALLBACK_EXAMPLES
    return [text for texts in by_label.values() for text in texts[:3]]


def build(registry: ModelRegistry, tab: gr.Tab) -> None:
    gr.Markdown("The base model with its output head swapped for a two-class head (the book's chapter 6). "
                "The verdict is read at the last token, the only one that has seen the whole message.")
    try:
        classifier(registry)
        missing = ""
    except (ValueError, FileNotFoundError) as err:
        missing = f"⚠️ The spam classifier is not available: {err}"
    gr.Markdown(missing, visible=bool(missing), elem_id="spam-missing")
    with gr.Row():
        with gr.Column(scale=3):
            message = gr.Textbox(lines=3, label="Message", elem_id="spam-text",
                                 placeholder="Type an SMS, or pick an example below")
            button = gr.Button("Classify", variant="primary", elem_id="spam-run")
            gr.Examples(examples(registry), message, label="Examples: ham and spam from the test split")
        with gr.Column(scale=2):
            label = gr.Label(label="Verdict", elem_id="spam-label")
    notice = gr.Markdown()
    gr.Markdown("**What the verdict looked at**: the last token's attention in the last layer, mean over heads "
                "(darker = more)")
    attended = gr.HTML(elem_id="spam-attn")
    gr.Markdown("### How good is it?")
    with gr.Row():
        with gr.Column():
            summary = gr.Markdown(elem_id="spam-summary")
            table = gr.Dataframe(interactive=False, label="Per class")
        confusion = gr.Plot(label="Confusion matrix", elem_id="spam-confusion")

    fn = user_errors(functools.partial(classify, registry))
    button.click(fn, message, [label, attended, notice], api_name="classify")
    message.submit(fn, message, [label, attended, notice], api_visibility="private")
    figures = user_errors(functools.partial(test_figures, registry))
    tab.select(figures, None, [summary, table, confusion], api_name="spam_test_figures")
