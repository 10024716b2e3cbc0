"""The "Start here" tab: the book's path through the app, one short step at a time, for a lesson or a student alone.

Each step says what the idea is, names the book's chapter, carries a small live piece where one is cheap (the
same functions the full tab calls, on the picked model), something to try, what to notice, and a button that
opens the full tab.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from gpt.data.windows import SlidingWindowDataset
from ui import attention_tab, generate_tab, spam_tab
from ui.common import clip_chars, require_text, user_errors
from ui.figures import Plot
from ui.labels import id_label, tokens_html
from ui.registry import ModelRegistry

TOUR_TEXT = "The cat sat on the mat because the cat was tired."
TOUR_PROMPT = generate_tab.EXAMPLE_PROMPT
TOUR_MESSAGE = "WINNER! You have won a free prize. Text CLAIM to 80086 now!"
WINDOW = 6  # tokens per window in the sliding-window step: short enough to read the shift by one
MAX_WINDOWS = 4


@dataclass(frozen=True)
class Step:
    key: str  # elem_id suffix of the step's accordion (tour-step-KEY) and button (tour-open-KEY)
    title: str
    chapter: str  # where the book covers it
    tab: str  # the id of the full tab (app.py's gr.Tab ids)
    where: str  # where in that tab, in words
    idea: str
    try_: str
    notice: str


STEPS = (
    Step("tokens", "1. Text becomes tokens and ids", "Chapter 2, Working with text data", "tokenizer",
         "the Tokenizer tab",
         "A model reads numbers, not letters. A tokenizer cuts text into pieces from a fixed vocabulary (byte pair "
         "encoding: frequent pairs of bytes merged, again and again) and each piece has an id.",
         "Type your name, a long word, a number like 2026 or an emoji in the box and press Enter.",
         "Common words are one token, often with their leading space; rare words break into several pieces. The "
         "ids under each piece are all the model ever sees."),
    Step("window", "2. The sliding window: inputs and targets", "Chapter 2, Working with text data", "train",
         "the Train tab, under 1. Data",
         "Training data is the same text twice: the input, and the target shifted by one token. Every position "
         "is one lesson, 'after these tokens comes this one'. A window slides along the text to cut it into "
         "pieces as long as the model's context.",
         "Change the text of step 1 and press Enter: the windows follow.",
         "Each target row is its input row moved one step left: the model learns to predict the next token at "
         "every position at once."),
    Step("embeddings", "3. Embeddings and positions", "Chapter 2, Working with text data", "tokenizer",
         "the Tokenizer tab, in the 'Embeddings' section at its foot",
         "Each id picks one row of a table of vectors, the token embedding. A second table adds where the token "
         "stands (its position). Training moves tokens used alike close together.",
         "In the full tab, type words such as king, queen, Paris, London and press 'Show embeddings'.",
         "Related words land near each other; the position heatmap shows near positions looking alike."),
    Step("attention", "4. Attention: one head, then all", "Chapter 3, Coding attention mechanisms", "attention",
         "the Attention tab",
         "Attention lets each token take information from the tokens before it. A head scores every earlier "
         "token, the scores become weights that sum to 1, and the token's new vector is the weighted mix. A "
         "model has several heads in every layer, each free to look for something else.",
         "Read one row of the heatmap (in the example sentence, the row of 'was'): which earlier tokens does it "
         "look at? Type your own sentence in step 1, then open the full tab and choose 'all heads'.",
         "The grey upper triangle is the causal mask: no token may look ahead. Many heads look mostly at the "
         "first token or at the one just before."),
    Step("parts", "5. The model's parts and its parameter count", "Chapter 4, Implementing a GPT model", "train",
         "the Train tab, under 2. Recipe and budget",
         "A GPT is a token embedding, a position embedding, a stack of identical transformer blocks (attention "
         "and a feed-forward network, each with a normalisation and a shortcut) and an output head that turns the "
         "last vector into a score for every token of the vocabulary.",
         "Pick another model at the top of the page (gpt2-small where the machine is online, or later the run "
         "you train in step 6) and see how the counts change.",
         "Most of the numbers sit in the blocks and in the embedding table; a recipe in the Train tab shows its "
         "count before it trains."),
    Step("pretrain", "6. Pretraining a tiny model, live", "Chapter 5, Pretraining on unlabeled data", "train",
         "the Train tab",
         "Pretraining shows the model window after window and nudges every parameter to make the true next token "
         "more likely (cross-entropy loss, AdamW). The loss falls, and the samples go from noise to words.",
         "In the Train tab, keep the default data and recipe (classroom-modern, about a million parameters, 3 "
         "minutes) and press 'Start training'. Stop, resume, then pick the run at the top of the page.",
         "The training and validation losses fall together at first; the samples turn into words long before "
         "they make sense. The picker then offers your run beside the shipped ones."),
    Step("sampling", "7. Temperature, top-k and top-p", "Chapter 5, Pretraining on unlabeled data (decoding)",
         "generate", "the Generate tab",
         "The model gives a probability to every token. Generation draws one, appends it and repeats. Temperature "
         "sharpens or flattens the distribution; top-k keeps only the k likeliest tokens, top-p the smallest set "
         "whose probability adds up to p (top-p is an addition here; the book covers temperature and top-k).",
         "Move the temperature slider from 0.1 to 1, then to 3, and watch the purple bars.",
         "At a low temperature one token takes nearly all the probability; at a high one the bars level out and "
         "unlikely tokens get their chance."),
    Step("pretrained", "8. Loading GPT-2 and today's open models", "Chapter 5, Pretraining on unlabeled data "
         "(loading pretrained weights)", "generate", "the model picker at the top, then the Generate tab",
         "The same code runs OpenAI's GPT-2 once its weights are copied into our classes, and today's open "
         "models (Qwen3, SmolLM2) with their switches on: RMSNorm, rotary positions, SwiGLU, grouped-query "
         "attention.",
         "Pick gpt2-small at the top of the page (it is downloaded once, which needs internet) and generate from "
         "the same prompt as the shipped base model.",
         "A model trained on far more text continues far better. If a model is not on disk and the server is "
         "offline, the summary under the picker says so."),
    Step("classify", "9. Classification finetuning: spam or not", "Chapter 6, Finetuning for classification",
         "spam", "the Spam tab",
         "A pretrained model already reads text. Swap its output head for one with two outputs (ham, spam), train "
         "it on labelled messages, and read the verdict at the last token, the one that has seen the whole "
         "message.",
         "Change the message above into an ordinary one ('See you at lunch?') and press Enter.",
         "The shaded tokens are those the last position attended to; the full tab shows the test accuracy and "
         "the confusion matrix, and finetunes your own classifier."),
    Step("instruct", "10. Instruction finetuning: a chat model", "Chapter 7, Finetuning to follow instructions",
         "chat", "the Chat tab",
         "Instruction finetuning trains on pairs of instruction and answer, written into a fixed prompt format. "
         "The model learns the format: after the answer heading comes an answer.",
         "In the Chat tab, ask the shipped instruct model for a sum such as 'What is 23 + 19?', then open 'The "
         "exact prompt sent to the model'.",
         "The model reads one long text: the format around your question. A base model picked in Generate does "
         "not know the format and wanders."),
    Step("dpo", "11. Preference tuning (DPO)", "Chapter 7's bonus material, direct preference optimization", "chat",
         "the Chat tab, 'Preference tuning (DPO)'",
         "Direct preference optimization shows the model two answers to one prompt, one preferred, and moves it "
         "to make the preferred answer likelier than the other, measured against a frozen copy of itself.",
         "Open 'Preference tuning (DPO)' in the Chat tab and compare an answer before and after.",
         "DPO changes the model a little, in the direction of the pairs; it needs no separate reward model."),
    Step("int8", "12. int8: a smaller model", "Beyond the book (builds on chapter 4's model)", "generate",
         "the Generate tab, 'Precision: float32, bfloat16 or int8'",
         "Each weight is a 32-bit float. Stored as 8-bit integers with one scale per row, the model takes about a "
         "quarter of the memory and predicts nearly the same.",
         "Open 'Precision' in the Generate tab and run the three precisions side by side.",
         "The top tokens and their probabilities barely move, while the memory shrinks."),
    Step("inside", "13. Looking inside: the logit lens and surprisal", "Beyond the book (builds on chapters 4 and "
         "5)", "attention", "the Attention tab, 'Logit lens' and 'Surprisal'",
         "The logit lens reads every layer's output through the final head, as if the model stopped there: "
         "you see the prediction form layer by layer. Surprisal is how unexpected each token was to the model, "
         "in bits: the loss, token by token.",
         "Open 'Logit lens' under the attention heatmap and press 'Read every layer'.",
         "Early layers guess common tokens; the final answer often appears only in the last layers. Surprising "
         "tokens are the ones the model learns most from."),
)


def on_disk(piece: Callable[..., tuple[Any, str]]) -> Callable[..., tuple[Any, str]]:
    """A live piece (a figure or table, and a line) left empty, with a short line, for a model not on this machine
    (GPT-2 offline, say): the summary beside the picker says why and what to do, and an error pop-up from each
    piece would repeat it three times."""
    @functools.wraps(piece)
    def shown(registry: ModelRegistry, model_name: str, *args: Any) -> tuple[Any, str]:
        try:
            return piece(registry, model_name, *args)
        except FileNotFoundError:
            return None, f"*{model_name} is not on this machine: the line beside the picker says why.*"
    return shown


def tour_tokens(registry: ModelRegistry, model_name: str, text: str) -> tuple[str, str]:
    """The text as the picked model's tokens (as the Tokenizer tab draws them), and a count."""
    text, cut = clip_chars(require_text(text), 2_000)
    pieces = registry.tokenizer(model_name).pieces(text)
    line = f"{len(text):,} characters → **{len(pieces):,} tokens** in {model_name}'s tokenizer."
    return tokens_html(pieces), "  \n".join(filter(None, [line, cut]))


