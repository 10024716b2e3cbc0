"""Preference tuning, in the Chat tab: one prompt, a chosen and a rejected answer, and how likely each is
to the chat model before DPO and after it."""

from __future__ import annotations

import functools

import gradio as gr
import pandas as pd

from gpt.preference.data import SHIPPED_PAIRS, Pair, load_pairs, split_pairs
from gpt.preference.dpo import pair_logprobs
from ui.common import clip_chars, require_text, user_errors
from ui.inside import load_two
from ui.registry import SHIPPED_CHAT, SHIPPED_CHAT_DPO, ModelRegistry

MAX_EXAMPLES = 12
REWARD = "reward β×(after − before)"
MAX_ANSWER_CHARS = 2_000
EXPLAIN = ("**Preference tuning (DPO).** The book's last finetuning stage: a pair of answers to one prompt, one "
           "chosen and one rejected, and a loss that raises the chosen answer's log-probability against a frozen "
           "copy of the starting model (the *reference*) and lowers the rejected one's. Below, both answers "
           "are scored by the model before tuning and after it: the log-probability (sum over the answer's "
           "tokens) says how likely the model finds each answer; the reward is how much it moved, "
           "β × (after − before).")


@functools.cache
def held_out_examples() -> tuple[Pair, ...]:
    """Held-out pairs of every kind (`how`) there is, in turn: none of them was trained on."""
    try:
        test = split_pairs(load_pairs(SHIPPED_PAIRS)).test
    except (OSError, ValueError):
        return ()
    by_how: dict[str, list[Pair]] = {}
    for pair in test:
        by_how.setdefault(pair["how"], []).append(pair)
    mixed = [p for group in zip(*by_how.values(), strict=False) for p in group]
    return tuple(mixed[:MAX_EXAMPLES])


def example_label(i: int, pair: Pair) -> str:
    return f"{i + 1}. {pair['instruction'][:60]} ({pair['how']})"


def pick_example(label: str) -> tuple[str, str, str, str]:
    for i, pair in enumerate(held_out_examples()):
        if example_label(i, pair) == label:
            return pair["instruction"], pair["input"], pair["chosen"], pair["rejected"]
    raise ValueError(f"unknown example {label!r}")


def dpo_beta(meta: dict) -> float:
    """The beta the tuned model was trained with (its metadata), else DPO's usual 0.1."""
    recorded = meta.get("preference", {}) if isinstance(meta.get("preference"), dict) else {}
    beta = recorded.get("beta", 0.1)
    return float(beta) if isinstance(beta, int | float) and beta > 0 else 0.1


def score_pair(registry: ModelRegistry, before: str, after: str, instruction: str, extra: str, chosen: str,
               rejected: str) -> tuple[pd.DataFrame, str]:
    """Both answers' log-probabilities under both models, and what the tuned model now prefers."""
    instruction, _ = clip_chars(require_text(instruction, "instruction"), MAX_ANSWER_CHARS)
    chosen, _ = clip_chars(require_text(chosen, "chosen answer"), MAX_ANSWER_CHARS)
    rejected, _ = clip_chars(require_text(rejected, "rejected answer"), MAX_ANSWER_CHARS)
    extra, _ = clip_chars(extra or "", MAX_ANSWER_CHARS)
    entry = {"instruction": instruction, "input": extra}
    scores = {name: pair_logprobs(ckpt.model, ckpt.tokenizer, entry, chosen, rejected)
              for name, ckpt in zip((before, after), load_two(registry, before, after), strict=True)}
    beta = dpo_beta(registry.load(after).meta)
    rows = []
    for kind, text in (("chosen", chosen), ("rejected", rejected)):
        old, new = scores[before][kind], scores[after][kind]
        rows.append({"answer": kind, "text": text if len(text) <= 60 else text[:57] + "...",
                     "tokens": scores[after][f"{kind}_tokens"], "log-prob before": round(old, 2),
                     "log-prob after": round(new, 2), REWARD: round(beta * (new - old), 3)})
    margin = rows[0][REWARD] - rows[1][REWARD]
    prefers = {name: "chosen" if s["chosen"] > s["rejected"] else "rejected" for name, s in scores.items()}
    line = (f"Before: **{before}**, after: **{after}**. Reward margin (chosen − rejected): **{margin:+.3f}** "
            f"(β = {beta:g}; positive: tuning moved the model towards the chosen answer). The more likely answer: "
            f"**{prefers[before]}** before, **{prefers[after]}** after.")
    return pd.DataFrame(rows), line


def build(registry: ModelRegistry) -> None:
    examples = held_out_examples()
    labels = [example_label(i, p) for i, p in enumerate(examples)]
    first = examples[0] if examples else {"instruction": "", "input": "", "chosen": "", "rejected": ""}
    names = registry.chat_names()
    with gr.Accordion("Preference tuning (DPO): a chosen and a rejected answer, before and after", open=False,
                      elem_id="dpo"):
        gr.Markdown(EXPLAIN)
        with gr.Row():
            before = gr.Dropdown(names, value=SHIPPED_CHAT if SHIPPED_CHAT in names else None,
                                 allow_custom_value=True, label="Before tuning (the reference)",
                                 elem_id="dpo-before")
            after = gr.Dropdown(names, value=next((n for n in (SHIPPED_CHAT_DPO, SHIPPED_CHAT) if n in names), None),
                                allow_custom_value=True, label="After tuning", elem_id="dpo-after")
            example = gr.Dropdown(labels, value=labels[0] if labels else None, label="A held-out pair",
                                  elem_id="dpo-example", scale=2)
        with gr.Row():
            instruction = gr.Textbox(first["instruction"], label="Instruction", elem_id="dpo-instruction")
            extra = gr.Textbox(first["input"], label="Input (optional)", elem_id="dpo-input")
        with gr.Row():
            chosen = gr.Textbox(first["chosen"], label="Chosen answer", lines=2, elem_id="dpo-chosen")
            rejected = gr.Textbox(first["rejected"], label="Rejected answer", lines=2, elem_id="dpo-rejected")
        run = gr.Button("Score both answers with both models", elem_id="dpo-score")
        table = gr.Dataframe(label="Log-probabilities", interactive=False, elem_id="dpo-table")
        line = gr.Markdown(elem_id="dpo-line")
    example.change(user_errors(pick_example), example, [instruction, extra, chosen, rejected],
                   api_visibility="private")
    run.click(user_errors(functools.partial(score_pair, registry)),
              [before, after, instruction, extra, chosen, rejected], [table, line], api_name="preference_pair")
