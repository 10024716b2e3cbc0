"""Recipes trained one after the other: steps fitted to a measured rate, the same tokens for every recipe, and a
measured step that leaves the caller's random numbers alone."""

from __future__ import annotations

import subprocess
import sys

import torch

from gpt.config import GPTConfig
from gpt.pretrain import recipes
from gpt.pretrain.recipes import Plan, fitted_steps, plan_recipes, with_steps
from gpt.pretrain.trainer import PretrainConfig

TINY = GPTConfig.preset("tiny", vocab_size=300, n_layers=2, emb_dim=32, context_length=16)


def test_the_steps_fill_their_share_of_the_budget_within_the_bounds():
    assert fitted_steps(180, 0.3, 20_000) == 540 and fitted_steps(180, 0.6, 20_000) == 270
    assert fitted_steps(180, 1e-6, 20_000) == 20_000 and fitted_steps(1, 60, 20_000) == 1


def test_the_first_recipe_fills_the_budget_and_the_second_sees_as_many_tokens(monkeypatch):
    """Rates are injected, not timed: the first recipe fills 90% of the budget, the second sees as many tokens."""
    rates = {"adamw": 0.25, "muon": 0.5}
    monkeypatch.setattr(recipes, "recipe_seconds_per_step", lambda cfg: rates[cfg.optimizer])
    plans = [Plan("A", with_steps(PretrainConfig(model=TINY, max_steps=60, batch_size=4, warmup_steps=5), 60), None),
             Plan("B", PretrainConfig(model=GPTConfig.preset("tiny", vocab_size=300), optimizer="muon", max_steps=60,
                                      batch_size=4, warmup_steps=5), None)]
    fitted, second = plan_recipes(plans, 180, 20_000, 180)
    assert fitted["config"]["max_steps"] == 648 and fitted["config"]["eval_interval"] == 32  # 0.9 * 180 s / 0.25 s
    assert fitted["seconds_per_step"] == 0.25 and fitted["time_limit_s"] == 180
    assert second["config"]["max_steps"] == 162 and second["time_limit_s"] == 180  # tiny's context is 64: 81 s
    as_sent, _ = plan_recipes(plans, None, 20_000, 180)
    assert as_sent["config"]["max_steps"] == 60


def test_few_fitted_steps_keep_a_short_warmup_and_steps_asked_for_keep_theirs(monkeypatch):
    """A machine so busy that a 3-minute budget fits 17 steps: a 30-step warmup would be the whole run."""
    monkeypatch.setattr(recipes, "recipe_seconds_per_step", lambda cfg: 9.5)
    cfg = PretrainConfig(model=TINY, max_steps=60, batch_size=4, warmup_steps=30)
    (fitted,) = plan_recipes([Plan("A", cfg, None)], 180, 20_000, 180)
    assert (fitted["config"]["max_steps"], fitted["config"]["warmup_steps"]) == (17, 1)
    (asked,) = plan_recipes([Plan("A", cfg, None)], None, 20_000, 180)
    assert (asked["config"]["max_steps"], asked["config"]["warmup_steps"]) == (60, 30)


def test_a_slower_later_recipe_gets_a_longer_time_limit(monkeypatch):
    rates = {"adamw": 0.25, "muon": 1.0}
    monkeypatch.setattr(recipes, "recipe_seconds_per_step", lambda cfg: rates[cfg.optimizer])
    cfg = PretrainConfig(model=TINY, max_steps=60, batch_size=4, warmup_steps=5)
    first, second = plan_recipes([Plan("A", cfg, None), Plan("B", PretrainConfig(
        model=TINY, optimizer="muon", max_steps=60, batch_size=4, warmup_steps=5), None)], None, 20_000, 100)
    assert first["time_limit_s"] == 100 and second["time_limit_s"] == 400  # the same steps at 4x the seconds


def test_a_measured_step_of_either_optimizer_leaves_the_global_random_numbers_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    for optimizer in ("adamw", "muon"):
        cfg = PretrainConfig(model=TINY, optimizer=optimizer, batch_size=2, autocast="float32")
        assert recipes.recipe_seconds_per_step(cfg) > 0
    assert torch.equal(torch.rand(3), expected)


def test_the_training_process_imports_no_gradio():
    """The Train tab's job targets this module: its process starts without the UI's imports."""
    code = "import sys, gpt.pretrain.recipes; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
