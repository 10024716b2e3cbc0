"""The one seeded train / validation / test split every finetuning uses."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Split(Generic[T]):
    train: tuple[T, ...]
    val: tuple[T, ...]
    test: tuple[T, ...]


def seeded_split(items: Sequence[T], fractions: dict[str, float], seed: int) -> Split[T]:
    """Shuffle with `seed`, then cut the parts in the order `fractions` names them; the last takes the rest.

    The order matters for reproducing published splits: the book cuts its spam data train/val/test
    and its instruction data train/test/val, and the shipped models are measured on those test sets.
    """
    if sorted(fractions) != sorted(PARTS):
        raise ValueError(f"split fractions must name {', '.join(PARTS)}, got {sorted(fractions)}")
    if min(fractions.values()) < 0 or abs(sum(fractions.values()) - 1) > 1e-9:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    parts: dict[str, tuple[T, ...]] = {}
    start = 0
    names = list(fractions)
    for name in names[:-1]:
        end = start + int(len(shuffled) * fractions[name])
        parts[name] = tuple(shuffled[start:end])
        start = end
    parts[names[-1]] = tuple(shuffled[start:])
    return Split(**parts)
