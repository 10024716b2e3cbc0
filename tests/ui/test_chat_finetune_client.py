"""The Chat tab's endpoints through `gradio_client`, against the app on 127.0.0.1 (tiny random models): a tiny
chat finetune end to end, chatting with it by name, side by side, download and upload, and bad input."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from gradio_client import handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.ui import app_client  # noqa: E402
from tests.ui.helpers import ENTRIES  # noqa: E402

CHAT_ENDPOINTS = {"/chat", "/chat_model", "/chat_compare", "/chat_finetune_start", "/chat_finetune_stop",
                  "/chat_finetune_status", "/chat_download", "/chat_upload"}
POLL_S = 180  # a bound on a hung finetune, not a speed target
registry, client = app_client.registry, app_client.client  # the app on tiny models, served
pytestmark = pytest.mark.slow  # every test here talks to the served app


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "mine.json"
    path.write_text(json.dumps(ENTRIES))
    return str(path)


def settings(file: str | None, base: str = "base") -> list:
    """token (None: the client's session), base, data, kinds of question (the shipped set's), entries, file, epochs,
    lr, batch, LoRA rank, alpha, mask, digits."""
    return [None, base, "upload", [], 1000, handle_file(file) if file else None, 2, 3e-3, 8, 4, 8.0, True, True]


def test_every_chat_action_has_a_named_endpoint(client):
    assert set(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) >= CHAT_ENDPOINTS


def test_finetune_a_tiny_chat_model_then_chat_compare_download_and_upload_it(client, registry, data):
    line, owner = client.predict(*settings(data), api_name="/chat_finetune_start")
    assert line.startswith("Started **run:chat-") and owner
    deadline = time.monotonic() + POLL_S
    while True:
        line, curve, result, *_ = client.predict(None, api_name="/chat_finetune_status")
        if line.startswith(("Finished", "⚠️")) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert line.startswith("Finished"), line
    name = re.search(r"### (run:chat-[\w-]+)", result).group(1)
    assert "| kind of question | base: base | this model |" in result
    assert [trace["name"] for trace in json.loads(curve["plot"])["data"]] == ["train", "validation (held out)"]
    reply, prompt = client.predict("What is 2 + 3?", 0.0, 4, 1, name, api_name="/chat")
    assert reply == app_client.greedy_reply(registry, name, "What is 2 + 3?", 4)
    assert "### Instruction:\nWhat is 2 + 3?" in prompt
    info, scores = client.predict(name, api_name="/chat_model")
    assert "Finetuned from **base**" in info and "base: base" in scores
    left, right = client.predict("base", name, "What is 2 + 3?", 4, api_name="/chat_compare")
    assert [left, right] == [app_client.greedy_reply(registry, model, "What is 2 + 3?", 4) for model in ("base", name)]
    archive = client.predict(name, api_name="/chat_download")
    message, _ = client.predict(handle_file(archive), api_name="/chat_upload")
    assert "Loaded as `run:chat-upload-" in message


def test_bad_input_gets_a_message_and_the_app_keeps_serving(client, data, tmp_path):
    (tmp_path / "bad.json").write_text('[{"instruction": "Hi", "input": "", "answer": "Hello"}]')
    cases = [(settings(data, base="spam"), "/chat_finetune_start", "unknown model 'spam'"),
             (settings(str(tmp_path / "bad.json")), "/chat_finetune_start", "entry 0 has no 'output' field"),
             (settings(None), "/chat_finetune_start", "Choose an Alpaca-format .json file"),
             (("base", "instruct", "   ", 8), "/chat_compare", "empty"),
             (("instruct",), "/chat_download", "not a chat model finetuned here"),
             (("Hi", 0.0, 8, 1, "garbage"), "/chat", "unknown model 'garbage'")]
    for args, endpoint, message in cases:
        with pytest.raises(AppError) as info:
            client.predict(*args, api_name=endpoint)
        assert message in str(info.value) and "Traceback" not in str(info.value)
    with pytest.raises(AppError, match="no chat finetune running"):
        client.predict(None, api_name="/chat_finetune_stop")
    assert "2 layers" in client.predict("instruct", api_name="/chat_model")[0]
