"""Checkable arithmetic problems, asked the way the instruction data asks its sums, and split for good.

The shipped chat model learnt sums and differences up to 100 and the times tables up to 12 x 12
(`assets/instruct/`, built by `tools/build_instruct_data.py`, which reads its phrasings from here:
one home for how a sum is asked). The problems a reasoning run trains on are harder than those
(`HARD_KINDS`: three-digit sums, a two-digit number times a one-digit one, two steps such as
"7 + 5 - 3"), asked in the same phrasings, so that what changes is the arithmetic, not the wording.
`EASY_KINDS` are the shipped families' own problems, to measure that a run does not unlearn them.

Train and held-out problems never overlap: a problem's split follows from its `key` (its operands in
order-free form for a sum or a product, its expression for two steps) through a hash, whatever the
seed, so 5 + 7 asked in training is never 7 + 5 held out, and no seed's training problem is another
seed's held-out one. The seed only picks which problems of a split are drawn, and their phrasing.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gpt.instruct.data import Entry

ARITHMETIC_QUESTIONS = {  # the instruction data's phrasings of each operation: {a} and {b} are the operands
    "add": ["What is {a} plus {b}?", "What is {a} + {b}?", "What's {a} plus {b}?", "{a} + {b} =", "{a}+{b}=?",
            "Add {a} and {b}.", "What is the sum of {a} and {b}?", "Calculate {a} + {b}.", "How much is {a} plus {b}?",
            "{a} plus {b} equals?", "What do you get if you add {a} to {b}?"],
    "sub": ["What is {a} minus {b}?", "What is {a} - {b}?", "What's {a} minus {b}?", "{a} - {b} =", "{a}-{b}=?",
            "Subtract {b} from {a}.", "What is the difference between {a} and {b}?", "Calculate {a} - {b}.",
            "How much is {a} minus {b}?", "Take {b} away from {a}.", "{a} minus {b} equals?"],
    "mul": ["What is {a} times {b}?", "What is {a} x {b}?", "{a} x {b} =", "{a} * {b} =", "{a}*{b}=?",
            "Multiply {a} by {b}.", "What is {a} multiplied by {b}?", "What is the product of {a} and {b}?",
            "How much is {a} times {b}?", "What's {a} times {b}?", "Calculate {a} x {b}."],
    "div": ["What is {a} divided by {b}?", "{a} / {b} =", "Divide {a} by {b}.", "What's {a} divided by {b}?",
            "How many times does {b} go into {a}?", "Calculate {a} / {b}.", "{a}/{b}=?"],
}
ADD_SUB_MAX = 100  # the instruction data's sums and differences: operands 1..100
TABLES_MAX = 12  # its products and quotients: the times tables up to 12 x 12

# An expression of two steps is asked as the sums whose phrasing writes the sign: "What is 7 + 5 - 3?", "7+5-3=?".
EXPRESSION_QUESTIONS = ([t.replace("{a} + {b}", "{spaced}") for t in ARITHMETIC_QUESTIONS["add"] if "{a} + {b}" in t]
                        + [t.replace("{a}+{b}", "{tight}") for t in ARITHMETIC_QUESTIONS["add"] if "{a}+{b}" in t])

HELD_OUT_SHARE = 0.2  # of every kind's problems, by the hash of their key
MAX_PROBLEMS = 100_000  # the most a set may hold
TWO_STEP_MAX = 9  # the operands of a two-step problem: single digits, as in "7 + 5 - 3"
MAX_MISSES = 1000


@dataclass(frozen=True)
class Problem:
    """One question with one right answer."""

    question: str  # as the instruction data phrases it
    answer: int
    kind: str  # a name of KINDS
    key: str  # what the question asks, phrasing aside ("add:278+345", "expr:7+5-3"): decides the split

    def entry(self) -> Entry:
        """The problem as an instruction entry, to be put into the chat model's prompt."""
        return {"instruction": self.question, "input": "", "output": str(self.answer)}


Draw = Callable[[random.Random], Problem]


def _asked(rng: random.Random, op: str, a: int, b: int, answer: int, kind: str, key: str) -> Problem:
    return Problem(rng.choice(ARITHMETIC_QUESTIONS[op]).format(a=a, b=b), answer, kind, key)


