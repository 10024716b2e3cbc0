"""Shared fixtures: small models and texts, built fresh by the tests (nothing downloaded)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from gpt.config import GPTConfig
from gpt.model import GPTModel

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
