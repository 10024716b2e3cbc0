"""Issue 36: work sized by a visitor's numbers (the preview's tokenizer, "Check the model"'s probe step) runs in a
child process under the job memory limit, never in the server; past the limit it is a one-line message."""

from __future__ import annotations

import dataclasses
import resource
from pathlib import Path

import pytest

from tests.helpers import STORY
from tests.ui.test_train_tab import TINY_RUN
from ui import jobs, train_tab
from ui.jobs import JobRunner, TrainLimits


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def allocate(mb: int) -> int:
    """In the child: hold `mb` MB (what a large probe does)."""
    import torch

    return int(torch.ones(mb * 2**18).sum())


def form(**changes) -> train_tab.TrainForm:
    return train_tab.TrainForm(**{**TINY_RUN, "pasted": STORY, "max_steps": 60, **changes})


@pytest.fixture
def limits(tmp_path) -> TrainLimits:
    return TrainLimits(runs_dir=tmp_path / "runs", max_memory_mb=1024, probe_seconds=120)


def test_the_limit_comes_from_the_setting_and_the_free_memory(monkeypatch, limits):
    monkeypatch.setenv("GPT_JOB_MAX_MEMORY_MB", "1500")
    assert TrainLimits.from_env().max_memory_mb == 1500
    monkeypatch.setattr(jobs, "free_memory_mb", lambda: 1000)
    assert jobs.memory_limit_mb(dataclasses.replace(limits, max_memory_mb=4096)) == 800  # 80% of what is free
    monkeypatch.setattr(jobs, "free_memory_mb", lambda: 100_000)
    assert jobs.memory_limit_mb(limits) == 1024


def test_a_child_past_its_memory_limit_is_a_message_and_the_server_does_not_grow(limits):
    assert jobs.run_limited(allocate, 64, limits=limits, what="A small job") == 64 * 2**18
    before = rss_mb()
    with pytest.raises(ValueError, match=r"^A large job: This ran past the memory limit of a job here \(1,024 MB"):
        jobs.run_limited(allocate, 3000, limits=limits, what="A large job")
    assert rss_mb() - before < 50
    soft = resource.getrlimit(resource.RLIMIT_DATA)[0]
    assert soft == resource.RLIM_INFINITY or soft > 2**40  # the server's own limit is untouched


def test_a_child_past_its_time_is_a_message(limits):
    import time

    with pytest.raises(ValueError, match=r"took longer than 0.5 s"):
        jobs.run_limited(time.sleep, 30, limits=dataclasses.replace(limits, probe_seconds=0.5), what="Sleeping")


def test_the_model_check_of_the_audit_runs_outside_the_server(limits, tmp_path):
    """GPT-2's vocabulary, context 1024, batch 64 (all within the sliders): 6.8 GB in the server before."""
    runner = JobRunner(limits)
    before = rss_mb()
    with pytest.raises(ValueError, match="past the memory limit of a job here"):
        train_tab.check_model(runner, form(tokenizer_kind="gpt2", n_layers=1, n_heads=1, emb_dim=64,
                                           context_length=1024, batch_size=64, minutes=1))
    assert rss_mb() - before < 100
    info = train_tab.check_model(runner, form(minutes=1))  # a small one is measured, in its child
    assert "ms per step" in info


def test_the_preview_tokenizer_learns_from_a_bounded_sample(monkeypatch, limits):
    monkeypatch.setattr(train_tab, "TOKENIZER_CHARS", 2_000)
    runner = JobRunner(limits)
    _, _, counts = train_tab.preview(runner, form(), 8)
    assert "The tokenizer learned its merges from the first 2,000 of the" in counts
    monkeypatch.setattr(train_tab, "TOKENIZER_CHARS", 10**9)
    _, _, counts = train_tab.preview(runner, form(), 8)
    assert "learned its merges" not in counts


@pytest.mark.slow
def test_the_finetune_panels_time_their_steps_outside_the_server(limits, shipped_models):
    """"Check memory and time" of the Spam and Chat panels loads the base and runs its steps in a child: past the
    limit a message, and the server holds no copy of the base either way."""
    from ui import chat_tab, spam_tab
    from ui.registry import ModelRegistry

    registry = ModelRegistry(shipped_models)
    spam = spam_tab.FinetuneForm(base="base", head_token="last", trains="LoRA", blocks=1, lora_rank=8, lora_alpha=16,
                                 epochs=1, lr=1e-3, seed=1, data_choice=spam_tab.SMS_DATA, file=None)
    chat = chat_tab.ChatFinetuneForm(**{**chat_tab.DEFAULT_FORM.__dict__, "max_entries": 64})
    before = rss_mb()
    assert "s per step" in spam_tab.check_finetune(JobRunner(limits), registry, None, spam)
    assert "s per step" in chat_tab.check_finetune(JobRunner(limits), registry, None, chat)
    assert rss_mb() - before < 100
    small = JobRunner(dataclasses.replace(limits, max_memory_mb=256))
    for check, settings in ((spam_tab.check_finetune, spam), (chat_tab.check_finetune, chat)):
        with pytest.raises(ValueError, match="past the memory limit of a job here"):
            check(small, registry, None, settings)
