"""The verifier reads the answer out of replies as a person would, and checks the instruction data's format."""

from __future__ import annotations

from fractions import Fraction

import pytest

from gpt.reasoning.verify import extract_answer, is_well_formed, numbers_in, verify


@pytest.mark.parametrize(("reply", "answer"), [
    ("623", 623),
    ("623.", 623),  # a full stop, not a decimal point
    ("623!", 623),
    ("  623\n", 623),
    ("6 2 3", 623),  # digit by digit, spaced out
    ("The answer is 6 2 3.", 623),
    ("1,234", 1234),
    ("It is 12,345,678.", 12345678),
    ("-5", -5),
    ("−5", -5),  # the typographic minus
    ("x = -3", -3),
    ("7-5=2", 2),  # the minus of 7-5 is an operator: 5 is no -5, and "=" announces 2
    ("7 + 5 = 12", 12),
    ("7 + 5 = 12, not 13", 12),  # the announced number wins over the last one
    ("The answer is 12. Check: 10 + 2", 12),
    ("Answer: 42", 42),
    ("the result is 8 and not 9", 8),
    ("I think 3, no wait, 4", 4),  # without an announcement the last number counts
    ("345 plus 278 is 623", 623),
    ("6.5", Fraction(13, 2)),
    ("12 3", 3),  # a two-digit group is no spaced digit: two numbers, the last counts
    ("about 7 apples", 7),
])
def test_extract_answer_reads_tricky_replies(reply, answer):
    assert extract_answer(reply) == answer


@pytest.mark.parametrize("reply", ["", "no idea", "That is beyond what I can compute.", "a12", "answer:"])
def test_a_reply_without_a_number_has_no_answer_and_is_wrong(reply):
    assert extract_answer(reply) is None
    assert not verify(reply, 12).correct


def test_a_decimal_is_never_its_whole_part():
    assert not verify("6.5", 6).correct and verify("6.0", 6).correct


def test_numbers_in_finds_each_number_in_order():
    assert numbers_in("3 + 4 = 7, and 1,000 - 1 = 999") == [3, 4, 7, 1000, 1, 999]


@pytest.mark.parametrize(("reply", "formed"), [
    ("623", True), (" 623 ", True), ("-5", True), ("623.", False), ("The answer is 623.", False),
    ("6 2 3", False), ("1,234", False), ("", False), ("six", False),
])
def test_well_formed_is_the_bare_integer_the_instruction_data_answers_with(reply, formed):
    assert is_well_formed(reply) is formed


def test_verify_reports_answer_correctness_and_format():
    verdict = verify("The answer is 12.", 12)
    assert (verdict.answer, verdict.correct, verdict.well_formed) == (12, True, False)
    assert verify("13", 12) == verify("13", 12) and not verify("13", 12).correct
