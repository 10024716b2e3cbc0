"""The Chat tab's pipeline: base in, a finetuned checkpoint with its held-out scores beside the base's out."""

from __future__ import annotations

import pytest

from gpt.checkpoint import read_config, save_checkpoint
from gpt.instruct.data import save_entries
from gpt.instruct.evaluate import format_base_comparison, load_model_eval
from gpt.instruct.finetune import InstructConfig
from gpt.instruct.runs import finetune_run, held_out_sample, of_families
from gpt.lora import ADAPTERS_CONFIG
from gpt.training.events import TrainingMonitor

CFG = InstructConfig(epochs=2, batch_size=4, lr=3e-3, autocast="float32", lora_rank=4, eval_every=2)


@pytest.fixture
def base(make_checkpoint, tmp_path):
    checkpoint = make_checkpoint(context_length=128)
    return str(save_checkpoint(checkpoint.model, tmp_path / "base", checkpoint.tokenizer))


@pytest.fixture
def data(entries, tmp_path):
    """120 entries in two task families."""
    tagged = [{**e, "task": "sum" if "+" in e["instruction"] else "words"} for e in entries * 4]
    return str(save_entries(tagged, tmp_path / "data.json.gz"))


def test_the_sample_spreads_over_the_task_families():
    entries = [{"instruction": f"q{i}", "input": "", "output": "a", "task": "ab"[i % 3 == 0]} for i in range(30)]
    sample = held_out_sample(entries, total=8)
    assert [e["task"] for e in sample].count("a") == 4 and [e["task"] for e in sample].count("b") == 4
    assert sample == [e for e in entries if e in sample]  # in order
    untagged = [{"instruction": f"q{i}", "input": "", "output": "a"} for i in range(30)]
    assert len(held_out_sample(untagged, total=8)) == 8


def test_the_families_picked_are_the_only_ones_trained_and_scored(base, data, tmp_path):
    entries = [{"instruction": f"q{i}", "input": "", "output": "a", "task": "abc"[i % 3]} for i in range(9)]
    assert [e["instruction"] for e in of_families(entries, ["a", "c"])] == ["q0", "q2", "q3", "q5", "q6", "q8"]
    assert of_families(entries, []) == entries
    with pytest.raises(ValueError, match="no entries of the families 'cooking'; the data has sum, words"):
        finetune_run(base, data, CFG, tmp_path / "run" / "model", families=["cooking"])
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_trains_saves_and_scores_the_model_beside_its_base(base, data, tmp_path):
    events = []
    result = finetune_run(base, data, CFG, tmp_path / "run" / "model", data_name="test data", max_train=40,
                          eval_questions=6, max_new_tokens=4, base_name="base", monitor=TrainingMonitor(events.append))
    assert result.steps == 2 * 10 and result.epochs_done == 2 and not result.stopped
    assert result.method == "LoRA rank 4 on all layers" and result.trainable_params < result.total_params
    assert len(result.epoch_seconds) == 2 and result.peak_memory_mb > 0
    kinds = [e.kind for e in events]
    assert kinds.count("eval") == 8  # validation losses at steps 2, 4, 6, 8 (10 is an epoch's end) per epoch
    report = load_model_eval(tmp_path / "run" / "model")
    n = report["n"]  # at most 3 of each family: the 12 test entries hold 3 or more sums, fewer words
    assert 3 < n <= 6 and report["tasks"]["sum"]["n"] == 3 and report["base"]["n"] == n
    assert set(result.scores) == set(result.base_scores) == {*report["tasks"], "all"}
    answered = [e for e in events if e.kind == "score"]
    assert [e.metrics["scored"] for e in answered] == [*range(1, n + 1)] * 2
    assert [e.metrics["base"] for e in answered] == [0.0] * n + [1.0] * n
    assert report["base"]["model"] == "base" and report["data"] == "test data" and report["n_train"] == 40
    table = format_base_comparison(report)
    assert "| task | held-out questions | base: base | this model |" in table and "| sum | 3 |" in table
    assert (tmp_path / "run" / "model" / ADAPTERS_CONFIG).is_file()
    assert read_config(tmp_path / "run" / "model")["meta"]["chat_turns"] == 0  # single questions: no earlier turns


@pytest.mark.slow
def test_a_run_stopped_before_its_first_step_keeps_nothing(base, data, tmp_path):
    monitor = TrainingMonitor()
    monitor.request_stop()
    assert finetune_run(base, data, CFG, tmp_path / "run" / "model", monitor=monitor) is None
    assert not (tmp_path / "run").exists()
