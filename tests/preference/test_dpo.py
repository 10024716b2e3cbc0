"""DPO: response-only log-probabilities, the loss, a frozen reference, training, evaluation and the saved run."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from gpt.checkpoint import WEIGHTS_FILE, load_checkpoint
from gpt.instruct.prompt import format_prompt
from gpt.preference import dpo
from gpt.preference.dpo import (
    PREFERENCE_PRESETS,
    PreferenceConfig,
    collate_pairs,
    dpo_loss,
    evaluate_preferences,
    finetune_preference,
    frozen_copy,
    make_pair_loader,
    pair_logprobs,
    reward_table,
    score_batch,
    sequence_logprobs,
)
from gpt.training.events import TrainingMonitor
from gpt.training.loss import IGNORE_INDEX

CFG = PreferenceConfig(epochs=1, batch_size=4, lr=3e-3, beta=0.5)


def test_dpo_loss_by_hand():
    loss, chosen, rejected = dpo_loss(torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -2.0]),
                                      torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0]), beta=0.5)
    assert chosen.tolist() == [0.5, -1.0] and rejected.tolist() == [-0.5, 0.0]
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0))) / 2  # -logsigmoid of margins 1 and -1
    assert loss.item() == pytest.approx(expected)
    assert not chosen.requires_grad


def test_the_loss_is_log_2_when_the_policy_is_the_reference(pairs, make_checkpoint):
    checkpoint = make_checkpoint()
    batch = next(iter(make_pair_loader(pairs, checkpoint.tokenizer, 128, 4, shuffle=False)))
    scores = score_batch(checkpoint.model, frozen_copy(checkpoint.model), batch, beta=0.1)
    assert scores.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert scores.chosen_rewards.abs().max() < 1e-6 and scores.rejected_rewards.abs().max() < 1e-6


def test_only_response_tokens_count(pairs, make_checkpoint):
    checkpoint = make_checkpoint()
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    pair = pairs[1]  # the rude answer is longer than the chosen one: the chosen row is padded
    prompt = tokenizer.encode(format_prompt(pair))
    chosen, rejected = tokenizer.encode(pair["chosen"]), tokenizer.encode(pair["rejected"])
    inputs, targets = collate_pairs([(prompt + chosen, prompt + rejected, len(prompt))], tokenizer.eot_id)
    assert (targets[:, : len(prompt) - 1] == IGNORE_INDEX).all()  # predicting the prompt: masked
    assert (targets[0, len(prompt) + len(chosen):] == IGNORE_INDEX).all()  # the padding after its end-of-text
    with torch.no_grad():
        logps = sequence_logprobs(model, (inputs, targets))
        for row, response in enumerate((chosen, rejected)):  # by hand: each response token and the end-of-text
            ids = prompt + response + [tokenizer.eot_id]
            logits = model(torch.tensor([ids[:-1]]))[0].log_softmax(-1)
            by_hand = sum(logits[i, ids[i + 1]] for i in range(len(prompt) - 1, len(ids) - 1))
            assert logps[row].item() == pytest.approx(by_hand.item(), abs=1e-4)
        alone = collate_pairs([(prompt + chosen, prompt + chosen, len(prompt))], tokenizer.eot_id)
        assert sequence_logprobs(model, alone)[0].item() == pytest.approx(logps[0].item(), abs=1e-5)  # no padding
        wrong_prompt_target = targets.clone()
        wrong_prompt_target[:, 0] = IGNORE_INDEX  # was masked already: nothing changes
        assert torch.equal(sequence_logprobs(model, (inputs, wrong_prompt_target)), logps)
        other = collate_pairs([(prompt + chosen[:-1] + [chosen[-1] + 1], prompt + rejected, len(prompt))],
                              tokenizer.eot_id)
        assert sequence_logprobs(model, other)[0].item() != pytest.approx(logps[0].item(), abs=1e-4)


@pytest.mark.slow
def test_the_reference_gets_no_gradient_and_does_not_move(pairs, make_checkpoint, monkeypatch):
    checkpoint = make_checkpoint()
    start = {k: v.clone() for k, v in checkpoint.model.state_dict().items()}
    references = []
    monkeypatch.setattr(dpo, "frozen_copy", lambda model: references.append(frozen_copy(model)) or references[-1])
    finetune_preference(checkpoint, pairs, [], PreferenceConfig(epochs=1, batch_size=4, lr=1e-2, max_pairs=8))
    (reference,) = references
    assert all(p.grad is None and not p.requires_grad for p in reference.parameters())
    assert all(torch.equal(reference.state_dict()[k], v) for k, v in start.items())
    assert not all(torch.equal(checkpoint.model.state_dict()[k], v) for k, v in start.items())  # the policy moved


@pytest.mark.slow
def test_training_lowers_the_loss_and_raises_the_reward_accuracy(pairs, make_checkpoint):
    checkpoint = make_checkpoint()
    reference = frozen_copy(checkpoint.model)
    events = []
    result = finetune_preference(checkpoint, pairs[:8], pairs[:8], PreferenceConfig(epochs=4, batch_size=4, lr=3e-3,
                                 beta=0.5, eval_every=1), monitor=TrainingMonitor(events.append))
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == result.steps == 8 and steps[0].metrics["train_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert result.train_losses[-1] < result.train_losses[0] < math.log(2)
    assert {"reward_margin", "reward_accuracy", "chosen_logp", "rejected_logp"} <= set(steps[-1].metrics)
    assert steps[0].metrics["reward_accuracy"] == 0 and steps[-1].metrics["reward_accuracy"] == 100
    assert len([e for e in events if e.kind == "eval"]) == 4  # steps 1 of each epoch; step 2 ends it
    assert result.val[-1]["val_reward_accuracy"] == 100 and result.val[-1]["val_reward_margin"] > 0
    after = evaluate_preferences(checkpoint.model, reference, checkpoint.tokenizer, pairs[:8], beta=0.5)
    assert after["reward_accuracy"] == 100 and after["loss"] < math.log(2)


def test_evaluation_before_tuning_and_per_kind(pairs, make_checkpoint):
    checkpoint = make_checkpoint()
    report = evaluate_preferences(checkpoint.model, checkpoint.model, checkpoint.tokenizer, pairs, batch_size=7)
    assert report["n"] == 30 and report["reward_accuracy"] == 0 and report["reward_margin"] == 0
    assert report["loss"] == pytest.approx(math.log(2))
    assert set(report["by_how"]) == {"rambling", "impolite"} and report["by_how"]["impolite"]["n"] == 15
    assert 0 <= report["prefers_chosen"] <= 100 and report["chosen_logp"] < 0
    table = reward_table(report, report)
    assert "| all | 30 | 0.0 | **0.0** |" in table and "| impolite | 15 |" in table


def test_pair_logprobs_are_the_batch_figures(pairs, make_checkpoint):
    checkpoint = make_checkpoint()
    pair = pairs[0]
    figures = pair_logprobs(checkpoint.model, checkpoint.tokenizer, pair, pair["chosen"], pair["rejected"])
    report = evaluate_preferences(checkpoint.model, checkpoint.model, checkpoint.tokenizer, [pair])
    assert figures["chosen"] == pytest.approx(report["chosen_logp"], abs=1e-5)
    assert figures["rejected"] == pytest.approx(report["rejected_logp"], abs=1e-5)
    assert figures["chosen_tokens"] == len(checkpoint.tokenizer.encode(pair["chosen"])) + 1  # and the end-of-text


@pytest.mark.slow
def test_the_run_is_saved_with_what_made_it_and_a_stop_keeps_the_weights(pairs, make_checkpoint, tmp_path):
    checkpoint = make_checkpoint()
    result = finetune_preference(checkpoint, pairs, pairs[:4], CFG, tmp_path / "dpo", meta={"base_model": "tiny"})
    meta = load_checkpoint(tmp_path / "dpo").meta
    assert meta["base_model"] == "tiny" and meta["preference"]["beta"] == 0.5 and meta["steps"] == result.steps == 7
    assert meta["pairs"] == {"rambling": 15, "impolite": 15} and len(meta["val"]) == 1
    assert all(t.dtype == torch.bfloat16 for t in load_file(tmp_path / "dpo" / WEIGHTS_FILE).values())
    monitor = TrainingMonitor()
    monitor.listeners.append(lambda e: e.kind == "step" and e.step == 2 and monitor.request_stop())
    stopped = finetune_preference(make_checkpoint(), pairs, [], CFG, tmp_path / "stopped", monitor=monitor)
    assert stopped.stopped and stopped.steps == 2 and load_checkpoint(tmp_path / "stopped").meta["stopped"]


def test_config_checks_and_presets():
    assert PREFERENCE_PRESETS["shipped"].beta == 0.5 and PREFERENCE_PRESETS["gpt2"].lr == 5e-6
    for bad in ({"beta": 0}, {"lr": -1.0}, {"epochs": 0}, {"max_pairs": 0}, {"eval_every": -1}, {"autocast": "fp8"}):
        with pytest.raises(ValueError):
            PreferenceConfig(**bad)


def test_too_few_pairs_for_a_batch(pairs, make_checkpoint):
    with pytest.raises(ValueError, match="3 training pairs make no full batch of 4"):
        finetune_preference(make_checkpoint(), pairs[:3], [], CFG)
