"""Issue 36, numbers and messages: every numeric input refused in one line naming the field and its range (huge
integers included), temperatures so small that dividing by them overflows sample greedily, every value a slider
allows works, and no message shows a server path, absolute or relative."""

from __future__ import annotations

import re

import gradio as gr
import pytest
import torch

from gpt.generate import GREEDY_BELOW, SamplingConfig, filter_logits, next_token_probs, pick
from ui import beams_view, chat_tab, embeddings_view, generate_tab, generation
from ui.common import InputError, check_input, check_number, public_message, user_errors
from ui.registry import ModelRegistry

HUGE = 10**400  # a 401-digit integer: no float holds it (math.isnan of it raises OverflowError)
TINY = (1e-38, 1e-300, 5e-324, GREEDY_BELOW / 2)


@pytest.fixture(scope="module")
def registry(shipped_models) -> ModelRegistry:
    return ModelRegistry(shipped_models)


@pytest.mark.parametrize("value", [HUGE, -HUGE, float("inf"), 1e308])
def test_a_slider_refuses_a_huge_number_naming_the_field_and_its_range(value):
    slider = gr.Slider(0, 2, label="Temperature (0 is greedy)")
    with pytest.raises(InputError) as info:
        check_input(slider, value)
    assert re.fullmatch(r"Temperature must be between 0 and 2, got [^\n]+\.", info.value.message)
    with pytest.raises(InputError) as info:
        check_input(gr.Number(1, minimum=0, maximum=100, label="Seed"), value)
    assert info.value.message.startswith("Seed must be between 0 and 100, got")
    assert check_input(slider, 1.5) == 1.5


def test_check_number_names_the_field_and_range_for_any_number():
    with pytest.raises(ValueError, match=r"^Seed must be between 0 and 10, got a 401-digit integer\.$"):
        check_number(HUGE, "Seed", 0, 10, integer=True)
    with pytest.raises(ValueError, match=r"^Seed must be between 0 and 10, got inf\.$"):
        check_number(float("inf"), "Seed", 0, 10)
    with pytest.raises(ValueError, match=r"^Seed must be a number"):
        check_number("12", "Seed", 0, 10)
    assert check_number(7.0, "Seed", 0, 10, integer=True) == 7


@pytest.mark.parametrize("temperature", TINY)
def test_a_temperature_below_the_threshold_is_greedy(temperature):
    logits = torch.tensor([1.0, 3.0, 2.9, -5.0])
    cfg = SamplingConfig(temperature=temperature, top_k=2, top_p=0.5)
    assert cfg.greedy
    probs = next_token_probs(logits, cfg)
    assert torch.equal(probs, torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert pick(logits, cfg, torch.Generator().manual_seed(0)) == 1
    kept = filter_logits(logits, temperature)
    assert torch.isfinite(kept).sum() == 1 and kept[1] == 3.0
    assert not SamplingConfig(temperature=GREEDY_BELOW).greedy  # from the threshold on, a temperature samples


def test_tiny_temperatures_work_in_generate_one_token_and_beam_tree(registry):
    greedy = list(generate_tab.generate(registry, "base", "The cat", 0.0, 0, 1, 6, 1))[-1]
    for t in TINY:
        assert list(generate_tab.generate(registry, "base", "The cat", t, 0, 1, 6, 1))[-1] == greedy
        text, _, info = generate_tab.one_token(registry, "base", "The cat", t, 40, 0.9, 1)
        assert "probability 1.000" in info
        table, _ = beams_view.beam_tree(registry, generation.Settings(t, 40, 0.95, 6, 1), "base", "The cat", 2)
        assert f"sampled (T={t:g}" in table
        generate_tab.next_token_charts(registry, "base", "The cat", t, 0, 1)


def test_every_value_of_the_chat_reply_slider_fits_the_shipped_model(registry):
    ckpt = chat_tab.chat_model(registry, chat_tab.CHAT_MODEL)
    assert ckpt.model.cfg.context_length >= chat_tab.MAX_NEW_TOKENS + chat_tab.PROMPT_ROOM
    chat_tab.check_reply_room(ckpt, chat_tab.MAX_NEW_TOKENS)
    with pytest.raises(ValueError, match=f"between 1 and {chat_tab.MAX_NEW_TOKENS} for this model"):
        chat_tab.check_reply_room(ckpt, chat_tab.MAX_NEW_TOKENS + 1)
    reply, prompt = list(chat_tab.chat(registry, "What is the product of 7 and 12?", [], 1e-38,
                                       chat_tab.MAX_NEW_TOKENS, 1))[-1]
    assert reply and "### Response:" in prompt


def test_the_embeddings_dimensions_are_the_text_its_api_names(registry):
    for dims in ("2", "3", 2, 3):
        _, _, _, info = embeddings_view.embeddings(registry, "base", "the, a", dims, True)
        assert f"flattened to {dims}" in info
    for dims in ("4", True, 2.5, None):
        with pytest.raises(ValueError, match="Dimensions must be 2 or 3"):
            embeddings_view.embeddings(registry, "base", "the, a", dims, True)


@pytest.mark.parametrize("text, shown", [
    ("archive/../../../../../rel/assets/models/base escapes the folder", "base escapes the folder"),
    ("assets/models/base: no config.json", "base: no config.json"),
    ("see ../../runs/abc/log.csv", "see log.csv"),
    ("/root/.cache/gpt-playground/runs/x is gone", "x is gone"),
    ("see https://huggingface.co/openai-community/gpt2 or top-k/top-p", None),  # URLs, Hub ids, fractions stay
    ("3 tokens/s on 2026/12/02", None),
])
def test_messages_show_no_server_path_absolute_or_relative(text, shown):
    assert public_message(text) == (text if shown is None else shown)

    def fails():
        raise ValueError(text)

    with pytest.raises(gr.Error) as info:
        user_errors(fails)()
    assert info.value.message == (text if shown is None else shown)
