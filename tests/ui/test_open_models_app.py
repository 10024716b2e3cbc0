"""Every view of the app on today's open models (issue 32), through the views' own functions: tiny random
Qwen3- and SmolLM2-shaped instruct models in an offline Hugging Face cache (`tests/ui/open_models.py`). The
picker lists them as on disk, each view reads their tokenizer.json, their grouped key/value heads and rotary
positions, and the Chat tab writes their chat template; an open model not on disk is one line, at once."""

from __future__ import annotations

import json
import time

import pytest
import torch
from huggingface_hub import constants

from gpt.generate import SamplingConfig, encode_prompt, stream
from gpt.hub_tokenizer import load_hub_tokenizer
from gpt.instruct.prompt import MAX_TURNS, build_template_prompt
from tests.helpers import HUB_QWEN, HUB_SMOL
from tests.hub_models import LLAMA2_LIKE_TEMPLATE, metaspace_json, write_folder
from tests.ui import open_models
from ui import (
    attention_tab,
    beams_view,
    chat_tab,
    compare_view,
    embeddings_view,
    generate_tab,
    kv_cache_view,
    lens_view,
    model_card_view,
    picker,
    precision_view,
    surprisal_view,
    tokenizer_tab,
)
from ui.generation import Settings
from ui.registry import ModelUnavailableError, UnknownModelError

hub_cache, registry = open_models.hub_cache, open_models.registry
TEXT = "Every effort moves you forward, and the quick brown fox jumps over it."
SETTINGS = Settings(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=8, seed=1)


def test_the_picker_lists_the_catalogue_and_the_cached_models(registry):
    labels = dict((name, label) for label, name in registry.choices())
    assert labels[HUB_QWEN] == f"{HUB_QWEN} · on disk" and labels[HUB_SMOL] == f"{HUB_SMOL} · on disk"
    assert labels["qwen3-0.6b"] == "qwen3-0.6b · Qwen3, 596M · download 1.19 GB"
    assert labels["smollm2-135m-instruct"].startswith("smollm2-135m-instruct · SmolLM2, 135M · download")
    assert labels["base"] == "base" and labels["gpt2-small"] == "gpt2-small"
    assert {HUB_QWEN, HUB_SMOL, "qwen3-0.6b", "instruct"} <= set(registry.chat_names())
    assert "qwen3-0.6b" not in registry.base_names() and "base" in registry.base_names()


def test_loading_by_name_describes_the_model(registry):
    summary = picker.show_model(registry, HUB_QWEN, progress=lambda *a, **k: None)
    assert f"Qwen3, from {HUB_QWEN}" in summary and "its Hub tokenizer (tokenizer.json)" in summary
    assert "QK-norm" in summary and "2 KV heads" in summary
    smol = registry.load(HUB_SMOL)
    assert smol.model.cfg.kv_heads == 1 and smol.model.out_head.weight is smol.model.tok_emb.weight


def test_one_open_model_is_held_at_a_time(registry):
    registry.load(HUB_QWEN)
    registry.load(HUB_SMOL)
    held = [key[1] for key in registry._cache if key[0] == "lm"]
    assert HUB_SMOL in held and HUB_QWEN not in held


def test_an_open_model_not_on_disk_offline_is_one_line_at_once(registry):
    for name, repo in (("qwen3-0.6b", "Qwen/Qwen3-0.6B"), ("some-org/some-model", "some-org/some-model")):
        start = time.perf_counter()
        summary = picker.show_model(registry, name, progress=lambda *a, **k: None)
        assert time.perf_counter() - start < 2
        assert summary.startswith(f"⚠️ {name} ({repo}") and "\n" not in summary
        assert f"`hf download {repo}`" in summary and "local:<folder>" in summary
        with pytest.raises(ModelUnavailableError):
            registry.tokenizer(name)
    with pytest.raises(UnknownModelError):
        registry.resolve("not a/repo id")


def test_the_tokenizer_tab_sets_the_hub_tokenizer_beside_gpt2(registry):
    html, table, counts, gpt2_html, _, _, special, _ = tokenizer_tab.tokenize(
        registry, HUB_QWEN, TEXT + "<|im_end|>", False, TEXT * 10, 300)
    assert {"GPT-2 BPE", f"{HUB_QWEN}'s tokenizer (482 tokens)"} <= set(counts["tokenizer"]) and gpt2_html
    assert "`<|im_end|>` (id **2**, ends a text: generation stops there)" in special
    assert "encoded here as **plain text**" in special
    _, table, _, _, _, _, special, _ = tokenizer_tab.tokenize(registry, HUB_QWEN, TEXT + "<|im_end|>", True,
                                                              TEXT * 10, 300)
    assert list(table["id"])[-1] == 2 and "**the special tokens**" in special
    assert "".join(bytes.fromhex(h).decode() for h in table["bytes (hex)"]) == TEXT + "<|im_end|>"


def test_attention_shows_grouped_heads(registry):
    fig, info = attention_tab.attention(registry, HUB_QWEN, TEXT, 1, "all heads", 1)
    assert "4 query heads in 2 key/value groups" in info and fig.data


def test_lens_surprisal_embeddings(registry):
    grid, trace, info = lens_view.lens(registry, HUB_SMOL, TEXT, 0)
    assert grid.data and "gpt.lens.logit_lens" in info
    first, second, info, table = surprisal_view.surprisal(registry, HUB_QWEN, TEXT, "base")
    assert "different tokens" in info and len(table) and second
    plot, table, positions, info = embeddings_view.embeddings(registry, HUB_QWEN, "fox, effort", 2, True)
    assert "rotary" in info and "Not one token in this vocabulary" in info and list(table["word"]) == ["fox"]


