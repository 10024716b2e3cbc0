"""The Chat tab's examples (held-out questions the shipped model answers right) and its score table."""

from __future__ import annotations

import pytest

from gpt.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from gpt.instruct.data import SHIPPED_DATA, load_entries, split_entries
from gpt.instruct.evaluate import exact_match, save_model_eval, summarize
from ui import chat_tab
from ui.registry import ModelRegistry

SHIPPED = ModelRegistry()
HELD_OUT = {e["instruction"]: e for e in split_entries(load_entries(SHIPPED_DATA)).test if not e["input"]}


@pytest.mark.parametrize("example", chat_tab.EXAMPLES)
def test_each_example_is_a_held_out_question(example):
    assert example in HELD_OUT, f"{example!r} is not a question of the test split"


def test_the_examples_show_the_kinds_of_question():
    tasks = {HELD_OUT[e]["task"] for e in chat_tab.EXAMPLES if e in HELD_OUT}
    # No "What is X?" fact: the shipped model gets none of them exactly right, so none is offered.
    assert {"plural", "past tense", "multiplication", "addition", "antonym", "small talk", "refusal"} <= tasks


@pytest.mark.skipif(not (SHIPPED.shipped_path(chat_tab.CHAT_MODEL) / CONFIG_FILE).is_file(),
                    reason="no shipped instruct model")
@pytest.mark.parametrize("example", chat_tab.EXAMPLES)
def test_the_shipped_model_answers_each_example_right(example):
    reply, _ = list(chat_tab.chat(SHIPPED, example, [], 0.0, 96, 123))[-1]  # the example's settings: temperature 0
    assert exact_match(reply, HELD_OUT[example]["output"]) == 1.0, f"{example!r}: {reply!r}"


def test_scores_are_shown_only_for_the_weights_they_measured(tmp_path):
    (tmp_path / WEIGHTS_FILE).write_bytes(b"weights")
    assert chat_tab.held_out_scores(tmp_path) == chat_tab.NO_SCORES
    entries = [{"instruction": "7 x 12 =", "input": "", "output": "84", "task": "multiplication", "fact": "mul:7x12"},
               {"instruction": "Hi", "input": "", "output": "Hello! How can I help you?", "task": "small talk",
                "fact": "small talk:hello"}]
    save_model_eval(tmp_path, summarize(entries, ["84", "Hello! How can I help you?"], {"mul:7x12"}))
    shown = chat_tab.held_out_scores(tmp_path)
    assert "Scores on 2 held-out questions" in shown
    assert "| multiplication | 1 | 100.0 | 100.0 | 100% | 0 | – |" in shown
    assert "| small talk | 1 | 100.0 | 100.0 | 0% | 1 | 100.0 |" in shown
    (tmp_path / WEIGHTS_FILE).write_bytes(b"retrained")
    assert chat_tab.held_out_scores(tmp_path) == chat_tab.NO_SCORES
