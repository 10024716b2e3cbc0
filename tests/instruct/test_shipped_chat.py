"""The shipped chat models' headline figures, re-measured from their weights: each card's per-family
held-out scores come from `eval.json`, and a few whole families are scored again here."""

from __future__ import annotations

import pytest

from gpt.checkpoint import load_checkpoint
from gpt.files import SHIPPED_MODELS
from gpt.instruct.data import SHIPPED_DATA, load_entries, split_entries
from gpt.instruct.evaluate import conversation_responses, evaluate_instructions, load_model_eval, score

pytestmark = pytest.mark.slow  # re-measures a shipped model's card on its real data

CHAT_MODELS = ["instruct", "chat-dpo"]
# Families cheap enough to generate in full: the times tables, word forms, greetings.
FAMILIES = ["multiplication", "comparative", "small talk"]


@pytest.fixture(scope="module")
def test_split():
    return split_entries(load_entries(SHIPPED_DATA)).test


@pytest.mark.parametrize("name", CHAT_MODELS)
def test_the_card_scores_are_those_of_the_shipped_weights(name, test_split):
    folder = SHIPPED_MODELS / name
    record = load_model_eval(folder)
    assert record is not None, f"{folder}/eval.json was measured on other weights"
    checkpoint = load_checkpoint(folder)
    assert checkpoint.tokenizer.pretokenizer == "digits"  # numbers are read and written digit by digit
    scored = test_split[: record["n"]]  # the card scores the first N test entries
    for family in FAMILIES:
        entries = [e for e in scored if e["task"] == family]
        report = evaluate_instructions(checkpoint, entries, record["max_new_tokens"])
        stored = record["tasks"][family]
        assert stored["n"] == len(entries)
        assert report["score"] == pytest.approx(stored["score"], abs=100 / len(entries) + 0.1), family


@pytest.mark.parametrize("name", CHAT_MODELS)
def test_the_conversation_figure_is_that_of_the_shipped_weights(name, test_split):
    """The first chats of the card's conversation figure asked again: the same questions one after another,
    each after the model's own earlier replies, score as the card says, question by question."""
    record = load_model_eval(SHIPPED_MODELS / name)
    stored = record["conversation"]
    questions = [e for e in test_split[: record["n"]] if not e["input"]]
    assert stored["n"] == len(questions) and len(stored["scores"]) == len(questions)
    n = 10 * (stored["turns"] + 1)  # ten whole chats
    replies = conversation_responses(load_checkpoint(SHIPPED_MODELS / name), questions[:n], stored["turns"],
                                     record["max_new_tokens"])
    again = [score(r, e["output"])["score"] for e, r in zip(questions[:n], replies, strict=True)]
    assert sum(a == pytest.approx(b, abs=1e-3) for a, b in zip(again, stored["scores"][:n], strict=True)) >= n - 2