def test_generation_views_stop_at_the_stop_ids(registry):
    model = registry.load(HUB_QWEN)
    ids = encode_prompt(model.tokenizer, TEXT)
    greedy = SamplingConfig(max_new_tokens=5, temperature=0, stop_at_eot=False)
    first = next(stream(model.model, ids, greedy))
    assert list(stream(model.model, ids, SamplingConfig(max_new_tokens=5, temperature=0), eot_id={first, 2})) == []
    text, notice = list(generate_tab.generate(registry, HUB_QWEN, TEXT, 0, 0, 1, 8, 1))[-1]
    assert isinstance(text, str)
    table, info = beams_view.beam_tree(registry, SETTINGS, HUB_SMOL, TEXT, 3)
    assert "greedy" in table
    fig, a, b, info = compare_view.compare(registry, HUB_QWEN, "base", TEXT, 5)
    assert "different tokenizers" in info


def test_a_bos_goes_first_where_the_tokenizer_has_one(tmp_path):
    folder = write_folder(tmp_path / "llama", metaspace_json(), {"bos_token": "<s>", "eos_token": "</s>",
                                                                 "chat_template": LLAMA2_LIKE_TEMPLATE})
    llama = load_hub_tokenizer(folder)
    assert encode_prompt(llama, "Hello")[0] == llama.bos_id == 1
    assert encode_prompt(llama, "Hello") == [1, *llama.encode("Hello")]


def test_the_kv_cache_view_sets_gqa_beside_gpt2(registry):
    info, _ = kv_cache_view.kv_cache(registry, HUB_QWEN, TEXT, "float32")
    assert "2 key/value heads (one per group of 2)" in info and "2× smaller" in info
    table = kv_cache_view.memory_table(registry, HUB_QWEN, "float32", 1024, 1).set_index("model")
    per_token = table["KV cache per token"]
    # 2 (keys, values) x layers x KV heads x head width x 4 bytes: what grouped heads and depth make of it
    assert per_token["gpt2-small"] == "73.7 kB" and per_token["smollm2-135m (SmolLM2)"] == "46.1 kB"
    assert per_token["qwen3-0.6b (Qwen3)"] == "229.4 kB" and table["heads / KV heads"]["qwen3-0.6b (Qwen3)"] == "16 / 8"


def test_the_precision_view_runs_an_open_model_in_bfloat16_and_int8(registry, monkeypatch):
    monkeypatch.setattr(precision_view, "held_out_sample", lambda: TEXT * 3)
    table, reference, chosen, line = precision_view.measure(registry, HUB_SMOL, "int8", TEXT, 4)
    assert list(table["precision"]) == ["float32", "bfloat16", "int8"] and "int8" in line


def test_the_model_card_reads_the_hub_files(registry):
    card, loss, figures = model_card_view.model_card(registry, HUB_QWEN)
    assert card.startswith(f"# {HUB_QWEN}") and loss is None
    assert "| licence | apache-2.0 |" in figures and "| key/value heads | 2 |" in figures and "QK-norm" in figures
    card, _, _ = model_card_view.model_card(registry, "qwen3-0.6b")
    assert "not on disk yet" in card and "596M parameters" in card


def test_the_chat_tab_renders_the_chat_template(registry):
    history = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"}]
    reply, prompt = list(chat_tab.chat(registry, "What is a fox?", history, 0.0, 8, 1, model=HUB_QWEN))[-1]
    tokenizer = registry.load(HUB_QWEN).tokenizer
    assert prompt == tokenizer.render_chat([*history, {"role": "user", "content": "What is a fox?"}],
                                           add_generation_prompt=True, enable_thinking=False)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") and reply
    smol_reply, smol_prompt = list(chat_tab.chat(registry, "Hi", [], 0.0, 8, 1, model=HUB_SMOL))[-1]
    assert smol_prompt.startswith("<|im_start|>system\nYou are a small, helpful assistant.<|im_end|>")
    info, scores = chat_tab.model_info(registry, HUB_QWEN)
    assert "chat template" in info and scores == chat_tab.OPEN_MODEL_SCORES


def test_the_history_is_bounded_by_the_context(registry):
    tokenizer = registry.load(HUB_QWEN).tokenizer
    history = [m for i in range(40) for m in ({"role": "user", "content": f"Question {i} about the fox?"},
                                              {"role": "assistant", "content": f"Answer {i}: it jumps."})]
    folded = build_template_prompt(history, "And now?", tokenizer, context_length=200, max_new_tokens=40)
    assert len(tokenizer.encode(folded.text, allow_special=True)) <= 160
    assert folded.over_limit == 40 - MAX_TURNS and folded.no_room > 0 and "Answer 39" in folded.text
    assert "Question 0 " not in folded.text and "left out" in folded.notice()
    notice = chat_tab.chat_notice(registry, "x", "And now?", history, 96, model=HUB_QWEN)
    assert "oldest turns were left out" in notice


def test_a_hub_model_on_disk_is_a_base_to_finetune_and_one_not_on_disk_says_how_to_get_it(registry):
    base = registry.base_model(HUB_QWEN)
    assert base.source == str(registry.resolve(HUB_QWEN).path) and base.config.qk_norm
    with pytest.raises(ValueError, match="`hf download Qwen/Qwen3-0.6B`"):
        registry.base_model("qwen3-0.6b")


def test_the_cache_listing_skips_what_the_app_cannot_load(registry, hub_cache):
    other = hub_cache / "models--test-org--bert" / "snapshots" / "abc"
    other.mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert "test-org/bert" not in registry.names() and constants.HF_HUB_OFFLINE


def test_views_without_a_model_on_disk_say_so(registry):
    with pytest.raises(ModelUnavailableError, match="is not on disk"):
        registry.load("smollm2-135m")
    assert torch.get_num_threads() >= 1