def tour_windows(registry: ModelRegistry, model_name: str, text: str) -> pd.DataFrame:
    """The first windows of `WINDOW` tokens, each beside its target (the book's sliding window, stride = window)."""
    text, _ = clip_chars(require_text(text), 2_000)
    tokenizer = registry.tokenizer(model_name)
    ids = tokenizer.encode(text)
    if len(ids) <= WINDOW:
        raise ValueError(f"The text has {len(ids)} tokens: type more than {WINDOW} for one window.")
    windows = SlidingWindowDataset(ids, WINDOW, WINDOW)
    rows = []
    for i in range(min(MAX_WINDOWS, len(windows))):
        x, y = windows[i]
        rows.append((i + 1, " | ".join(id_label(tokenizer, t) for t in x.tolist()),
                     " | ".join(id_label(tokenizer, t) for t in y.tolist())))
    return pd.DataFrame(rows, columns=["window", "input", "target (the input shifted by one)"])


@on_disk
def tour_parts(registry: ModelRegistry, model_name: str) -> tuple[pd.DataFrame, str]:
    """The picked model's parameters by part (every block's attention, feed-forward and norms added up)."""
    model = registry.load(model_name).model
    counts: Counter[str] = Counter()
    for name, p in model.named_parameters():
        parts = name.split(".")
        counts[f"blocks × {model.cfg.n_layers}: {parts[2]}" if parts[0] == "trf_blocks" else parts[0]] += p.numel()
    total = model.n_params()
    table = pd.DataFrame([(part, f"{n:,}", f"{n / total:.1%}") for part, n in counts.items()],
                         columns=["part", "parameters", "share"])
    tied = " The output head shares the token embedding's table (tied weights)." if model.cfg.tie_weights else ""
    return table, f"**{model_name}: {total:,} parameters** in {model.cfg.n_layers} blocks.{tied}"


