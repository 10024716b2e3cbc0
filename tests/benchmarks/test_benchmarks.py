"""The benchmarks run and compare like with like (no timing is asserted)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from benchmarks import inference, speedrun, train_app, training
from benchmarks.common import format_table, hf_model
from gpt.config import GPTConfig
from gpt.model import GPTModel
from gpt.open_models import CATALOGUE
from gpt.pretrain.recipes import fitted_steps
from gpt.tokenizer import load_tokenizer
from gpt.training.loss import lm_loss
from gpt.training.optim import training_step
from tests.helpers import STORY


@pytest.mark.parametrize("preset", ["tiny", "shipped-small"])
def test_the_reference_has_our_shape_and_parameter_count(preset):
    cfg = GPTConfig.preset(preset)
    assert sum(p.numel() for p in hf_model(cfg).parameters()) == GPTModel(cfg).n_params()


@pytest.mark.parametrize("switch", [{"positions": "rotary"}, {"norm": "rmsnorm"}, {"n_kv_heads": 2}, {"bias": False},
                                    {"mlp_hidden": 100}])
def test_the_reference_is_refused_for_a_model_gpt2_is_not(switch):
    """A GPT-2 of the same widths is a different model: timing it beside ours would compare unlike things."""
    with pytest.raises(ValueError, match=f"differs from it in {next(iter(switch))}.*--no-hf"):
        hf_model(replace(GPTConfig.preset("tiny"), **switch))


def test_gpt2_widths_written_out_are_still_gpt2():
    cfg = GPTConfig.preset("tiny")
    same = replace(cfg, n_kv_heads=cfg.n_heads, mlp_hidden=4 * cfg.emb_dim, head_width=cfg.emb_dim // cfg.n_heads)
    assert sum(p.numel() for p in hf_model(same).parameters()) == GPTModel(same).n_params()


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


def tiny_open_shape(name: str) -> dict:
    """The catalogue's config.json for `name`, shrunk to a few thousand weights; what sets its family apart kept
    (Qwen3's QK-norm and heads wider than hidden / heads, grouped-query attention, a tied head)."""
    hub = CATALOGUE[name].hub_config
    wide = hub["head_dim"] * hub["num_attention_heads"] != hub["hidden_size"]
    return {**hub, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 96, "vocab_size": 320, "head_dim": 32 if wide else 16}


@pytest.mark.parametrize("name", ["smollm2-135m", "qwen3-0.6b"])
def test_open_model_shapes_are_timed_beside_transformers_own_class(name, tmp_path):
    results = inference.run_open_model(tiny_open_shape(name), repeats=1, prefill_len=12, prompt_len=4, new_tokens=6,
                                       probe_bytes=2**20, workdir=tmp_path)
    assert [r.precision for r in results] == ["float32", "bfloat16", "int8"]
    for r in results:
        assert [row["workload"] for row in r.rows] == ["prefill 1x12", "decode 4+6 (KV cache)"]
        assert all(set(row) == {"workload", "ours", "transformers", "ratio"} for row in r.rows)
        assert all(row["ours"] > 0 and row["transformers"] > 0 for row in r.rows)
        assert r.weight_bytes > 0 and r.kv_bytes > 0 and r.bandwidth > 0 and set(r.greedy_equal) == {"ours",
                                                                                                   "transformers"}
        assert "KV cache" in inference.bandwidth_line(r.rows, r.weight_bytes, r.bandwidth, r.kv_bytes)
        assert inference.greedy_line(r).endswith(f"ours {r.greedy_equal['ours']}/6, transformers "
                                                 f"{r.greedy_equal['transformers']}/6")
    assert results[0].greedy_equal == {"ours": 6, "transformers": 6}  # float32: the same tokens as transformers
    bytes_of = {r.precision: r.weight_bytes for r in results}
    assert bytes_of["int8"] < bytes_of["bfloat16"] < bytes_of["float32"]
    assert list(tmp_path.iterdir()) == []  # the saved folder is gone


def test_transformers_int8_is_its_dynamic_int8_and_the_kv_read_grows_with_the_run():
    hf = inference.hf_open_model(tiny_open_shape("smollm2-135m"))
    int8 = inference.hf_in_precision(hf, "int8")
    assert any("quantized.dynamic" in type(m).__module__ for m in int8.modules())
    assert inference.hf_in_precision(hf, "bfloat16").lm_head.weight.dtype == torch.bfloat16
    assert hf.lm_head.weight.dtype == torch.float32  # the float32 reference is untouched
    cfg = CATALOGUE["qwen3-0.6b"].config()
    # 28 layers, keys and values, 8 heads of 128: per position 2 * 28 * 1024 elements; 16 + 32/2 positions on average
    assert inference.kv_read_bytes(cfg, 16, 32, 2) == 2 * 28 * 1024 * 32 * 2
    assert inference.same_prefix([1, 2, 3], [1, 2, 4]) == 2 and inference.same_prefix([1, 2], [1, 2, 3]) == 2


def test_the_command_line_times_a_catalogue_shape(monkeypatch, capsys):
    entry = CATALOGUE["qwen3-0.6b"]
    monkeypatch.setitem(CATALOGUE, "qwen3-0.6b", replace(entry, hub_config=tiny_open_shape("qwen3-0.6b")))
    monkeypatch.setattr(inference, "memory_read", lambda n_bytes: torch.ones(2**16).sum)  # no 2 GB probe in a test
    assert inference.main(["--shape", "qwen3-0.6b", "--dtype", "float32", "--repeats", "1", "--prefill-len", "8",
                           "--prompt-len", "4", "--new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "qwen3-0.6b shape, random weights, float32 beside transformers float32" in out
    assert "| prefill 1x8 |" in out and "| decode 4+3 (KV cache) |" in out
    assert "greedy tokens equal to transformers float32 (leading tokens): ours 3/3, transformers 3/3" in out



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
    """Part 2 on the tab's defaults, made tiny: the steps are those fitted to the rate its training process measured
    (fewer if the machine slowed during the run: the schedule is then shortened, never lengthened)."""
    tiny = replace(train_app.DEFAULTS, corpora=[], pasted=STORY, vocab_size=300, preset="custom", n_layers=2,
                   emb_dim=32, context_length=16, batch_size=4, warmup_steps=5, minutes=0.1)
    run, measured = train_app.tab_run(tiny, tmp_path)
    assert run.max_steps <= fitted_steps(60 * tiny.minutes, measured, train_app.TrainLimits().max_steps)
    assert 0 < run.steps <= run.max_steps and run.tokens_seen == run.steps * 4 * 16
    assert run.held_out_bits_per_byte > 0 and "xz -9 (after the training text)" in run.baselines
