"""Every named endpoint that takes a model, through `gradio_client`, with the tiny Qwen3- and SmolLM2-shaped
instruct models of an offline Hugging Face cache picked (`tests/ui/open_models.py`): each view answers with a
value, the Chat tab writes the chat template, and an open model not on disk is one line at once."""

from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from gradio_client import Client  # noqa: E402

from tests.helpers import HUB_QWEN, HUB_SMOL  # noqa: E402
from tests.ui import open_models  # noqa: E402
from tests.ui.endpoints import base_values, client_call, problem  # noqa: E402
from ui.jobs import JobRunner, TrainLimits  # noqa: E402

pytestmark = pytest.mark.slow  # every test here talks to the served app
hub_cache, registry = open_models.hub_cache, open_models.registry
PICKERS = {"Model (Tokenizer, Attention and Generate tabs; runs trained in the Train tab appear here)", "Chat model",
           "Left model", "Right model"}
SECOND = {"Against the picked model", "Beside the picked model"}  # set to `base`: another tokenizer
# The views that must answer with a value on an open model (the others may refuse it in a sentence).
VIEWS = {"/load_model", "/tokenize", "/attention", "/generate", "/next_token_probs", "/one_token", "/beam_search",
         "/embeddings", "/logit_lens", "/surprisal", "/compare_models", "/beam_tree", "/kv_cache", "/kv_timing",
         "/memory_table", "/model_card", "/precision", "/chat", "/chat_model", "/chat_compare"}


@pytest.fixture(scope="module")
def client(registry, serve_app, tmp_path_factory: pytest.TempPathFactory) -> Client:
    runner = JobRunner(TrainLimits(runs_dir=tmp_path_factory.mktemp("runs"), threads=1))
    return Client(serve_app(registry, runner), verbose=False)


@pytest.mark.parametrize("model", [HUB_QWEN, HUB_SMOL])
def test_every_view_answers_on_an_open_model(client, model):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    failures, answered = [], set()
    for name, endpoint in api.items():
        labels = [p["label"] for p in endpoint["parameters"]]
        if not PICKERS.intersection(labels) or name.startswith(("/train", "/spam", "/chat_finetune", "/chat_up")):
            continue
        values = [model if label in PICKERS else "base" if label in SECOND else value
                  for label, value in zip(labels, base_values(endpoint), strict=True)]
        if name == "/embeddings":
            values[1] = "the, fox"  # words that are single tokens of the tiny BPE
        if name == "/precision":
            values[values.index(model)] = HUB_SMOL  # the smaller of the two: three precisions, timed
        outcome = client_call(client, name, values)
        if outcome[0] == "value":
            answered.add(name)
        elif problem(outcome, []) is not None or name in VIEWS:
            failures.append(f"{name}: {outcome}")
    assert not failures, "\n".join(failures)
    assert answered >= VIEWS


def test_the_chat_endpoint_writes_the_chat_template(client):
    """The client's session keeps the conversation of the calls before: its earlier turns come first."""
    reply, prompt = client.predict("What is a fox?", 0.0, 8, 1, HUB_QWEN, api_name="/chat")
    assert prompt.startswith("<|im_start|>user\n")
    assert prompt.endswith("<|im_start|>user\nWhat is a fox?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert reply


def test_an_open_model_not_on_disk_is_one_line_at_once(client):
    start = time.perf_counter()
    summary = client.predict("qwen3-0.6b", api_name="/load_model")
    assert time.perf_counter() - start < 10 and "\n" not in summary
    assert "not on disk" in summary and "`hf download Qwen/Qwen3-0.6B`" in summary
    outcome = client_call(client, "/tokenize", ["smollm2-135m", "Hello", False, "some training text", 300])
    assert outcome[0] == "error" and "hf download HuggingFaceTB/SmolLM2-135M" in outcome[1]


def test_the_finetune_checks_time_smollm2_through_the_api(client, hub_cache, tmp_path_factory):
    """SmolLM2-135M (tiny here) on disk: /spam_finetune_check and /chat_finetune_check say its memory and a timed
    step before a start; the Chat tab's wrapped prompt for an open instruct model is its chat template."""
    from tests.hub_models import tiny_smollm2_in_cache

    tiny_smollm2_in_cache(hub_cache, tmp_path_factory.mktemp("smollm2"))
    sms = "SMS Spam Collection (the shipped copy)"
    spam = client.predict(token=None, base="smollm2-135m", head_token="last", trains="LoRA", blocks=1, lora_rank=8,
                          lora_alpha=16, epochs=1, lr=1e-3, seed=1, data_choice=sms, file=None,
                          api_name="/spam_finetune_check")
    assert spam.startswith("**smollm2-135m**") and "LoRA adapters train" in spam and "s per step" in spam
    chat = client.predict(token=None, base="smollm2-135m-instruct", data="shipped", families=["small talk"],
                          max_entries=64,
                          file=None, epochs=1, lr=1e-3, batch_size=4, lora_rank=8, lora_alpha=16, mask_prompt=True,
                          digits=False, api_name="/chat_finetune_check")
    assert chat.startswith("**smollm2-135m-instruct**") and "MB** of memory" in chat
