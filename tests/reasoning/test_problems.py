"""Problems: right answers, the instruction data's phrasings, seeded, and splits that never overlap."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from gpt.instruct.data import SHIPPED_DATA
from gpt.reasoning.problems import (
    ARITHMETIC_QUESTIONS,
    EASY_KINDS,
    EXPRESSION_QUESTIONS,
    HARD_KINDS,
    KINDS,
    make_problems,
    split_of,
)


def computed(problem) -> int:
    """The answer recomputed from the key, apart from the generator's own arithmetic."""
    expression = problem.key.split(":", 1)[1].replace("x", "*").replace("/", "//")
    return eval(expression)  # the key holds digits and operators only: checked below


def test_every_kind_gives_right_answers_keys_and_phrasings():
    for kind in KINDS:
        for problem in make_problems([kind], 60, "train", seed=1):
            assert re.fullmatch(r"\w+:[\d+\-x/]+", problem.key), problem.key
            assert problem.answer == computed(problem) and problem.answer >= 0
            assert problem.kind == kind
            templates = EXPRESSION_QUESTIONS if kind == "two_step" else [
                t for ts in ARITHMETIC_QUESTIONS.values() for t in ts]
            patterns = [re.escape(t).replace(r"\{a\}", r"\d+").replace(r"\{b\}", r"\d+")
                        .replace(r"\{spaced\}", r"[\d +\-]+").replace(r"\{tight\}", r"[\d+\-]+") for t in templates]
            assert any(re.fullmatch(p, problem.question) for p in patterns), problem.question


def test_hard_kinds_are_harder_than_the_instruction_data():
    for problem in make_problems(["three_digit_sum"], 50, seed=2):
        assert all(100 <= int(n) <= 999 for n in re.findall(r"\d+", problem.question))
    for problem in make_problems(["two_digit_product"], 50, seed=2):
        assert sorted(map(int, re.findall(r"\d+", problem.question)))[1] >= 13
    assert all(len(re.findall(r"\d+", p.question)) == 3 for p in make_problems(["two_step"], 50, seed=2))


def test_problems_are_seeded_and_unique():
    first = make_problems(HARD_KINDS, 300, "train", seed=3)
    assert first == make_problems(HARD_KINDS, 300, "train", seed=3)
    assert first != make_problems(HARD_KINDS, 300, "train", seed=4)
    assert len({p.key for p in first}) == len(first) == 300
    assert [p.kind for p in first[:6]] == list(HARD_KINDS) * 2  # the kinds in turn


def test_held_out_problems_never_overlap_training_whatever_the_seeds():
    train = {p.key for seed in range(3) for p in make_problems(HARD_KINDS + EASY_KINDS, 2000, "train", seed)}
    held_out = {p.key for seed in range(3) for p in make_problems(HARD_KINDS + EASY_KINDS, 500, "held_out", seed)}
    assert held_out and not train & held_out
    assert all(split_of(k) == "held_out" for k in held_out)


def test_a_sum_asked_either_way_round_is_one_problem():
    assert split_of("add:5+7") == split_of("add:5+7")
    keys = {p.key for p in make_problems(["sum"], 2000, "train", seed=0)}
    assert all(int(k[4:].split("+")[0]) <= int(k[4:].split("+")[1]) for k in keys)


def test_a_small_split_gives_what_it_has():
    products = make_problems(["product"], 500, "held_out", seed=0)
    assert 5 < len(products) < 78  # 78 order-free pairs in the times tables, a fifth of them held out


def test_easy_problems_are_what_the_instruction_data_asks():
    data = json.loads(gzip.decompress(SHIPPED_DATA.read_bytes()))
    outputs = {e["instruction"]: e["output"] for e in data if e.get("task") == "addition"}
    asked = [p for p in make_problems(["sum"], 2000, "train", seed=0) if p.question in outputs]
    assert len(asked) > 100 and all(outputs[p.question] == str(p.answer) for p in asked)


@pytest.mark.parametrize(("kinds", "n", "split", "message"), [
    (["cubes"], 10, "train", "unknown problem kind cubes"),
    ([], 10, "train", "unknown problem kind (none given)"),
    (["sum"], 0, "train", "1 to 100,000 problems, got 0"),
    (["sum"], 10**6, "train", "got 1,000,000"),
    (["sum"], 10, "test", "split must be one of train, held_out"),
])
def test_bad_requests_are_one_line_errors(kinds, n, split, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_problems(kinds, n, split)
