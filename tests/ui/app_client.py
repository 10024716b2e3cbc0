"""The app served on 127.0.0.1 for `gradio_client`, on tiny random models: the fixtures of every client test.

A test module takes them with `registry, client = app_client.registry, app_client.client`; one that wants
other models defines its own `registry` fixture, and `client` then serves those. `TRAIN` is the Train tab's
API values for a tiny model (the client tests and the load test send it).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from gradio_client import Client  # noqa: E402

from tests.helpers import STORY, make_model_folder  # noqa: E402
from ui.jobs import JobRunner, TrainLimits  # noqa: E402
from ui.registry import ModelRegistry  # noqa: E402

# The Train tab's settings for a tiny model on pasted text: token (None: the client's session), corpora,
# pasted text, files, tokenizer, vocabulary, preset, layers, heads, width, context, positions, dropout,
# steps, minutes, batch, learning rate, warmup, weight decay, seed.
TRAIN = [None, [], STORY, None, "bpe", 300, "custom", 2, 4, 32, 16, "learned", 0.0, 20_000, 5.0, 4, 3e-3, 5, 0.1, 1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    return ModelRegistry(make_model_folder(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def client(registry: ModelRegistry, serve_app, tmp_path_factory: pytest.TempPathFactory) -> Client:
    """The app as `python app.py` serves it (its limits included), on the tiny models."""
    runner = JobRunner(TrainLimits(runs_dir=tmp_path_factory.mktemp("runs"), threads=1))
    return Client(serve_app(registry, runner), verbose=False)
