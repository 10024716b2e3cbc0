"""Shared fixtures: small models and texts, built fresh by the tests (nothing downloaded)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from huggingface_hub import constants

from gpt import pretrained
from gpt.checkpoint import WEIGHTS_FILE
from gpt.config import GPTConfig
from gpt.model import GPTModel
from gpt.pretrained import PretrainedModel
from tests.helpers import TINY, TINY_NAME, TINY_REPO, put_in_hub_cache, random_hf_gpt2, read_corpus

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before any test imports gradio

# Fixtures that train a model, serve the app or open a browser. A test that uses one is `slow` wherever it is
# written, so the fast tier (`pytest -m "not slow"`) never waits on them; tests that train by themselves carry
# the mark in their own module.
SLOW_FIXTURES = frozenset({
    "trained_dir", "mixed_dir", "lora_run",  # tests/classify/conftest.py: finetunings through the command line
    "run_dir",  # tests/pretrain/test_archive.py: a pretraining run
    "client", "serve_app", "app_process",  # the app served on 127.0.0.1
    "app_url", "browser", "page",  # the app in Chromium
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A test that runs a command in-process (`finetune-instruct --threads 1`) must not slow every later one."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def novel() -> str:
    """Northanger Abbey, the shortest of the six Austen novels shipped in assets/."""
    return read_corpus("austen-northangerabbey.txt.gz")


@pytest.fixture
def tiny_model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(GPTConfig.preset("tiny")).eval()


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> tuple[GPT2LMHeadModel, Path]:
    """A random tiny GPT-2 and its `save_pretrained` safetensors file (the Hub's layout)."""
    model = random_hf_gpt2(TINY)
    out = tmp_path_factory.mktemp("hf")
    model.save_pretrained(out, safe_serialization=True)
    return model, out / WEIGHTS_FILE


@pytest.fixture
def offline_hub(monkeypatch, tmp_path) -> Path:
    """An empty Hub cache, offline. huggingface_hub reads HF_HUB_OFFLINE / HF_HUB_CACHE once, at
    import, so the constants are what must change (its HTTP layer checks them on every request)."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setitem(pretrained.PRETRAINED, TINY_NAME, PretrainedModel(TINY_REPO, TINY))
    return cache


@pytest.fixture
def tiny_cached(offline_hub, tiny_hf) -> Path:
    """The tiny model in the offline Hub cache under TINY_NAME, as after a download."""
    return put_in_hub_cache(offline_hub, TINY_REPO, tiny_hf[1])
