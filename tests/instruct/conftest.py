"""Fixtures of the instruction tests: a few entries, a BPE trained on their prompts, tiny random models."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from gpt.checkpoint import Checkpoint
from gpt.instruct.data import Entry
from gpt.instruct.prompt import format_prompt
from gpt.tokenizer import Tokenizer
from tests.helpers import tiny_checkpoint, train_tokenizer

ENTRIES: list[Entry] = [
    {"instruction": f"What is {a} + {b}?", "input": "", "output": str(a + b)} for a in range(2, 9) for b in range(3, 7)
] + [
    {"instruction": "Give a synonym for \"fast\".", "input": "", "output": "quick"},
    {"instruction": "Sort the following words alphabetically.", "input": "pear, apple, fig",
     "output": "apple, fig, pear"},
]


@pytest.fixture
def entries() -> list[Entry]:
    """30 entries: 28 sums, a synonym and a sort with an input."""
    return [dict(e) for e in ENTRIES]


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    text = "\n".join(format_prompt(e) + e["output"] for e in ENTRIES) + " User: Assistant: hello there"
    return train_tokenizer(text, 400, "instruct-test")


@pytest.fixture
def make_checkpoint(tokenizer: Tokenizer) -> Callable[..., Checkpoint]:
    """A tiny random model on the test tokenizer, the same weights for the same arguments."""
    return functools.partial(tiny_checkpoint, tokenizer, context_length=96)
