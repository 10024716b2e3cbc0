"""The Chat tab: its examples (held-out questions the shipped model answers right), its score table, the
notice of turns left out of the prompt, hostile messages and histories, and the finetune panel's defaults."""

from __future__ import annotations

import functools
import re
import time

import gradio as gr
import pytest

from gpt.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from gpt.instruct.data import SHIPPED_DATA, load_entries, split_entries
from gpt.instruct.evaluate import exact_match, save_model_eval, summarize
from ui import chat_tab
from ui.common import user_errors
from ui.registry import ModelRegistry

SHIPPED = ModelRegistry()
MAX_NEW = chat_tab.MAX_NEW_TOKENS  # the slider's top: every value it allows works
SHIPPED_ENTRIES = load_entries(SHIPPED_DATA)
HELD_OUT = {e["instruction"]: e for e in split_entries(SHIPPED_ENTRIES).test if not e["input"]}


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


@pytest.mark.slow  # generates a whole conversation
def test_the_shipped_model_answers_the_examples_one_after_another_in_one_chat():
    history: list[dict] = []
    for example in chat_tab.EXAMPLES:
        reply, _ = list(chat_tab.chat(SHIPPED, example, history, 0.0, 96, 123))[-1]
        assert exact_match(reply, HELD_OUT[example]["output"]) == 1.0, \
            f"after {len(history) // 2} turns, {example!r}: {reply!r}"
        history += [{"role": "user", "content": example}, {"role": "assistant", "content": reply}]


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


# -- what a visitor (or an API caller) may send: a short message or a reply, never a traceback ---------------

PAGE_CHAT = user_errors(functools.partial(chat_tab.chat, SHIPPED))  # as the page's chat box calls it
needs_chat_model = pytest.mark.skipif(not (SHIPPED.shipped_path(chat_tab.CHAT_MODEL) / CONFIG_FILE).is_file(),
                                      reason="no shipped instruct model")


def turns(n: int) -> list[dict]:
    return [m for i in range(n) for m in ({"role": "user", "content": f"What is {i % 12} times 3?"},
                                          {"role": "assistant", "content": str(i % 12 * 3)})]


def answered(message: str, history: list, max_new_tokens: int = 8) -> tuple[str, str, str, float]:
    """The page's last reply and prompt, the notice shown above the chat, and the seconds it all took."""
    began = time.monotonic()
    reply, prompt = list(PAGE_CHAT(message, history, 0.0, max_new_tokens, 123))[-1]
    notice = chat_tab.chat_notice(SHIPPED, prompt, message, history, max_new_tokens)
    return reply, prompt, notice, time.monotonic() - began


@needs_chat_model
@pytest.mark.parametrize("message", ["", "   ", " \n\t "])
def test_an_empty_message_gets_a_short_message(message):
    with pytest.raises(gr.Error) as info:
        list(PAGE_CHAT(message, turns(2), 0.0, 8, 123))
    assert info.value.message == "The message is empty: type something first."


@needs_chat_model
def test_a_100_kb_message_is_refused_at_once():
    began = time.monotonic()
    with pytest.raises(gr.Error) as info:
        list(PAGE_CHAT("What is 7 times 8?" * 5_700, turns(2), 0.0, 8, 123))  # 102,600 characters
    assert info.value.message == ("The message is too long for this model: 102,600 characters, and its prompt has "
                                  "room for 248 tokens (a context of 256, less 8 for the reply). Shorten it.")
    assert len(info.value.message) < 300 and time.monotonic() - began < 1


@needs_chat_model
def test_500_earlier_turns_get_a_reply_from_the_last_ones_and_a_notice():
    reply, prompt, notice, seconds = answered("What is 7 times 8?", turns(500))
    assert reply and seconds < 10
    assert "User: What is 7 times 3?\nAssistant: 21\n\n### Response:" in prompt  # the 500th turn, the newest
    assert notice.startswith("⚠️ ") and "oldest turns were left out of its prompt" in notice
    kept = prompt.count("\nUser: ")
    left_out = re.findall(r"the (\d+) oldest turns were left out|(\d+) more turns? w", notice)
    assert sum(int(n or more) for n, more in left_out) == 500 - kept  # by the turn limit, then to fit the context


