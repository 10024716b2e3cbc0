"""The benchmarks run and compare like with like (no timing is asserted)."""

from __future__ import annotations

import pytest
import torch

from benchmarks import inference, training
from benchmarks.common import format_table, hf_model
from gpt.config import GPTConfig
from gpt.model import GPTModel
from gpt.training.loss import lm_loss
from gpt.training.optim import training_step


@pytest.mark.parametrize("preset", ["tiny", "shipped-small"])
def test_the_reference_has_our_shape_and_parameter_count(preset):
    cfg = GPTConfig.preset(preset)
    assert sum(p.numel() for p in hf_model(cfg).parameters()) == GPTModel(cfg).n_params()


def test_training_and_inference_benchmarks_report_both_implementations():
    rows = training.run_benchmarks(workloads=(("tiny", 2, 16),), repeats=1)
    assert [r["workload"] for r in rows] == ["tiny 2x16"] and rows[0]["ours"] > 0 and rows[0]["transformers"] > 0
    assert "| tiny 2x16 | 0.1M |" in format_table(rows, "title", digits=0)
    rows = inference.run_benchmarks("tiny", repeats=1, prefill_len=16, prompt_len=4, new_tokens=4)
    assert [r["workload"] for r in rows] == ["prefill 1x16", "decode 4+4 (KV cache)"]
    assert all(r["ours"] > 0 and r["transformers"] > 0 for r in rows)


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
