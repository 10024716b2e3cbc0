"""The shipped chat models' headline figures, re-measured from their weights: each card's per-family
held-out scores come from `eval.json`, and a few whole families are scored again here."""

from __future__ import annotations

import pytest

from gpt.checkpoint import load_checkpoint
from gpt.files import SHIPPED_MODELS
from gpt.instruct.data import SHIPPED_DATA, load_entries, split_entries
from gpt.instruct.evaluate import evaluate_instructions, load_model_eval

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
    assert record["n"] == len(test_split)
    for family in FAMILIES:
        entries = [e for e in test_split if e["task"] == family]
        report = evaluate_instructions(checkpoint, entries, record["max_new_tokens"])
        stored = record["tasks"][family]
        assert stored["n"] == len(entries)
        assert report["score"] == pytest.approx(stored["score"], abs=100 / len(entries) + 0.1), family
