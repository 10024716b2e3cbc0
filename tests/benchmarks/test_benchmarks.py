"""The benchmarks run and compare like with like (no timing is asserted)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from benchmarks import inference, speedrun, train_app, training
from benchmarks.common import format_table, hf_model
from gpt.config import GPTConfig
from gpt.model import GPTModel
from gpt.pretrain.recipes import fitted_steps
from gpt.tokenizer import load_tokenizer
from gpt.training.loss import lm_loss
from gpt.training.optim import training_step
from tests.helpers import STORY


@pytest.mark.parametrize("preset", ["tiny", "shipped-small"])
def test_the_reference_has_our_shape_and_parameter_count(preset):
    cfg = GPTConfig.preset(preset)
    assert sum(p.numel() for p in hf_model(cfg).parameters()) == GPTModel(cfg).n_params()


def test_training_and_inference_benchmarks_report_both_implementations():
    rows = training.run_benchmarks(workloads=(("tiny", 2, 16),), repeats=1)
    assert [r["workload"] for r in rows] == ["tiny 2x16"] and rows[0]["ours"] > 0 and rows[0]["transformers"] > 0
    assert "| tiny 2x16 | 0.1M |" in format_table(rows, "title", digits=0) and rows[0]["flops_per_token"] > 0
    for precision in ("float32", "int8"):
        rows, n_bytes, bandwidth = inference.run_benchmarks("tiny", precision, repeats=1, prefill_len=16,
                                                            prompt_len=4, new_tokens=4, probe_bytes=2**20)
        assert [r["workload"] for r in rows] == ["prefill 1x16", "prefill 8x16", "decode 4+4 (KV cache)"]
        assert all(r["ours"] > 0 and r["transformers"] > 0 for r in rows) and n_bytes > 0 and bandwidth > 0
        assert all(set(r) == {"workload", "ours", "transformers", "ratio"} for r in rows)  # the probe is no row
        line = inference.bandwidth_line(rows, n_bytes, bandwidth=1e10)
        assert f"allows {1e10 / n_bytes:.1f} decode tokens/s" in line and "ours" in line



def test_training_flops_count_six_per_weight_plus_attention():
    from benchmarks.machine import training_flops_per_token

    cfg = GPTConfig.preset("gpt2-small")
    weights = 12 * 12 * 768**2 + 768 * 50257  # the blocks' products and the output head
    assert training_flops_per_token(cfg, 1024) == 6 * weights + 12 * 12 * 768 * 1024


def test_a_few_training_steps_of_each_lower_its_loss():
    torch.manual_seed(0)
    cfg = GPTConfig.preset("tiny", drop_rate=0.0)
    batch = torch.randint(0, cfg.vocab_size, (2, 17))
    ours, reference = GPTModel(cfg), hf_model(cfg)
    for model, logits_of in ((ours, ours), (reference, lambda x: reference(x).logits)):
        def loss(logits_of=logits_of) -> float:
            return lm_loss(logits_of(batch[:, :-1]), batch[:, 1:]).item()

        before = loss()
        step = training_step(model, logits_of, batch, "float32")
        for _ in range(3):
            step()
        assert loss() < before


def test_the_speedrun_interpolates_where_a_curve_first_reaches_the_target():
    points = [(100, 10.0, 5.0), (200, 20.0, 4.0), (300, 30.0, 3.0)]
    assert speedrun.crossing(points, 3.5) == (250.0, 25.0)
    assert speedrun.crossing(points, 4.0) == (200.0, 20.0)
    assert speedrun.crossing(points, 2.0) is None


@pytest.mark.slow
def test_a_tiny_speedrun_trains_every_recipe_on_the_same_tokens_and_reports_their_ratios(tmp_path):
    tokenizer = load_tokenizer(str(speedrun.TOKENIZER))
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune. " * 60
    recipes = [speedrun.RECIPES["gpt2-adamw"], speedrun.RECIPES["modern-muon"]]
    report = speedrun.speedrun(recipes, "tiny", 8 * 64 * 8, 8, 4, 4, tmp_path, [text], [text[:3000]], tokenizer)
    first, second = (report["recipes"][r.name] for r in recipes)
    assert first["tokens"] == second["tokens"] == 8 * 64 * 8 and len(first["curve"]) == len(second["curve"]) == 4
    assert first["reaches_target"]["token_ratio"] == 1.0  # the reference reaches its own final loss at its end
    assert first["curve"][-1][2] < first["curve"][0][2] and second["curve"][-1][2] < second["curve"][0][2]
    table = speedrun.format_table(report, xz=2.0)
    assert "| gpt2-adamw |" in table and "| modern-muon |" in table
    assert "`xz -9` after the training text: 2.000" in table


@pytest.mark.slow
def test_the_train_app_benchmark_runs_the_tab_as_it_opens_with_steps_fitted_to_a_measured_step(tmp_path):
    """Part 2 on the tab's defaults, made tiny: the steps are those fitted to the rate its training process measured."""
    tiny = replace(train_app.DEFAULTS, corpora=[], pasted=STORY, vocab_size=300, preset="custom", n_layers=2,
                   emb_dim=32, context_length=16, batch_size=4, warmup_steps=5, minutes=0.1)
    run, measured = train_app.tab_run(tiny, tmp_path)
    assert run.max_steps == fitted_steps(60 * tiny.minutes, measured, train_app.TrainLimits().max_steps)
    assert 0 < run.steps <= run.max_steps and run.tokens_seen == run.steps * 4 * 16
    assert run.held_out_bits_per_byte > 0 and "xz -9 (after the training text)" in run.baselines