def _sum(kind: str, low: int, high: int) -> Draw:
    def draw(rng: random.Random) -> Problem:
        a, b = rng.randint(low, high), rng.randint(low, high)
        return _asked(rng, "add", a, b, a + b, kind, f"add:{min(a, b)}+{max(a, b)}")
    return draw


def _product(kind: str, first: tuple[int, int], second: tuple[int, int]) -> Draw:
    def draw(rng: random.Random) -> Problem:
        a, b = rng.randint(*first), rng.randint(*second)
        if rng.random() < 0.5:  # the larger factor first or second, as people ask
            a, b = b, a
        return _asked(rng, "mul", a, b, a * b, kind, f"mul:{min(a, b)}x{max(a, b)}")
    return draw


def _difference(rng: random.Random) -> Problem:
    a, b = sorted((rng.randint(1, ADD_SUB_MAX), rng.randint(1, ADD_SUB_MAX)), reverse=True)
    return _asked(rng, "sub", a, b, a - b, "difference", f"sub:{a}-{b}")


def _quotient(rng: random.Random) -> Problem:
    a, b = rng.randint(1, TABLES_MAX), rng.randint(1, TABLES_MAX)
    return _asked(rng, "div", a * b, b, a, "quotient", f"div:{a * b}/{b}")


def _two_step(rng: random.Random) -> Problem:
    """a ± b ± c with operands 1..TWO_STEP_MAX, drawn again until the result is not negative (the instruction
    data never asks for a negative number)."""
    while True:
        a, b, c = (rng.randint(1, TWO_STEP_MAX) for _ in range(3))
        first, second = rng.choice("+-"), rng.choice("+-")
        after_first = a + b if first == "+" else a - b
        answer = after_first + c if second == "+" else after_first - c
        if answer >= 0:
            break
    template = rng.choice(EXPRESSION_QUESTIONS)
    question = template.format(spaced=f"{a} {first} {b} {second} {c}", tight=f"{a}{first}{b}{second}{c}")
    return Problem(question, answer, "two_step", f"expr:{a}{first}{b}{second}{c}")


KINDS: dict[str, Draw] = {
    # harder than the instruction data: what a reasoning run trains on
    "three_digit_sum": _sum("three_digit_sum", 100, 999),
    "two_digit_product": _product("two_digit_product", (13, 99), (2, 9)),
    "two_step": _two_step,
    # the instruction data's own ranges: what a run must not unlearn
    "sum": _sum("sum", 1, ADD_SUB_MAX),
    "difference": _difference,
    "product": _product("product", (1, TABLES_MAX), (1, TABLES_MAX)),
    "quotient": _quotient,
}
HARD_KINDS = ("three_digit_sum", "two_digit_product", "two_step")
EASY_KINDS = ("sum", "difference", "product", "quotient")
SPLITS = ("train", "held_out")


def split_of(key: str) -> str:
    """'held_out' for HELD_OUT_SHARE of all keys, 'train' for the rest: a hash, the same on every machine."""
    fraction = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return "held_out" if fraction < HELD_OUT_SHARE else "train"


def make_problems(kinds: Sequence[str], n: int, split: str = "train", seed: int = 0) -> list[Problem]:
    """`n` problems of the split, the kinds taken in turn, no key twice, the same for the same arguments.

    A kind whose split holds fewer distinct problems than its share (the times tables' held-out part has
    about 30) gives what it has: the set is then shorter than `n`.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown problem kind {', '.join(unknown) or '(none given)'}: choose from {', '.join(KINDS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 1 <= n <= MAX_PROBLEMS:
        raise ValueError(f"a problem set holds 1 to {MAX_PROBLEMS:,} problems, got {n:,}")
    kinds = list(dict.fromkeys(kinds))
    rng = random.Random(f"{seed}:{split}:{','.join(kinds)}")
    seen: set[str] = set()
    by_kind: list[list[Problem]] = []
    for i, kind in enumerate(kinds):
        share = n // len(kinds) + (i < n % len(kinds))
        drawn: list[Problem] = []
        misses = 0  # draws in a row that gave nothing new: past MAX_MISSES the kind's split is taken as used up
        while len(drawn) < share and misses < MAX_MISSES:
            problem = KINDS[kind](rng)
            if problem.key in seen or split_of(problem.key) != split:
                misses += 1
                continue
            misses = 0
            seen.add(problem.key)
            drawn.append(problem)
        by_kind.append(drawn)
    return [p for row in itertools.zip_longest(*by_kind) for p in row if p is not None]  # the kinds in turn
