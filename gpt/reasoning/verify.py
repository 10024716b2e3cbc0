"""The verifier: the number a reply gives as its answer, and whether it is the right one.

A sum has one right answer that code can check, so a reply can be scored without a judge: this is
what makes voting (`gpt.reasoning.scaling`) and reinforcement learning on checkable answers
(`gpt.reasoning.grpo`) possible. The hard part is reading the reply the way a person would.

Which number counts, when a reply holds several ("7 + 5 = 12", "12. Check: 10 + 2"):
1. the number right after an announcement ("the answer is", "answer:", "the result is", "="), the last one;
2. otherwise the last number in the reply: a worked reply ends with its result.

What reads as one number: digits with an optional minus sign right before them (not after a digit or
a letter, where it is the operator of "7-5"); commas between groups of three digits ("1,234");
single digits separated by single spaces ("6 2 3", as a model that writes digit by digit may space
them); a decimal part ("6.5", never equal to 6; "623." is 623 and a full stop). Replies that hold no
number have no answer and are wrong.

The instruction data (`assets/instruct/`) answers every sum, difference, product and quotient with
the bare number ("113"), so a reply is well formed (`is_well_formed`) when it is that and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# One number: single digits spaced out, or thousands with commas, or plain digits, each with an optional
# decimal part; the minus sign counts only where no digit or letter stands before it.
NUMBER = re.compile(r"(?<![\w.])([-−])?(\d(?: \d)+(?!\d)|\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?")
ANNOUNCED = re.compile(r"(?:\b(?:answer|result)(?:\s+is)?\s*:?|=)\s*", re.IGNORECASE)
BARE_INTEGER = re.compile(r"-?\d+")

Number = int | Fraction  # a decimal answer stays exact: 6.5 is 13/2, never rounded to 6


def _value(match: re.Match[str]) -> Number:
    sign, digits, decimals = match.groups()
    whole = int(re.sub(r"[ ,]", "", digits))
    value: Number = whole + Fraction(decimals[1:]) / 10 ** (len(decimals) - 1) if decimals else whole
    if isinstance(value, Fraction) and value.denominator == 1:
        value = int(value)
    return -value if sign else value


def numbers_in(reply: str) -> list[Number]:
    """Every number in the reply, in order, read as `NUMBER` reads them."""
    return [_value(m) for m in NUMBER.finditer(reply)]


def extract_answer(reply: str) -> Number | None:
    """The reply's answer: the number after its last announcement ("the answer is", "answer:", "="),
    else its last number; None when it holds no number."""
    for announced in reversed(list(ANNOUNCED.finditer(reply))):
        match = NUMBER.match(reply, announced.end())
        if match:
            return _value(match)
    found = numbers_in(reply)
    return found[-1] if found else None


def is_well_formed(reply: str) -> bool:
    """Whether the reply is the bare integer and nothing else, as the instruction data answers arithmetic."""
    return BARE_INTEGER.fullmatch(reply.strip()) is not None


@dataclass(frozen=True)
class Verdict:
    """What the verifier made of one reply."""

    answer: Number | None  # the number it gives, None when it gives none
    correct: bool
    well_formed: bool  # the bare number, as the instruction data answers


def verify(reply: str, expected: int) -> Verdict:
    """The reply's answer, whether it equals `expected`, and whether it is well formed."""
    answer = extract_answer(reply)
    return Verdict(answer, answer is not None and answer == expected, is_well_formed(reply))
