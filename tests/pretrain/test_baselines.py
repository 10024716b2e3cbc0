"""The baselines a language model must beat: a Kneser-Ney byte n-gram and `xz -9`."""

from __future__ import annotations

import numpy as np
import pytest

from gpt.pretrain.baselines import ByteNGram, xz_bits_per_byte

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. In the beginning God created the heaven and the earth. ") * 12


def test_ngram_probabilities_sum_to_one_in_any_context():
    model = ByteNGram(order=4).fit(TEXT)
    for context in (b"a good fo", b"zq\xff", b"", b"the earth"):
        total = sum(model.byte_probabilities(context + bytes([b]))[-1] for b in range(256))
        assert total == pytest.approx(1.0, abs=1e-9)


def test_ngram_learns_repetition_and_knows_nothing_of_random_bytes():
    model = ByteNGram(order=5).fit(TEXT)
    assert model.bits_per_byte(TEXT[:300]) < 1.0
    assert ByteNGram(order=3).fit(TEXT).bits_per_byte(TEXT[:300]) > model.bits_per_byte(TEXT[:300])
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    assert -np.log2(model.byte_probabilities(noise)).mean() > 7.5
    with pytest.raises(ValueError):
        ByteNGram(order=9)


def test_xz_bits_per_byte_with_and_without_context():
    alone = xz_bits_per_byte(TEXT)
    assert 0 < alone < 2  # the text repeats itself
    assert xz_bits_per_byte(TEXT, context=TEXT) < alone
    letters = bytes(np.random.default_rng(0).integers(65, 91, 5000, dtype=np.uint8)).decode()
    assert 4.5 < xz_bits_per_byte(letters) < 6.0  # 26 equally likely letters: log2(26) = 4.7 bits
