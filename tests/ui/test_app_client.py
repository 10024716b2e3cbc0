"""Every named endpoint, driven by `gradio_client` against the app launched on 127.0.0.1 (tiny models)."""

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
from tests.ui.app_client import TRAIN  # noqa: E402

ENDPOINTS = {"/load_model", "/tokenize", "/attention", "/generate", "/next_token_probs", "/one_token",
             "/beam_search", "/classify", "/spam_test_figures", "/chat", "/train_preview", "/train_check",
             "/train_start", "/train_stop", "/train_resume", "/train_status", "/train_runs", "/train_download",
             "/train_upload", "/train_share", "/train_unshare",
             # the Spam tab's classifier picker and finetuning
             "/spam_finetune_start", "/spam_finetune_stop", "/spam_finetune_status", "/spam_experiments",
             "/spam_download", "/spam_upload", "/spam_finetune_check", "/spam_share", "/spam_unshare",
             # the Chat tab's model picker, side by side and finetuning
             "/chat_model", "/chat_compare", "/chat_finetune_start", "/chat_finetune_stop", "/chat_finetune_status",
             "/chat_download", "/chat_upload", "/chat_finetune_check", "/chat_share", "/chat_unshare",
             # the Reasoning tab
             "/reasoning_problem", "/reasoning_vote", "/reasoning_rl_start", "/reasoning_rl_stop",
             "/reasoning_rl_resume", "/reasoning_rl_status",
             # the views inside the model
             "/embeddings", "/logit_lens", "/surprisal", "/compare_models", "/beam_tree", "/kv_cache", "/kv_timing",
             "/memory_table", "/model_card",
             # precision (Generate tab) and preference tuning (Chat tab)
             "/precision", "/preference_pair"}
POLL_S = 180  # a bound on a hung training, not a speed target
GEN = (0.8, 40, 0.95)  # temperature, top-k, top-p
registry, client = app_client.registry, app_client.client  # the app on tiny models, served
pytestmark = pytest.mark.slow  # every test here talks to the served app


def test_every_action_has_a_named_endpoint(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == ENDPOINTS


def test_load_model(client):
    assert "2 layers" in client.predict("base", api_name="/load_model")
    assert "not available" in client.predict("local:nothing-here", api_name="/load_model")


def test_tokenize(client):
    model_html, table, counts, gpt2_html, trained_html, chars_html, special, notices = client.predict(
        "base", "Hello world", False, "some training text, some more text", 300, api_name="/tokenize")
    assert counts["data"][1][:3] == ["GPT-2 BPE", 11, 2]
    assert gpt2_html.count('class="tok c') == 2 and chars_html.count('class="tok c') == 11
    assert len(table["data"]) == model_html.count('class="tok c')


def test_attention(client, registry):
    plot, info = client.predict("base", "the cat sat", 2, "mean over heads", 1, api_name="/attention")
    assert plot["type"] == "plotly" and "Layer 2, mean over heads" in plot["plot"]
    assert info.startswith(f"{len(registry.tokenizer('base').encode('the cat sat'))} tokens · ")


def test_generate_streams(client):
    job = client.submit("base", "It is a truth", *GEN, 8, 1, api_name="/generate")
    final, _ = job.result()
    outputs = [text for text, _ in job.outputs()]
    assert outputs[0] == "" and outputs[-1] == final and len(outputs) >= 2


def test_next_token_probs_and_one_token(client):
    bars, temps, notice = client.predict("base", "It is a", *GEN, api_name="/next_token_probs")
    assert bars["type"] == "plotly" and "temperature 5" in temps["plot"]
    text, bars, info = client.predict("base", "It is a", *GEN, 3, api_name="/one_token")
    assert text.startswith("It is a") and "Picked token" in info


def test_beam_search(client):
    greedy, _ = client.predict("base", "It is a", 1, 6, api_name="/beam_search")
    best, notice = client.predict("base", "It is a", 3, 6, api_name="/beam_search")
    assert "best of 3 beams" in notice and greedy.replace("\n", " ↵ ") in notice
    with pytest.raises(AppError, match="Beams must be between 1 and 8, got 20."):  # the slider's range, checked first
        client.predict("base", "It is a", 20, 6, api_name="/beam_search")


def test_classify_and_test_figures(client):
    label, html, notice = client.predict("WIN a free prize now", api_name="/classify")
    assert label["label"] in {"ham", "spam"} and {c["label"] for c in label["confidences"]} == {"ham", "spam"}
    summary, table, confusion = client.predict(api_name="/spam_test_figures")
    assert "75.0%" in summary and confusion["type"] == "plotly"


def test_chat(client, registry):
    reply, prompt = client.predict("Name a colour.", 0.0, 8, 1, api_name="/chat")
    assert reply == app_client.greedy_reply(registry, "instruct", "Name a colour.", 8)
    assert "### Instruction:\nName a colour." in prompt


# Sliders and numbers are range-checked by Gradio itself; the event functions check again (tested
# directly in test_app_functions), since they are also called from Python.
BAD_INPUT = [
    (("nope",), "/load_model", "unknown model"),
    (("base", "", False, "x", 300), "/tokenize", "empty"),
    (("base", "hi", False, "x", 5), "/tokenize", "must be between 257 and"),
    (("gpt-5", "hi", False, "x", 300), "/tokenize", "unknown model"),
    (("base", "hi", 9, "one head", 1), "/attention", " and 2, got "),
    (("base", "hi", 1, "one head", 1.5), "/attention", "Head must be a whole number"),
    (("base", "hi", 99.0, 40, 0.95, 8, 1), "/generate", " and 5, got "),
    (("base", "hi", 0.8, 40, 0.95, 100_000, 1), "/generate", " and 512, got "),
    (("base", "   ", 0.8, 40, 0.95), "/next_token_probs", "empty"),
    (("base", "hi", 0.8, 40, 7.0, 1), "/one_token", " and 1, got "),
    (("",), "/classify", "empty"),
    (("", 0.0, 8, 1), "/chat", "empty"),
    (("hi", 0.0, 8, -5), "/chat", "must be between 0 and"),
]


@pytest.mark.parametrize(("args", "endpoint", "message"), BAD_INPUT, ids=[f"{e}-{m}" for _, e, m in BAD_INPUT])
def test_bad_input_gets_a_message_and_the_app_keeps_serving(client, args, endpoint, message):
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=endpoint)
    assert message in str(info.value)
    assert "Traceback" not in str(info.value) and "upstream" not in str(info.value)
    assert "2 layers" in client.predict("base", api_name="/load_model")


