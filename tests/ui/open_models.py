"""Two tiny open instruct models (`tests.helpers.hub_chat_models`: Qwen3's shape and SmolLM2-Instruct's) in a
Hugging Face cache of their own, offline, beside the tiny model folder of the app tests: the fixtures of every
test of the app on today's open models (issue 32). A module takes them by name (`hub_cache`, `registry`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

from tests.helpers import hub_chat_models, make_model_folder
from ui.registry import ModelRegistry


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The two models in a Hub cache, as if downloaded; huggingface_hub offline and reading that cache (its
    constants are read once, at import: they are what must change)."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    cache.mkdir()
    hub_chat_models(cache)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_CACHE", str(cache))
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        yield cache


@pytest.fixture(scope="module")
def registry(hub_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    return ModelRegistry(make_model_folder(tmp_path_factory.mktemp("models")))
