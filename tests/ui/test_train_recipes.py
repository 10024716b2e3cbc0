"""The Train tab's recipes: every architecture switch and the optimizer from the form, impossible combinations
refused before anything starts, the check's steps fitted to a measured rate, time left by steps, and two recipes
side by side (`gpt.pretrain.recipes` trains them; tests/pretrain/test_recipes.py tests its planning)."""

from __future__ import annotations

import pytest

from gpt.config import PRESETS, GPTConfig
from gpt.pretrain import recipes
from gpt.training.events import TrainEvent
from tests.ui.helpers import choices, session
from tests.ui.test_train_tab import WAIT_S, form, registry  # noqa: F401 - the fixture
from ui import train_tab
from ui.jobs import Job
from ui.registry import RUN_PREFIX

EVERY_SWITCH = dict(positions="rotary", rope_base=500_000.0, norm="rmsnorm", mlp="swiglu", mlp_hidden=96,
                    n_kv_heads=2, qk_norm=True, bias=False, qkv_bias=False, tie_weights=False)


def test_the_form_builds_a_config_with_every_switch_for_either_recipe():
    cfg = train_tab.model_config(form(**EVERY_SWITCH), 300)
    assert {name: getattr(cfg, name) for name in EVERY_SWITCH} == EVERY_SWITCH
    second = {f"b_{name}": value for name, value in EVERY_SWITCH.items()}
    first, other = train_tab.recipes(form(compare=True, optimizer="muon", b_preset="custom", b_optimizer="adamw",
                                          **second), 300)
    assert first.model == GPTConfig.preset("tiny", vocab_size=300, n_layers=2, emb_dim=32, context_length=16)
    assert (first.optimizer, other.optimizer) == ("muon", "adamw") and other.model == cfg
    assert other.label == ("custom (positions rotary, rope_base 500000.0, norm rmsnorm, mlp swiglu, mlp_hidden 96, "
                           "n_kv_heads 2, qk_norm True, bias False, qkv_bias False, tie_weights False), AdamW")
    modern = train_tab.model_config(form(preset="classroom-modern", **EVERY_SWITCH), 300)
    assert modern.to_dict() == {**PRESETS["classroom-modern"].to_dict(), "vocab_size": 300}  # a preset is whole
    assert set(train_tab.MODEL_PRESETS) >= {"classroom-modern", "tiny-modern", "shipped-small-modern"}


@pytest.mark.parametrize("changes, message", [
    (dict(n_kv_heads=3), r"^n_heads \(4\) must be divisible by n_kv_heads \(3\)$"),
    (dict(positions="rotary", emb_dim=36), r"^rotary positions .* must be even$"),
    (dict(mlp="swiglu", mlp_hidden=0), r"^MLP hidden width \(mlp_hidden\) must be between 1 and 65536, got 0\.$"),
    (dict(norm="batchnorm"), r"^Normalisation \(norm\) must be one of layernorm, rmsnorm, got 'batchnorm'$"),
    (dict(qk_norm="yes"), r"^QK-norm \(qk_norm\) must be true or false, got 'yes'\.$"),
    (dict(optimizer="sgd"), r"^Optimizer must be one of adamw, muon, got 'sgd'$"),
    (dict(compare=True, b_preset="custom", b_n_kv_heads=3),
     r"^Second recipe: n_heads \(4\) must be divisible by n_kv_heads \(3\)$"),
])
def test_an_impossible_combination_is_one_line_naming_the_fields_and_starts_nothing(runner, monkeypatch, changes,
                                                                                    message):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built for an impossible recipe")

    monkeypatch.setattr(recipes, "GPTModel", no_model)
    for action in (lambda f: train_tab.check_model(runner, f),
                   lambda f: train_tab.start_training(runner, None, f, request=session("alice"))):
        with pytest.raises(ValueError, match=message):
            action(form(**changes))
    assert runner.job_of("alice") is None and not runner.limits.runs_dir.exists()


def test_the_check_fits_the_steps_to_the_measured_rate(runner, monkeypatch):
    """Rates are injected, not timed: the first recipe fills 90% of the budget, the second sees as many tokens."""
    rates = {"adamw": 0.25, "muon": 0.5}
    monkeypatch.setattr(train_tab, "run_limited", lambda fn, cfg, **limits: rates[cfg.optimizer])  # the probe's child
    info = train_tab.check_model(runner, form(fit_steps=True, minutes=3, compare=True, b_preset="tiny",
                                              b_optimizer="muon"))
    assert "**250 ms per step**" in info and "**648 steps**" in info  # 0.9 * 180 s / 0.25 s
    assert "The same 41,472 tokens: 162 steps, about 81 s" in info  # tiny's context is 64: 648 * 16 / 64 steps


