"""GRPO: advantages, the clipped loss and the KL term by hand; bad input, stop and resume; a toy that learns."""

from __future__ import annotations

import argparse
import math
import shlex
from dataclasses import replace

import pytest
import torch

from gpt.checkpoint import load_checkpoint
from gpt.cli import rl as rl_cli
from gpt.cli.options import config_overrides
from gpt.reasoning.grpo import (
    RL_PRESETS,
    NoRewardError,
    RLConfig,
    finetune_rl,
    group_advantages,
    grpo_loss,
    kl_to_reference,
    reply_batch,
    reward,
    training_problems,
)
from gpt.reasoning.problems import EASY_KINDS, Problem
from gpt.reasoning.sampling import Sample
from gpt.reasoning.state import STATE_FILE
from gpt.training.events import TrainingMonitor

TOY = [Problem(f"What is {a} + {b}?", a + b, "sum", f"add:{a}+{b}") for a, b in ((1, 2), (2, 3), (3, 4), (1, 3))]
QUICK = RLConfig(task="sum", steps=4, problems_per_step=2, group_size=8, max_new_tokens=1, lr=1e-3, eval_problems=0,
                 eval_every=0, checkpoint_every=0, give_up_after=1000, format_reward=1.0, seed=3)


def test_advantages_sum_to_zero_per_group_and_equal_rewards_give_zeros():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.1, 0.1], [1.1, 0.1, 0.0, 0.0]])
    advantages = group_advantages(rewards)
    assert torch.allclose(advantages.sum(dim=1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(advantages[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-5)  # (r - 0.5) / 0.5
    assert torch.equal(advantages[1], torch.zeros(4))  # exactly, though the mean of four 0.1 is not exactly 0.1
    assert advantages[2].argmax() == 0


def test_rehearsal_mixes_the_known_families_into_the_training_problems():
    """A `rehearse` share of the problems is of the easy families, every one a training problem; the task's own
    problems are those of a run without rehearsal; an easy task rehearses nothing."""
    plain = training_problems(RLConfig(task="two_step", train_problems=100))
    mixed = training_problems(RLConfig(task="two_step", train_problems=100, rehearse=0.4))
    assert [p.kind for p in plain] == ["two_step"] * 100
    assert [p.kind for p in mixed[:60]] == ["two_step"] * 60 and {p.kind for p in mixed[60:]} == set(EASY_KINDS)
    assert len(mixed) == 100 and len({p.key for p in mixed}) == 100
    assert mixed[:60] == training_problems(RLConfig(task="two_step", train_problems=60))
    assert len(training_problems(RLConfig(task="two_step", train_problems=1, rehearse=0.9))) == 1  # the task's one
    assert {p.kind for p in training_problems(RLConfig(task="easy", train_problems=40, rehearse=0.5))} == set(
        EASY_KINDS)
    with pytest.raises(ValueError, match="rehearse"):
        RLConfig(rehearse=1.0)


def test_reward_is_correctness_plus_the_format_bonus():
    assert reward("7", 7, 0.1) == pytest.approx(1.1)
    assert reward("The answer is 7.", 7, 0.1) == 1.0
    assert reward("8", 7, 0.1) == pytest.approx(0.1)
    assert reward("no", 7, 0.1) == 0.0


def hand_example():
    ratios = torch.tensor([[1.5, 0.9], [0.5, 1.0]])
    logps = torch.log(ratios)  # against old log-probs of 0
    return logps, torch.zeros(2, 2), torch.tensor([1.0, -1.0]), torch.tensor([[True, True], [True, False]])


def test_clipped_objective_equals_the_hand_computed_value():
    """A = +1: ratio 1.5 is clipped to 1.2, 0.9 stays; A = -1: ratio 0.5 gives min(-0.5, -0.8) = -0.8; the last
    token is masked. Objective (1.2 + 0.9 - 0.8) / 3; the loss is its negative; 2 of 3 tokens clipped."""
    logps, old, advantages, mask = hand_example()
    parts = grpo_loss(logps, old, advantages, mask, clip_eps=0.2)
    assert parts.loss.item() == pytest.approx(-1.3 / 3, abs=1e-6)
    assert parts.clipped == pytest.approx(2 / 3) and parts.kl == 0.0


def test_kl_term_is_the_hand_computed_estimate():
    """r = ref - new = -log(ratio) with a reference of 0: KL = 1/ratio + log(ratio) - 1 on each kept token."""
    logps, old, advantages, mask = hand_example()
    expected = [1 / x + math.log(x) - 1 for x in (1.5, 0.9, 0.5)]
    parts = grpo_loss(logps, old, advantages, mask, clip_eps=0.2, ref_logps=torch.zeros(2, 2), kl_coef=0.1)
    assert parts.kl == pytest.approx(sum(expected) / 3, abs=1e-6)
    assert parts.loss.item() == pytest.approx(-1.3 / 3 + 0.1 * sum(expected) / 3, abs=1e-6)
    assert kl_to_reference(torch.zeros(3), torch.zeros(3)).abs().max() == 0


def test_loss_gradient_pushes_a_good_reply_up_and_a_bad_one_down():
    logps = torch.zeros(2, 1, requires_grad=True)
    grpo_loss(logps, torch.zeros(2, 1), torch.tensor([1.0, -1.0]), torch.ones(2, 1, dtype=torch.bool), 0.2
              ).loss.backward()
    assert logps.grad[0, 0] < 0 < logps.grad[1, 0]  # descent raises the first reply's log-prob, lowers the second's


def test_reply_batch_masks_the_prompt_and_keeps_the_stop_token():
    inputs, targets, mask = reply_batch([[5, 6, 7], [5, 6]], [Sample([8, 9], "", [], True), Sample([8], "", [], False)],
                                        pad_id=0)
    assert inputs.tolist() == [[5, 6, 7, 8, 9], [5, 6, 0, 0, 0]]
    assert targets.tolist() == [[6, 7, 8, 9, 0], [6, 8, 0, 0, 0]]
    assert mask.tolist() == [[False, False, True, True, True], [False, True, False, False, False]]


@pytest.mark.parametrize("field", [{"group_size": 0}, {"group_size": 1}, {"group_size": 5000}, {"steps": 0},
                                   {"problems_per_step": 0}, {"task": "cubes"}, {"clip_eps": 0.0}])
def test_config_refuses_out_of_bounds_values(field):
    with pytest.raises(ValueError):
        RLConfig(**field)


def test_presets_are_valid_configs():
    assert set(RL_PRESETS) >= {"shipped"} and all(isinstance(c, RLConfig) for c in RL_PRESETS.values())


def test_an_empty_problem_set_is_refused(make_checkpoint):
    with pytest.raises(ValueError, match="the problem set is empty"):
        finetune_rl(make_checkpoint(), QUICK, problems=[])


def test_a_reward_never_positive_stops_the_run_with_a_message(make_checkpoint, tmp_path):
    impossible = [Problem("What is 1 + 2?", 987654, "sum", "add:1+2")]
    cfg = replace(QUICK, give_up_after=2, steps=10)
    with pytest.raises(NoRewardError, match=r"no sampled reply was right in the first 2 steps \(32 replies\)"):
        finetune_rl(make_checkpoint(), cfg, tmp_path / "out", problems=impossible)
    assert not (tmp_path / "out" / STATE_FILE).exists()


def test_resume_after_a_stop_equals_an_uninterrupted_run(make_checkpoint, tmp_path):
    whole = make_checkpoint()
    result = finetune_rl(whole, QUICK, tmp_path / "whole", problems=TOY)
    assert any(h["groups_learning"] > 0 for h in result.history), "the toy gave no signal: nothing was compared"

    monitor = TrainingMonitor()
    monitor.listeners.append(lambda e: e.kind == "step" and e.step == 2 and monitor.request_stop())
    stopped = finetune_rl(make_checkpoint(), QUICK, tmp_path / "run", monitor, problems=TOY)
    assert stopped.stopped and stopped.steps == 2 and (tmp_path / "run" / STATE_FILE).is_file()
    resumed = finetune_rl(make_checkpoint(), QUICK, tmp_path / "run", problems=TOY, resume=True)
    assert resumed.steps == 4 and resumed.resumed_from == 2 and not resumed.stopped
    assert resumed.history == result.history
    resumed_weights = load_checkpoint(tmp_path / "run").model.state_dict()
    expected = load_checkpoint(tmp_path / "whole").model.state_dict()
    assert all(torch.equal(resumed_weights[k], expected[k]) for k in expected)


def test_resume_refuses_other_settings_or_other_starting_weights(make_checkpoint, tmp_path):
    finetune_rl(make_checkpoint(), replace(QUICK, steps=1), tmp_path / "run", problems=TOY)
    with pytest.raises(ValueError, match="other settings"):
        finetune_rl(make_checkpoint(), replace(QUICK, lr=5e-4), tmp_path / "run", problems=TOY, resume=True)
    other = make_checkpoint()
    with torch.no_grad():
        other.model.tok_emb.weight.add_(0.01)
    with pytest.raises(ValueError, match="other starting weights"):
        finetune_rl(other, QUICK, tmp_path / "run", problems=TOY, resume=True)
    (tmp_path / "run" / STATE_FILE).write_bytes(b"not a state")
    with pytest.raises(ValueError, match="damaged"):
        finetune_rl(make_checkpoint(), QUICK, tmp_path / "run", problems=TOY, resume=True)


def test_events_report_reward_kl_accuracy_and_length(make_checkpoint, tmp_path):
    events = []
    cfg = replace(QUICK, steps=2, eval_every=1, checkpoint_every=1)
    finetune_rl(make_checkpoint(), cfg, tmp_path / "out", TrainingMonitor(events.append), problems=TOY,
                held_out=TOY[:2])
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "checkpoint" in kinds and "sample" in kinds
    step = next(e for e in events if e.kind == "step")
    assert {"train_loss", "reward", "accuracy", "well_formed", "kl", "reply_tokens"} <= step.metrics.keys()
    assert [e.step for e in events if e.kind == "eval"] == [0, 1, 2]
    assert "held_out_accuracy" in next(e for e in events if e.kind == "eval").metrics
    saved = load_checkpoint(tmp_path / "out")
    assert saved.meta["rl"]["group_size"] == 8 and saved.meta["steps"] == 2


@pytest.mark.slow
def test_a_short_run_raises_the_reward_on_a_toy_task(make_checkpoint):
    """A tiny random model, four fixed sums, rewarded for a right answer: the share right climbs."""
    cfg = replace(QUICK, steps=60, problems_per_step=4, group_size=16, lr=1e-2, format_reward=0.1, kl_coef=0.0)
    result = finetune_rl(make_checkpoint(), cfg, problems=TOY)
    first, last = (sum(h["accuracy"] for h in part) / len(part) for part in (result.history[:5], result.history[-5:]))
    assert last > first + 20, (first, last)


@pytest.mark.parametrize("source", [None, "runs/app/run-1/model"], ids=["cli", "app"])
def test_a_saved_run_has_a_card_whose_command_runs_the_same_settings(make_checkpoint, tmp_path, source):
    """The card: start, held-out accuracy by step, the first and last steps' figures, every setting, and a
    command line that the CLI reads back into these very settings. A run the app started names its start by
    the app's name in the title, and by its folder (what `--model` takes) in the command."""
    cfg = replace(QUICK, steps=2, rehearse=0.25)
    meta = {"base_model": "instruct"} if source is None else {"base_model": "run:abc123", "base_source": source}
    finetune_rl(make_checkpoint(), cfg, tmp_path / "out", meta=meta, problems=TOY, held_out=TOY[:2])
    card = (tmp_path / "out" / "MODEL_CARD.md").read_text()
    assert card.startswith(f"# GRPO: sum from `{meta['base_model']}`") and "all 2 steps" in card
    assert "25% share" in card and "| 0 |" in card and "| 2 |" in card and "| rehearse | 0.25 |" in card
    command = card.split("Run it again: `")[1].split("`")[0]
    parser = argparse.ArgumentParser()
    rl_cli.add_arguments(parser)
    args = parser.parse_args(shlex.split(command)[4:])
    assert args.model == (source or "instruct") and args.out == tmp_path / "out"
    assert replace(RL_PRESETS["shipped"], **config_overrides(args, RLConfig)) == cfg

