"""Fixtures of the preference tests: a few tagged instruction entries, pairs made from them, a BPE trained
on their prompts and tiny random models."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from gpt.checkpoint import Checkpoint
from gpt.instruct.data import Entry
from gpt.instruct.prompt import format_prompt
from gpt.preference.data import Pair
from gpt.tokenizer import Tokenizer
from tests.helpers import tiny_checkpoint, train_tokenizer

ENTRIES: list[Entry] = [
    {"instruction": f"What is {a} + {b}?", "input": "", "output": str(a + b), "task": "addition"}
    for a in range(2, 9) for b in range(3, 7)
] + [
    {"instruction": "What is the weather today?", "input": "",
     "output": "I cannot know that: I have no news, clock or internet.", "task": "refusal"},
    {"instruction": "Give a synonym for \"fast\".", "input": "", "output": "quick", "task": "synonym"},
]
PAIRS: list[Pair] = [
    {"instruction": e["instruction"], "input": "", "chosen": e["output"], "rejected": f"Ugh, {e['output']}. Obviously.",
     "how": "impolite" if i % 2 else "rambling"} for i, e in enumerate(ENTRIES)
]


@pytest.fixture
def entries() -> list[Entry]:
    """30 entries: 28 sums, a refusal and a synonym, each with its task family."""
    return [dict(e) for e in ENTRIES]


@pytest.fixture
def pairs() -> list[Pair]:
    """30 pairs: each reference answer chosen over a rude one, tagged alternately rambling and impolite."""
    return [dict(p) for p in PAIRS]


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    text = "\n".join(format_prompt(e) + e["output"] for e in ENTRIES) + " Ugh, Obviously. Well, I would rather not"
    return train_tokenizer(text, 400, "preference-test")


@pytest.fixture
def make_checkpoint(tokenizer: Tokenizer) -> Callable[..., Checkpoint]:
    """A tiny random model on the test tokenizer, the same weights for the same arguments."""
    return functools.partial(tiny_checkpoint, tokenizer, context_length=128)