@on_disk
def tour_sampling(registry: ModelRegistry, model_name: str, temperature: float):
    """The Generate tab's next-token charts on the tour's fixed prompt, top-k and top-p off."""
    bars, _, notice = generate_tab.next_token_charts(registry, model_name, TOUR_PROMPT, temperature, 0, 1.0)
    return bars, notice


@on_disk
def tour_attention(registry: ModelRegistry, model_name: str, text: str):
    """The Attention tab's one-head heatmap (layer 1, head 1)."""
    return attention_tab.attention(registry, model_name, text, 1, "one head", 1)


def _open_button(step: Step, tabs: gr.Tabs) -> None:
    button = gr.Button(f"Open {step.where} →", size="sm", elem_id=f"tour-open-{step.key}", elem_classes="tour-open")
    button.click(lambda: gr.Tabs(selected=step.tab), None, tabs, api_visibility="private", queue=False)


def _step_end(step: Step, tabs: gr.Tabs) -> None:
    gr.Markdown(f"**Try:** {step.try_}  \n**Notice:** {step.notice}")
    _open_button(step, tabs)


def build(registry: ModelRegistry, picker: gr.Dropdown, tabs: gr.Tabs, demo: gr.Blocks) -> None:
    gr.Markdown("## Start here: the book's path in thirteen steps\n"
                "Each step is a few sentences, a small live piece on the model picked at the top, something to try, "
                "what to notice, and a button to the full tab. Open them in order for a lesson; each takes a few "
                "minutes. The chapters are those of *Build a Large Language Model (From Scratch)*.")
    live = {}
    for step in STEPS:
        with gr.Accordion(step.title, open=step.key == "tokens", elem_id=f"tour-step-{step.key}",
                          elem_classes="tour-step"):
            gr.Markdown(f"*{step.chapter}* · {step.idea}")
            if step.key == "tokens":
                live["text"] = gr.Textbox(TOUR_TEXT, label="Text (type your own, then press Enter)", max_lines=4,
                                          elem_id="tour-text")  # one line: Enter submits, as the try says
                live["tokens"] = gr.HTML(elem_id="tour-tokens", elem_classes="scroll-x")
                live["count"] = gr.Markdown()
            elif step.key == "window":
                live["windows"] = gr.Dataframe(label=f"Windows of {WINDOW} tokens (from the text of step 1)",
                                               interactive=False, wrap=True, elem_id="tour-windows")
            elif step.key == "attention":
                live["att_info"] = gr.Markdown()
                live["attention"] = Plot(label="Layer 1, head 1", elem_id="tour-attention")
            elif step.key == "parts":
                live["parts_line"] = gr.Markdown()
                live["parts"] = gr.Dataframe(interactive=False, elem_id="tour-parts")
            elif step.key == "sampling":
                gr.Markdown(f"Prompt: *{TOUR_PROMPT}*")
                live["temperature"] = gr.Slider(0.1, 3, value=1, step=0.1, label="Temperature",
                                                elem_id="tour-temperature")
                live["sampling_notice"] = gr.Markdown()
                live["bars"] = Plot(label="Next-token probabilities", elem_id="tour-bars")
            elif step.key == "classify":
                live["message"] = gr.Textbox(TOUR_MESSAGE, label="Message (press Enter to classify)",
                                             elem_id="tour-message")
                live["verdict"] = gr.Label(label="Verdict", elem_id="tour-verdict")
                live["attended"] = gr.HTML(elem_id="tour-attended", elem_classes="scroll-x")
                live["spam_notice"] = gr.Markdown()
            _step_end(step, tabs)

    text, model = live["text"], picker
    tokens = user_errors(functools.partial(tour_tokens, registry))
    windows = user_errors(functools.partial(tour_windows, registry))
    attention = user_errors(functools.partial(tour_attention, registry))
    parts = user_errors(functools.partial(tour_parts, registry))
    sampling = user_errors(functools.partial(tour_sampling, registry))
    classify = user_errors(functools.partial(spam_tab.classify, registry))
    text_events = [(tokens, [live["tokens"], live["count"]]), (windows, [live["windows"]]),
                   (attention, [live["attention"], live["att_info"]])]
    for fn, outputs in text_events:
        gr.on([demo.load, text.submit, model.change], fn, [model, text], outputs, api_visibility="private")
    gr.on([demo.load, model.change], parts, model, [live["parts"], live["parts_line"]], api_visibility="private")
    gr.on([demo.load, live["temperature"].release, model.change], sampling, [model, live["temperature"]],
          [live["bars"], live["sampling_notice"]], api_visibility="private")
    gr.on([demo.load, live["message"].submit], classify, live["message"],
          [live["verdict"], live["attended"], live["spam_notice"]], api_visibility="private")
