"""The views with the architecture switches (issue 31): grouped heads as groups in the attention heatmaps, the
KV cache's key/value heads and bytes, rotary positions in the embeddings view, the switches in the model's summary
and card, and the logit lens, surprisal and beams on a modern model. Event functions on tiny random models."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gpt.cache_cost import cache_bytes  # noqa: E402
from gpt.checkpoint import save_checkpoint  # noqa: E402
from gpt.config import PRESETS, GPTConfig  # noqa: E402
from gpt.model import GPTModel  # noqa: E402
from tests.helpers import TRAINING_TEXT, train_tokenizer  # noqa: E402
from ui import (  # noqa: E402
    attention_tab,
    beams_view,
    embeddings_view,
    generation,
    kv_cache_view,
    lens_view,
    model_card_view,
    picker,
    surprisal_view,
)
from ui.kv_cache_view import mb  # noqa: E402
from ui.registry import ModelRegistry  # noqa: E402

TEXT = "It is a truth universally acknowledged, that a single man"
MODELS = {  # local:<name>: a config each
    "gpt2": GPTConfig.preset("tiny"),
    "modern": GPTConfig.preset("tiny-modern"),
    "grouped": GPTConfig.preset("tiny", n_heads=8, n_kv_heads=4),  # 8 query heads of 8, 4 key/value heads
    "multi-query": GPTConfig.preset("tiny", n_kv_heads=1),
    "rotary": GPTConfig.preset("tiny", positions="rotary"),
}


def frames(fig) -> list:
    """The red frames drawn around the heads of one key/value group."""
    return [s for s in fig.layout.shapes if s.line.color == "#dc2626"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    root = tmp_path_factory.mktemp("models")
    tokenizer = train_tokenizer(TRAINING_TEXT, 300, "tiny-bpe")
    for name, cfg in MODELS.items():
        torch.manual_seed(0)
        save_checkpoint(GPTModel(dataclasses.replace(cfg, vocab_size=300)), root / name, tokenizer)
    return ModelRegistry(root)


def test_grouped_query_heads_are_shown_as_groups(registry) -> None:
    fig, info = attention_tab.attention(registry, "local:grouped", TEXT, 1, "all heads", 1)
    assert "8 query heads in 4 key/value groups" in info
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:4] == ["head 1 · KV 1", "head 2 · KV 1", "head 3 · KV 2", "head 4 · KV 2"]
    boxes = frames(fig)
    assert len(boxes) == 4 and "red frames" in fig.layout.title.text  # two groups of two in each row of four
    assert boxes[0].x0 < 0 < boxes[0].x1 < boxes[1].x0 and boxes[0].y0 == boxes[1].y0 < boxes[2].y0
    one, _ = attention_tab.attention(registry, "local:grouped", TEXT, 2, "one head", 3)
    assert "head 3 · KV 2" in one.layout.title.text


def test_multi_head_and_multi_query_attention(registry) -> None:
    fig, info = attention_tab.attention(registry, "local:gpt2", TEXT, 1, "all heads", 1)
    assert "4 heads." in info and "key/value" not in info
    assert not frames(fig) and "KV" not in fig.layout.annotations[0].text
    fig, info = attention_tab.attention(registry, "local:multi-query", TEXT, 1, "all heads", 1)
    assert "4 query heads in 1 key/value group" in info
    assert len(frames(fig)) == 1  # one row of four: the whole layer is one group


@pytest.mark.parametrize("name, kv_heads", [("gpt2", 4), ("modern", 2), ("grouped", 4), ("multi-query", 1)])
def test_the_kv_cache_view_shows_the_key_value_heads(registry, name: str, kv_heads: int) -> None:
    info, fig = kv_cache_view.kv_cache(registry, f"local:{name}", TEXT, "float32")
    cfg = registry.load(f"local:{name}").model.cfg
    n = len(registry.tokenizer(f"local:{name}").encode(TEXT))
    assert f"**(2 × 1 × {kv_heads} × {n} × {cfg.head_dim})**" in info and "key/value heads × tokens" in info
    assert fig.data[2].y[0] == pytest.approx(2 * 2 * n * kv_heads * cfg.head_dim * 4 / 1e6)
    if kv_heads == cfg.n_heads:
        assert "smaller than multi-head" not in info
    else:
        multi = cache_bytes(dataclasses.replace(cfg, n_kv_heads=None), n)
        assert f"{cfg.n_heads // kv_heads}× smaller than multi-head attention's {mb(multi)}" in info


def test_the_memory_table_compares_the_modern_presets(registry) -> None:
    table = kv_cache_view.memory_table(registry, "local:modern", "float32", 256, 1).set_index("model")
    assert table.loc["local:modern (picked)", "heads / KV heads"] == "4 / 2"
    assert table.loc["shipped-small", "heads / KV heads"] == "8 / 8"
    assert table.loc["shipped-small-modern", "heads / KV heads"] == "8 / 4"
    assert table.loc["shipped-small", "KV cache (batch 1)"] == mb(cache_bytes(PRESETS["shipped-small"], 256))
    assert table.loc["shipped-small-modern", "KV cache (batch 1)"] == mb(cache_bytes(PRESETS["shipped-small"], 256) / 2)


@pytest.mark.parametrize("name", ["rotary", "modern"])
def test_the_embeddings_view_says_rotary_positions_have_no_vectors(registry, name: str) -> None:
    _, _, positions, info = embeddings_view.embeddings(registry, f"local:{name}", "the, a", 2, True)
    assert "positions are rotary" in info and "no position vector" in info
    assert positions.layout.title.text.startswith("No position vectors (rotary)")
    z = positions.data[0].z
    assert z[3][1] == pytest.approx(z[10][8], abs=1e-3) and z[5][5] == pytest.approx(1.0)  # alike for the same offset
    _, _, learned, info = embeddings_view.embeddings(registry, "local:gpt2", "the, a", 2, True)
    assert "rotary" not in info and "learned position vectors" in learned.layout.title.text


def test_the_summary_and_the_card_name_the_switches(registry) -> None:
    modern = picker.show_model(registry, "local:modern")
    assert "Architecture: RMSNorm · rotary positions · SwiGLU · 2 KV heads · QK-norm · no biases" in modern
    assert "Architecture: GPT-2's" in picker.show_model(registry, "local:gpt2")
    _, _, figures = model_card_view.model_card(registry, "local:modern")
    assert figures.startswith("**Architecture**: RMSNorm · rotary positions · SwiGLU · 2 KV heads · QK-norm")
    _, _, figures = model_card_view.model_card(registry, "local:gpt2")
    assert "Architecture" not in figures


@pytest.mark.parametrize("name", ["modern", "grouped", "rotary"])
def test_lens_surprisal_and_beams_on_switched_models(registry, name: str) -> None:
    model = f"local:{name}"
    grid, _, info = lens_view.lens(registry, model, TEXT, 0)
    assert len(grid.data[0].z) == registry.load(model).model.cfg.n_layers + 1
    first, _, info, _ = surprisal_view.surprisal(registry, model, TEXT, surprisal_view.NONE)
    assert "bits" in first and "gpt.lens.surprisal_bits" in info
    settings = generation.Settings(temperature=0.8, top_k=40, top_p=0.95, max_new_tokens=6, seed=1)
    table, _ = beams_view.beam_tree(registry, settings, model, TEXT, 3)
    assert table.count("<tr>") == 1 + 3 + 2 and "beam 1 (best)" in table
