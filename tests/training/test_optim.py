"""The learning-rate schedule and AdamW's decay groups."""

from __future__ import annotations

import pytest
import torch

from gpt.config import GPTConfig
from gpt.model import GPTModel
from gpt.training.optim import param_groups, seconds_per_step, warmup_cosine_lr


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    lrs = [warmup_cosine_lr(s, 1e-3, 1e-4, 10, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True))
    assert lrs[55] == pytest.approx((1e-3 + 1e-4) / 2)  # halfway through the cosine
    assert lrs[100] == pytest.approx(1e-4)


def test_weight_decay_skips_biases_and_norms_and_covers_every_parameter_once():
    model = GPTModel(GPTConfig.preset("tiny"))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith(".bias") or "norm" in names[id(p)] for p in no_decay["params"])
    assert all(names[id(p)].endswith(".weight") and "norm" not in names[id(p)] for p in decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert sorted(ids) == sorted(names) and len(ids) == len(set(ids))


def test_seconds_per_step_times_real_steps_that_train():
    torch.manual_seed(0)
    model = GPTModel(GPTConfig.preset("tiny"))
    before = model.tok_emb.weight.detach().clone()
    seconds = seconds_per_step(model, torch.randint(0, 512, (2, 17)), steps=2)
    assert seconds > 0 and not torch.equal(model.tok_emb.weight, before)  # three AdamW steps ran


def test_training_memory_counts_four_copies_of_the_parameters_and_grows_with_the_batch():
    cfg = GPTConfig.preset("tiny")
    assert cfg.training_memory_bytes(1) > 16 * cfg.n_params()
    assert cfg.training_memory_bytes(8) > cfg.training_memory_bytes(1)