def test_100k_characters_are_cut_with_a_notice(client):
    text = "word " * 20_000
    *_, notices = client.predict("base", text, False, "training text here", 300, api_name="/tokenize")
    assert "first 1,000 tokens" in notices
    _, info = client.predict("base", text, 1, "one head", 1, api_name="/attention")
    assert "the heatmaps show the first 128" in info
    job = client.submit("base", text, *GEN, 3, 1, api_name="/generate")
    _, notice = job.result()
    assert "only the last 512 are used" in notice
    _, _, notice = client.predict(text, api_name="/classify")
    assert "reads the first 512" in notice


def poll_status(client, until) -> tuple:
    """/train_status until `until(outputs)` holds (the page's timer does the same every second)."""
    deadline = time.monotonic() + POLL_S
    while True:
        outputs = client.predict(None, api_name="/train_status")
        if until(outputs) or time.monotonic() > deadline:
            return outputs
        time.sleep(0.5)


def test_train_a_tiny_model_watch_it_stop_it_and_generate_with_it(client):
    counts = client.predict(8, *TRAIN[1:], api_name="/train_preview")[2]  # the stride, then the tab's settings
    assert "characters per token" in counts
    assert "ms per step" in client.predict(*TRAIN[1:], api_name="/train_check")
    line, owner = client.predict(*TRAIN, api_name="/train_start")
    assert "Started" in line and owner  # the client's session owns it
    with pytest.raises(AppError, match="already have a training"):
        client.predict(*TRAIN, api_name="/train_start")
    line, curve, samples, *_ = poll_status(client, lambda out: len(out[2]["data"]) >= 3)
    assert len(samples["data"]) >= 3 and "tokens/s" in line
    train_loss = json.loads(curve["plot"])["data"][0]["y"]
    assert train_loss[-1] < train_loss[0] - 1.0
    assert "Stopping" in client.predict(None, api_name="/train_stop")
    line, _, _, result, *_ = poll_status(client, lambda out: out[0].startswith("Finished"))
    name = re.search(r"`(run:[\w-]+)`", result).group(1)
    assert line.startswith("Finished") and "bits per byte" in result
    text, _ = client.predict(name, "It is a truth", 0.0, 0, 1.0, 8, 0, api_name="/generate")
    assert isinstance(text, str) and text
    assert name in str(client.predict(api_name="/train_runs"))
    archive = client.predict(name, api_name="/train_download")
    message, _ = client.predict(handle_file(archive), api_name="/train_upload")
    assert "Loaded as `run:upload-" in message


def test_train_refuses_bad_settings(client):
    bad = {2: "", 13: 0, 7: 200, 5: 10**6}  # no text, no steps, 200 layers (over the bound), a huge vocabulary
    for index, value in bad.items():
        settings = list(TRAIN)
        settings[index] = value
        settings[6] = "custom"
        with pytest.raises(AppError):
            client.predict(*settings, api_name="/train_start")
    with pytest.raises(AppError, match="not a run trained here"):
        client.predict("base", api_name="/train_download")
