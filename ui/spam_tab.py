"""Tab 4, Spam: the finetuned classifier's verdict, the tokens it looked at, and its figures on each test set."""

from __future__ import annotations

import functools
import html

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gpt.classify.classifier import ClassifierMetrics, TextClassifier, load_classifier
from gpt.classify.data import MODERN_TEST, SET_TITLES, SMS_TEST
from ui.common import clip_chars, join_notices, require_text, user_errors
from ui.jobs import JobRunner
from ui.registry import ModelRegistry

CSS = (".attended {line-height: 2}\n"
       ".attended span {padding: 1px 2px; margin: 1px; border-radius: 3px; font-family: monospace; "
       "white-space: pre; color: #111}\n")
FALLBACK_EXAMPLES = {  # used only when the classifier ships without test examples
    "ham": ["Are we still on for dinner tonight? I'll be there at 7."],
    "spam": ["WINNER!! You have been selected for a £1000 prize. Call 09061701461 now to claim."],
}
# The examples come from these test sets, today's messages first; SpamAssassin's mails are too long to show.
EXAMPLE_SETS = (MODERN_TEST, SMS_TEST)
EXAMPLES_PER_CLASS = 3


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


def confusion_figure(evaluations: dict[str, ClassifierMetrics]) -> go.Figure:
    """One confusion matrix per test set, side by side."""
    titles = [SET_TITLES.get(name, name) for name in evaluations]
    fig = make_subplots(rows=1, cols=len(evaluations), subplot_titles=titles, horizontal_spacing=0.12)
    for col, metrics in enumerate(evaluations.values(), 1):
        ticks = {"tickmode": "array", "tickvals": list(range(len(metrics.labels))), "ticktext": metrics.labels}
        fig.add_trace(go.Heatmap(z=metrics.confusion, x=list(range(len(metrics.labels))),
                                 y=list(range(len(metrics.labels))), colorscale="Blues", text=metrics.confusion,
                                 texttemplate="%{text}", showscale=False), row=1, col=col)
        fig.update_xaxes(title="predicted", row=1, col=col, **ticks)
        fig.update_yaxes(title="true" if col == 1 else None, autorange="reversed", row=1, col=col, **ticks)
    fig.update_layout(title="Confusion matrices (test sets)", height=340, width=60 + 320 * len(evaluations),
                      margin={"l": 60, "r": 10, "t": 80, "b": 50})
    return fig


def test_figures(registry: ModelRegistry) -> tuple[str, pd.DataFrame, go.Figure | None]:
    """Accuracy per test set, the per-class table and the confusion matrices, on messages never trained on.

    Runs when the tab opens, so a missing classifier is reported in the tab, not as an error pop-up.
    """
    try:
        evaluations = classifier(registry).test_metrics
    except (ValueError, FileNotFoundError) as err:  # not shipped yet, or made for another base model
        return f"⚠️ The spam classifier is not available: {err}", pd.DataFrame(), None
    if not evaluations:
        return "This classifier was saved without test figures.", pd.DataFrame(), None
    lines = [f"- {SET_TITLES.get(name, name)}: **{m.accuracy:.1%}** on {m.n_test} held-out messages ({m.data_source})"
             for name, m in evaluations.items()]
    summary = "**Test accuracy**, on messages it never trained on:\n\n" + "\n".join(lines)
    table = pd.concat([m.per_class_frame().round(3).reset_index(names="class")
                       .assign(set=SET_TITLES.get(name, name)) for name, m in evaluations.items()], ignore_index=True)
    return summary, table[["set", "class", "precision", "recall", "f1", "support"]], confusion_figure(evaluations)


def labelled_examples(registry: ModelRegistry) -> list[tuple[str, str]]:
    """(message, its true label): a few of each class from the classifier's own test sets when it has them."""
    try:
        evaluations = classifier(registry).test_metrics
    except (ValueError, FileNotFoundError):
        evaluations = {}
    sets = [evaluations[name].examples for name in EXAMPLE_SETS if name in evaluations and evaluations[name].examples]
    return [(text, label) for by_label in sets or [FALLBACK_EXAMPLES] for label, texts in by_label.items()
            for text in texts[:EXAMPLES_PER_CLASS]]


def examples(registry: ModelRegistry) -> list[str]:
    return [text for text, _ in labelled_examples(registry)]


def build(registry: ModelRegistry, runner: JobRunner, tab: gr.Tab) -> None:
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
                                 placeholder="Type a message, or pick an example below")
            button = gr.Button("Classify", variant="primary", elem_id="spam-run")
            gr.Examples(examples(registry), message,
                        label="Examples: held-out ham and spam it labels right (its mistakes count in the figures)")
        with gr.Column(scale=2):
            label = gr.Label(label="Verdict", elem_id="spam-label")
    notice = gr.Markdown()
    gr.Markdown("**What the verdict looked at**: the last token's attention in the last layer, mean over heads "
                "(darker = more)")
    attended = gr.HTML(elem_id="spam-attn")
    gr.Markdown("### How good is it?")
    summary = gr.Markdown(elem_id="spam-summary")
    table = gr.Dataframe(interactive=False, label="Per test set and class")
    confusion = gr.Plot(label="Confusion matrices", elem_id="spam-confusion")

    fn = user_errors(functools.partial(classify, registry))
    button.click(fn, message, [label, attended, notice], api_name="classify")
    message.submit(fn, message, [label, attended, notice], api_visibility="private")
    figures = user_errors(functools.partial(test_figures, registry))
    tab.select(figures, None, [summary, table, confusion], api_name="spam_test_figures")
