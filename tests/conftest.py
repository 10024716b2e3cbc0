"""Shared fixtures: small models and texts, built fresh by the tests (nothing downloaded)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from huggingface_hub import constants

from gpt import weights
from gpt.config import GPTConfig
from gpt.model import GPTModel
from gpt.weights import PretrainedModel

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def read_corpus(name: str) -> str:
    return gzip.decompress((ASSETS / "corpora" / name).read_bytes()).decode("utf-8")


@pytest.fixture(scope="session")
def novel() -> str:
    """Northanger Abbey, the shortest of the six Austen novels shipped in assets/."""
    return read_corpus("austen-northangerabbey.txt.gz")


@pytest.fixture
def tiny_model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(GPTConfig.preset("tiny")).eval()


# -- a tiny GPT-2 in transformers' layout and an offline Hub cache (test_weights, test_cli_generate) --

TINY_NAME = "gpt2-tiny-test"
TINY_REPO = "test-org/tiny-gpt2"
# GPT-2's real vocabulary, so the prompts go through the real tokenizer; everything else is small.
TINY = GPTConfig(vocab_size=50257, context_length=64, emb_dim=32, n_layers=2, n_heads=4)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROMPTS = ["Every effort moves you", "It is a truth universally acknowledged, that",
           "In the beginning God created", "Héllo wörld 🙂 — 1234 + 5678 ="]


def random_hf_gpt2(cfg: GPTConfig, seed: int = 0, noise: float = 0.05) -> GPT2LMHeadModel:
    """transformers' GPT-2 with every tensor random (biases and LayerNorms too, so each mapping matters)."""
    from transformers import GPT2Config, GPT2LMHeadModel  # the reference: imported only by the tests that use it

    torch.manual_seed(seed)
    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.emb_dim,
                        n_layer=cfg.n_layers, n_head=cfg.n_heads, attn_implementation="eager")
    model = GPT2LMHeadModel(hf_cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=noise)
    return model


def put_in_hub_cache(cache_dir: Path, repo_id: str, file: Path) -> Path:
    """Lay `file` out as huggingface_hub's cache holds a download: blob, snapshot link, ref."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    data = file.read_bytes()
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    link = repo / "snapshots" / COMMIT / weights.HUB_FILE
    link.parent.mkdir(parents=True)
    link.symlink_to(Path("../..") / "blobs" / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return link


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> tuple[GPT2LMHeadModel, Path]:
    """A random tiny GPT-2 and its `save_pretrained` safetensors file (the Hub's layout)."""
    model = random_hf_gpt2(TINY)
    out = tmp_path_factory.mktemp("hf")
    model.save_pretrained(out, safe_serialization=True)
    return model, out / weights.HUB_FILE


@pytest.fixture
def offline_hub(monkeypatch, tmp_path) -> Path:
    """An empty Hub cache, offline. huggingface_hub reads HF_HUB_OFFLINE / HF_HUB_CACHE once, at
    import, so the constants are what must change (its HTTP layer checks them on every request)."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setitem(weights.PRETRAINED, TINY_NAME, PretrainedModel(TINY_REPO, TINY))
    return cache


@pytest.fixture
def tiny_cached(offline_hub, tiny_hf) -> Path:
    """The tiny model in the offline Hub cache under TINY_NAME, as after a download."""
    return put_in_hub_cache(offline_hub, TINY_REPO, tiny_hf[1])
