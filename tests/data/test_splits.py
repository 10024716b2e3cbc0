"""The one seeded split."""

from __future__ import annotations

import random

import pytest

from gpt.data.splits import seeded_split


def test_parts_are_cut_in_the_order_given_and_the_last_takes_the_rest():
    items = list(range(103))
    split = seeded_split(items, {"train": 0.85, "test": 0.10, "val": 0.05}, seed=7)
    shuffled = list(items)
    random.Random(7).shuffle(shuffled)
    assert list(split.train) == shuffled[:87] and list(split.test) == shuffled[87:97]
    assert list(split.val) == shuffled[97:]  # 6 items: the remainder, not int(103 * 0.05) = 5
    other_order = seeded_split(items, {"train": 0.85, "val": 0.05, "test": 0.10}, seed=7)
    assert list(other_order.val) == shuffled[87:92] and other_order.train == split.train


def test_same_seed_same_split_and_parts_are_disjoint():
    items = [f"message {i}" for i in range(50)]
    a = seeded_split(items, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=123)
    assert a == seeded_split(items, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=123)
    assert a != seeded_split(items, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=124)
    assert sorted(a.train + a.val + a.test) == sorted(items)


@pytest.mark.parametrize("fractions", [{"train": 0.7, "test": 0.3}, {"train": 0.8, "val": 0.3, "test": -0.1},
                                       {"train": 0.5, "val": 0.1, "test": 0.1}])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ValueError, match="split fractions"):
        seeded_split(range(10), fractions, seed=0)
