"""The language-model loss, its held-out mean over windows, and bits per byte."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gpt.config import GPTConfig
from gpt.model import GPTModel
from gpt.training.loss import IGNORE_INDEX, bits_per_byte, heldout_loss, lm_loss, scoring_windows


def test_lm_loss_is_cross_entropy_over_positions_and_skips_ignored_targets():
    logits = torch.randn(2, 3, 5, dtype=torch.bfloat16)
    targets = torch.tensor([[1, 2, IGNORE_INDEX], [0, IGNORE_INDEX, 4]])
    kept = logits.float()[targets != IGNORE_INDEX]
    expected = F.cross_entropy(kept, targets[targets != IGNORE_INDEX])
    assert lm_loss(logits, targets).dtype == torch.float32
    torch.testing.assert_close(lm_loss(logits, targets), expected)
    torch.testing.assert_close(lm_loss(logits, targets, reduction="sum"), expected * 4)


def test_scoring_windows_score_every_token_but_the_first_once():
    tokens = np.arange(23)
    windows = scoring_windows(tokens, context_length=8)
    assert [len(w) for w in windows] == [9, 9, 7]
    assert sum(len(w) - 1 for w in windows) == len(tokens) - 1


def test_heldout_loss_is_the_mean_over_the_scored_tokens():
    torch.manual_seed(0)
    model = GPTModel(GPTConfig.preset("tiny", context_length=8)).eval()
    tokens = np.random.default_rng(0).integers(0, 512, 30)
    loss, count = heldout_loss(model, tokens, batch_size=2)
    total = 0.0
    for w in scoring_windows(tokens, 8):
        ids = torch.from_numpy(w.astype(np.int64))[None]
        total += lm_loss(model(ids[:, :-1]), ids[:, 1:], reduction="sum").item()
    assert count == 29 and loss == pytest.approx(total / 29, rel=1e-6)
    assert math.isclose(bits_per_byte(loss * count, 29), loss / math.log(2))
