"""The app served on 127.0.0.1 for `gradio_client`, on tiny random models: the fixtures of every client test.

A test module takes them with `registry, client = app_client.registry, app_client.client`; one that wants
other models defines its own `registry` fixture, and `client` then serves those. `TRAIN` is the Train tab's
API values for a tiny model (the client tests and the load test send it); `greedy_reply` what a chat model
answers one message at temperature 0, computed here, to compare with what the server sent.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from gradio_client import Client  # noqa: E402

from gpt.generate import SamplingConfig  # noqa: E402
from gpt.instruct.prompt import chat_stream  # noqa: E402
from tests.helpers import STORY, make_model_folder  # noqa: E402
from ui.chat_tab import EMPTY_REPLY  # noqa: E402
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


def greedy_reply(registry: ModelRegistry, model: str, message: str, max_new_tokens: int) -> str:
    """The reply of `model` to `message` alone (no earlier turns), greedy, as the Chat tab shows it."""
    greedy = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    replies = list(chat_stream(registry.load(model), [], message, greedy))
    return (replies[-1] if replies else "") or EMPTY_REPLY
