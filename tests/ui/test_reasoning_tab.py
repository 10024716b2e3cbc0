"""The Reasoning tab's functions: a typed problem's right answer, a drawn problem, the vote on the shipped chat model,
and bad input refused with one line before any model runs."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import pytest

from gpt.reasoning.grpo import TASKS
from gpt.reasoning.problems import KINDS, make_problems, split_of
from gpt.reasoning.scaling import tally
from ui import reasoning_tab as rt
from ui.registry import SHIPPED_CHAT, ModelRegistry


@pytest.fixture(scope="module")
def registry(shipped_models) -> ModelRegistry:
    return ModelRegistry(shipped_models)


def test_every_drawn_problem_of_every_kind_is_checked_to_its_own_answer():
    for kind in KINDS:
        for problem in make_problems([kind], 120, "held_out", seed=1) + make_problems([kind], 120, "train", seed=1):
            assert rt.checkable_answer(problem.question) == problem.answer, problem.question


@pytest.mark.parametrize("question, answer", [
    ("What is 7 + 5 - 3?", 9), ("7+5-3=?", 9), ("Calculate 3 + 1 - 1.", 3), ("12 times 4", 48), ("2 x 3 x 4", 24),
    ("what is 3 plus 4", 7), ("Subtract 5 from 12.", 7), ("What is 7 − 5?", 2), ("What is -3 + 5?", 2),
    ("How many times does 4 go into 36?", 9), ("What is 2 + 3 * 4?", 14), ("100 divided by 4", 25)])
def test_a_typed_problem_gets_its_right_answer(question, answer):
    assert rt.checkable_answer(question) == answer


@pytest.mark.parametrize("question, said", [
    ("", "empty"), ("   ", "empty"), (None, "empty"), ("What is the capital of France?", "no number"),
    ("I have 3 apples", "No arithmetic"), ("2+2 and 3+3", "No arithmetic"), ("What is 2.5 + 1?", "No arithmetic"),
    ("7/2", "not a whole number"), ("What is 4 / 0?", "No arithmetic"), ("x" * 301 + " 1+1", "characters long"),
    ("What is 1234567890123 + 1?", "at most 12 digits")])
def test_a_problem_that_cannot_be_checked_is_refused_with_one_line(question, said):
    with pytest.raises(ValueError, match=said) as info:
        rt.checkable_answer(question)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_a_drawn_problem_is_held_out_of_the_chosen_kind_and_differs_by_seed():
    for task, kinds in TASKS.items():
        questions = set()
        for seed in range(6):
            question, note = rt.draw_problem(task, seed)
            found = [p for k in kinds for p in make_problems([k], 1, "held_out", seed=seed) if p.question == question]
            assert found and split_of(found[0].key) == "held_out" and "held-out" in note
            questions.add(question)
        assert len(questions) > 1, task
    with pytest.raises(ValueError, match="Choose a kind"):
        rt.draw_problem("nonsense", 0)
    assert rt.new_problem("sum")[0]


def test_the_chat_models_offered_are_ours_only(registry):
    names = rt.own_chat_names(registry)
    assert names[0] == SHIPPED_CHAT and not set(names) & set(registry.open_chat_names())


def test_a_vote_on_the_shipped_chat_model(registry):
    fig, summary, table = rt.vote_view(registry, SHIPPED_CHAT, "What is 7 times 8?", 8, 1.0, 12, 0)
    assert isinstance(fig, go.Figure) and isinstance(table, pd.DataFrame)
    assert len(table) == 8 and list(table["#"]) == list(range(1, 9))
    assert set(table["verifier"]) <= {rt.RIGHT, rt.WRONG, rt.NO_NUMBER}
    assert (table["likeliest"] == "★ best-of-N").sum() == 1
    assert sum(fig.data[0].y) == 8 and fig.layout.xaxis.type == "category"
    assert "Expected answer: 56" in summary and "majority of 8" in summary and "best-of-8" in summary
    assert "greedy" in summary and "The greedy reply" in summary
    again = rt.vote_view(registry, SHIPPED_CHAT, "What is 7 times 8?", 8, 1.0, 12, 0)
    assert again[2].equals(table)  # the same seed, the same replies


def tallied(replies: list[str], expected: int):
    return tally("q", replies, [-0.1 * i for i in range(len(replies))], expected)


def test_the_figure_and_the_summary_say_what_the_vote_did():
    helped = tallied(["9", "9", "4", "no idea", "9"], 9)
    fig = rt.votes_figure(helped)
    assert list(fig.data[0].x) == ["9", "4", "no number"] and list(fig.data[0].y) == [3, 1, 1]
    assert fig.data[0].marker.color[0] == rt.RIGHT_COLOUR and "majority" in fig.data[0].text[0]
    assert "The vote helped" in rt.summary_markdown(helped, "4", 4, 1.0)
    assert "The vote hurt" in rt.summary_markdown(tallied(["4", "4", "9"], 9), "9", 9, 1.0)
    assert "a verifier could" in rt.summary_markdown(tallied(["4", "4", "9"], 9), "4", 4, 1.0)
    assert "None of the 2 replies" in rt.summary_markdown(tallied(["4", "5"], 9), "4", 4, 1.0)
    silent = rt.votes_figure(tallied(["no", "none"], 9))
    assert list(silent.data[0].x) == ["no number"]


@pytest.mark.parametrize("field, value, said", [
    ("n", 0, "N"), ("n", 10_000, "N"), ("n", 2.5, "whole number"), ("n", math.inf, "N"), ("n", "8", "N"),
    ("temperature", 0, "Temperature"), ("temperature", 9, "Temperature"), ("temperature", math.nan, "Temperature"),
    ("max_new", 0, "Max new tokens"), ("max_new", 10**400, "Max new tokens"), ("seed", -1, "Seed"),
    ("model", "gpt2", "chat models"), ("model", "qwen3-0.6b", "chat models"), ("model", 12, "chat models"),
    ("model", "base", "chat models"), ("question", "hello", "no number")])
def test_bad_settings_are_refused_before_any_model_runs(registry, field, value, said, monkeypatch):
    monkeypatch.setattr(rt, "vote", lambda *a, **k: pytest.fail("the model ran"))
    args = {"model": SHIPPED_CHAT, "question": "What is 2 + 2?", "n": 8, "temperature": 1.0, "max_new": 12, "seed": 0}
    args[field] = value
    with pytest.raises(ValueError, match=said):
        rt.vote_view(registry, args["model"], args["question"], args["n"], args["temperature"], args["max_new"],
                     args["seed"])


def test_the_bounds_come_from_the_library_and_stay_small():
    assert rt.N_LOW == 1 and rt.N_HIGH == 16 and (rt.T_LOW, rt.T_HIGH) == (0.05, 2.0) and rt.R_HIGH <= 24