@needs_chat_model
def test_malformed_history_entries_are_skipped():
    history = [None, 7, "User: hi", ["x"], {}, {"role": "user"}, {"content": "no role"}, {"role": None},
               {"role": "user", "content": None}, {"role": "assistant", "content": 3.5},
               {"role": "user", "content": [{"type": "text", "text": None}, "part", 12]},
               {"role": "tool", "content": "rm -rf"}, {"role": "user", "content": "What is 2 times 3?"},
               {"role": "assistant", "content": "6"}]
    reply, prompt, notice, _ = answered("What is 7 times 8?", history)
    assert reply and "### Input:\nUser: What is 2 times 3?\nAssistant: 6\n\n### Response:" in prompt
    assert notice == ""
    with pytest.raises(gr.Error, match="The conversation must be a list of messages, got dict."):
        list(PAGE_CHAT("Hi", {"role": "user", "content": "Hi"}, 0.0, 8, 123))


@needs_chat_model
@pytest.mark.parametrize("message", ["😀🎉🙂", "🤖" * 40], ids=["three", "forty robots"])
def test_a_message_of_emoji_only_gets_a_reply(message):
    reply, prompt, notice, _ = answered(message, [])
    assert isinstance(reply, str) and reply and "\ufffd" not in reply
    assert f"### Instruction:\n{message}\n\n### Response:" in prompt and notice == ""


@needs_chat_model
def test_the_max_tokens_slider_allows_only_what_works():
    reply, prompt, _, _ = answered("What is the product of 7 and 12?", [], max_new_tokens=MAX_NEW)
    assert reply and prompt
    with pytest.raises(gr.Error, match=f"Max new tokens must be between 1 and {MAX_NEW}"):
        list(PAGE_CHAT("Hi", [], 0.0, MAX_NEW + 1, 123))
    for temperature in (1e-38, 1e-300, 5e-324):  # so small that dividing by it overflows: greedy
        assert list(PAGE_CHAT("Good morning.", [], temperature, 8, 1))[-1] == list(PAGE_CHAT("Good morning.", [], 0.0,
                                                                                             8, 1))[-1]


@needs_chat_model
def test_turns_left_out_to_fit_the_context_are_said_and_a_new_chat_says_nothing():
    message = "What is 7 times 8? Say it in a word, please, and then say nothing more at all."
    reply, prompt, notice, _ = answered(message, turns(3), max_new_tokens=MAX_NEW)  # 96 tokens of prompt
    assert "### Input:" not in prompt
    assert notice == (f"⚠️ To fit the model's context of 256 tokens ({MAX_NEW} kept for the reply), no earlier turn was "
                      "kept: the model reads your message alone.")
    assert chat_tab.chat_notice(SHIPPED, "", message, turns(3), MAX_NEW) == ""  # no prompt sent yet
    assert chat_tab.new_chat() == ([], [], [], "", "")


# -- the finetune panel's defaults -----------------------------------------------------------------------------

def test_the_panel_names_the_shipped_data_as_it_is():
    train = split_entries(SHIPPED_ENTRIES).train
    assert len(train) == chat_tab.MAX_ENTRIES
    assert f"({len(SHIPPED_ENTRIES):,} entries, {len(chat_tab.FAMILIES)} kinds of question)" in \
        chat_tab.DATA_CHOICES[0][0]
    assert set(chat_tab.FAMILIES) == {e["task"] for e in SHIPPED_ENTRIES}


def test_the_defaults_train_on_what_was_measured():
    """The docs' command measures DEFAULT_FORM with `max_train=max_entries`: the tab must train on as many."""
    form = chat_tab.DEFAULT_FORM
    train = split_entries(SHIPPED_ENTRIES).train
    assert form.max_entries <= sum(e["task"] in form.families for e in train)
    assert chat_tab.picked_families(form.families) == form.families
    cfg, steps = chat_tab.scheduled(chat_tab.instruct_config(form), form.max_entries)
    assert f"{steps} steps" in chat_tab.DEFAULTS_REACH
