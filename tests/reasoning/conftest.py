"""Fixtures of the reasoning tests: a BPE trained on arithmetic prompts and answers, and tiny random chat models."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from gpt.checkpoint import Checkpoint
from gpt.instruct.prompt import format_prompt
from gpt.reasoning.problems import EASY_KINDS, HARD_KINDS, make_problems
from gpt.tokenizer import Tokenizer
from tests.helpers import tiny_checkpoint, train_tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    problems = make_problems(HARD_KINDS + EASY_KINDS, 200, "train", seed=5)
    text = "\n".join(format_prompt(p.entry()) + str(p.answer) for p in problems)
    return train_tokenizer(text + " 0 1 2 3 4 5 6 7 8 9", 300, "reasoning-test")


@pytest.fixture
def make_checkpoint(tokenizer: Tokenizer) -> Callable[..., Checkpoint]:
    """A tiny random model on the test tokenizer, the same weights for the same arguments."""
    return functools.partial(tiny_checkpoint, tokenizer, context_length=128)