def step(n: int, elapsed: float, total: int = 100) -> TrainEvent:
    return TrainEvent("step", n, total, n * 64,
                      metrics={"train_loss": 5.0, "tokens_per_s": 100.0, "elapsed_s": elapsed})


def test_time_left_is_the_steps_left_at_the_recent_rate():
    job = Job("id", "alice", "run", print, {"plans": [None, None], "time_limit_s": 1.0})
    marker = TrainEvent("start", 0, 100, text="classroom, AdamW",
                        metrics={"recipe": 0, "seconds_per_step": 0.2, "later_s": 300.0})
    job.events = [marker]
    assert train_tab.progress_line(job).startswith("**A: classroom, AdamW.** Measured **200 ms per step** here: "
                                                   "100 steps, about 20 s.")
    job.events = [marker, step(1, 0.3)]  # one step: the measured rate
    assert "about 20 s left (200 ms per step lately). Then the second recipe: about 5.0 min." in \
        train_tab.progress_line(job)
    job.events = [marker] + [step(n, 10 + n * 0.5) for n in range(1, 41)]  # 60 steps left at 0.5 s: the wall clock
    assert "Step **40 / 100**" in train_tab.progress_line(job)           # limit (1 s) plays no part
    assert "about 30 s left (500 ms per step lately)" in train_tab.progress_line(job)
    refit = TrainEvent("refit", 40, 70, text="the machine slowed: the schedule now ends at step 70")
    job.events += [refit, step(41, 30.5, total=70)]  # the trainer cut its schedule: the line says so, and why
    assert "Step **41 / 70**" in train_tab.progress_line(job)
    assert "The machine slowed: the schedule now ends at step 70, so that its learning rate still decays in time." \
        in train_tab.progress_line(job)


@pytest.mark.slow
def test_two_recipes_train_on_the_same_tokens_and_show_side_by_side(runner, registry):  # noqa: F811
    line, _ = train_tab.start_training(runner, None, form(max_steps=30, compare=True, b_preset="custom",
                                                          b_positions="rotary", b_norm="rmsnorm", b_optimizer="muon"),
                                       request=session("alice"))
    assert "then custom (positions rotary, norm rmsnorm), Muon as run:" in line
    job = runner.job_of("alice")
    assert job.target is recipes.train_recipes  # the library's: the training process imports no Gradio
    assert runner.wait(job, WAIT_S) and job.state == "done", job.error
    first, second = job.result.runs
    assert first.tokens_seen == second.tokens_seen == 30 * 4 * 16 and job.result.finished
    line, figure, samples, result, _, picker = train_tab.status(runner, registry, None, request=session("alice"))
    assert [t.name for t in figure.data] == ["A: train", "A: validation (held out)", "B: train",
                                             "B: validation (held out)"]
    assert list(figure.data[0].x) == list(figure.data[2].x)  # the same tokens
    seconds = train_tab.status(runner, registry, None, "seconds", request=session("alice"))[1]
    assert seconds.layout.xaxis.title.text == "seconds of training" and seconds.data[2].x[-1] > 0
    assert set(samples["recipe"]) == {"A", "B"}
    names = [RUN_PREFIX + job.name, RUN_PREFIX + job.name + train_tab.SECOND_RUN]
    assert all(name in result and name in choices(picker) for name in names)
    assert "xz -9" in result and f"| {second.held_out_bits_per_byte:.3f}" not in result
    assert f"**{second.held_out_bits_per_byte:.3f}**" in result and "| 30 | 1,920 |" in result


@pytest.mark.slow
def test_a_resumed_comparison_does_not_train_a_finished_recipe_again(runner, registry):  # noqa: F811
    train_tab.start_training(runner, None, form(max_steps=10, compare=True, b_preset="tiny"), request=session("alice"))
    job = runner.job_of("alice")
    while not any(e.kind == "start" and e.metrics.get("recipe") == 1 for e in job.events):  # the second began
        assert job.active, job.error
        runner.wait(job, 0.1)
    train_tab.stop_training(runner, None, request=session("alice"))
    assert runner.wait(job, WAIT_S) and job.state == "stopped" and not job.result.finished
    first = job.result.runs[0]
    assert first.finished and "Resuming" in train_tab.resume_training(runner, None, request=session("alice"))
    resumed = runner.job_of("alice")
    assert runner.wait(resumed, WAIT_S) and resumed.state == "done", resumed.error
    assert [e.metrics["recipe"] for e in resumed.events if "recipe" in e.metrics] == [1]  # only the second trained
    assert resumed.result.runs[0] == first and resumed.result.runs[1].finished and resumed.result.finished
