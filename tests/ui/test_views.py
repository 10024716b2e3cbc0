"""The views inside the model (issue 18): their event functions on tiny models, our own layout and GPT-2's, and
each named endpoint through `gradio_client` against the app served on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from gradio_client.exceptions import AppError  # noqa: E402

import ui.registry  # noqa: E402
from gpt.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from gpt.config import PRESETS  # noqa: E402
from gpt.generate import SamplingConfig, generate  # noqa: E402
from gpt.instruct.prompt import format_prompt, is_chat_model, is_chat_prompt, wrap_in_chat_prompt  # noqa: E402
from gpt.lens import surprisal_bits  # noqa: E402
from gpt.pretrained import load_gpt2_file  # noqa: E402
from gpt.tokenizer import load_tokenizer  # noqa: E402
from tests.helpers import REPO, TINY, TINY_NAME, make_model_folder  # noqa: E402
from tests.ui import app_client  # noqa: E402
from ui import (  # noqa: E402
    beams_view,
    compare_view,
    embeddings_view,
    generate_tab,
    generation,
    inside,
    kv_cache_view,
    labels,
    lens_view,
    model_card_view,
    surprisal_view,
)
from ui.registry import ModelRegistry  # noqa: E402

GPT2 = "local:gpt2-tiny"  # GPT-2's layout and tokenizer: the tiny Hub-layout model, converted by gpt/pretrained.py
CHAT = "local:chat"  # the tiny instruct model's weights, with the metadata of a chat model (its prompt format)
QUESTION = "What is the plural of mouse?"
TEXT = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
LONG_TEXT = "word " * 20_000  # 100,000 characters
ENDPOINTS = {"/embeddings", "/logit_lens", "/surprisal", "/compare_models", "/beam_tree", "/kv_cache", "/kv_timing",
             "/memory_table"}
CARD_ENDPOINT = "/model_card"  # built under the picker by app.py (ui.model_card_view.build)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_hf):
    root = make_model_folder(tmp_path_factory.mktemp("models"))
    save_checkpoint(load_gpt2_file(tiny_hf[1], TINY), root / "gpt2-tiny", load_tokenizer("gpt2"))
    instruct = load_checkpoint(root / "instruct")
    save_checkpoint(instruct.model, root / "chat", instruct.tokenizer, meta={"prompt_format": "alpaca"})
    (root / "base" / "MODEL_CARD.md").write_text("# base\nA tiny random model for the tests.")
    (root / "base" / "log.csv").write_text("step,tokens_seen,train_loss,val_loss\n1,64,5.9,\n2,128,5.1,5.3\n")
    (root / "base" / "metrics.json").write_text(json.dumps({"held_out_bits_per_byte": 2.0,
                                                            "baselines": {"xz -9": 2.4, "3-gram": 1.9}}))
    return root


@pytest.fixture(scope="module")
def registry(models) -> ModelRegistry:
    return ModelRegistry(models)


client = app_client.client  # the fixture: the app served on 127.0.0.1, on the `registry` above


def fig_json(plot: dict) -> dict:
    return json.loads(plot["plot"])


# -- embeddings (Tokenizer tab) ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["base", GPT2])
def test_embeddings_scatter_neighbours_and_positions(registry, name):
    tokenizer = registry.tokenizer(name)
    words = [w for w in ("the", "a", "truth", "man", "good") if len(tokenizer.encode(" " + w)) == 1]
    fig, table, positions, info = embeddings_view.embeddings(registry, name, ", ".join(words), 2, True)
    sample, typed = fig.data
    assert len(sample.x) == min(embeddings_view.SAMPLE, tokenizer.n_vocab - len(words)) and list(typed.text) == words
    assert list(table["word"]) == words and table.shape == (len(words), 3)
    assert all(len(row.split(", ")) == embeddings_view.N_NEIGHBOURS for row in table.iloc[:, 2])
    cfg = registry.load(name).model.cfg
    side = len(range(0, cfg.context_length, -(-cfg.context_length // embeddings_view.MAX_POSITIONS)))
    assert len(positions.data[0].z) == side and "learned" in positions.layout.title.text
    assert "gpt.embeddings.nearest_tokens" in info
    fig3, *_ = embeddings_view.embeddings(registry, name, words[0], 3, True)
    assert fig3.data[0].type == "scatter3d"


def test_embeddings_name_words_that_are_not_one_token(registry):
    _, table, _, info = embeddings_view.embeddings(registry, "base", "the, xylophonically", 2, True)
    assert list(table["word"]) == ["the"] and "'xylophonically'" in info and "Not one token" in info
    with pytest.raises(ValueError, match="None of the words is a single token"):
        embeddings_view.embeddings(registry, "base", "xylophonically, zqxj", 2, True)
    with pytest.raises(ValueError, match="empty"):
        embeddings_view.embeddings(registry, "base", " , ", 2, True)
    with pytest.raises(ValueError, match="Dimensions must be 2 or 3"):
        embeddings_view.embeddings(registry, "base", "the", 4, True)
    _, table, _, info = embeddings_view.embeddings(registry, "base", ", ".join(["the"] * 3 + list("abcdefghijklmn")),
                                                   2, False)
    assert len(table) <= embeddings_view.MAX_WORDS and f"first {embeddings_view.MAX_WORDS} words" in info


# -- logit lens (Attention tab) -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["base", GPT2])
def test_logit_lens_grid_ends_in_the_models_own_greedy_tokens(registry, name):
    ckpt = registry.load(name)
    grid, trace, info = lens_view.lens(registry, name, TEXT, 0)
    ids = ckpt.tokenizer.encode(TEXT)[: lens_view.MAX_TOKENS]
    heat = grid.data[0]
    assert len(heat.z) == ckpt.model.cfg.n_layers + 1 and len(heat.z[0]) == len(ids)
    with torch.no_grad():
        argmax = ckpt.model(torch.tensor([ids]))[0, :, : ckpt.tokenizer.n_vocab].argmax(-1).tolist()
    assert list(heat.text[-1]) == [labels.id_label(ckpt.tokenizer, i) for i in argmax]
    probability, rank = trace.data
    assert rank.y[-1] == 1 and probability.y[-1] == pytest.approx(heat.z[-1][-1])
    assert f"{len(ids)} tokens × {ckpt.model.cfg.n_layers} layers" in info and "gpt.lens.logit_lens" in info


def test_logit_lens_position_checks_and_long_text(registry):
    grid, trace, _ = lens_view.lens(registry, "base", "one two three four", 2)
    assert grid.layout.shapes[0].x0 == 0.5  # the second column is framed
    with pytest.raises(ValueError, match="Position must be between 0 and"):
        lens_view.lens(registry, "base", "one two", 40)
    with pytest.raises(ValueError, match="whole number"):
        lens_view.lens(registry, "base", "one two", 1.5)
    with pytest.raises(ValueError, match="empty"):
        lens_view.lens(registry, "base", "  ", 0)
    grid, _, info = lens_view.lens(registry, "base", LONG_TEXT, 0)
    assert len(grid.data[0].z[0]) == lens_view.MAX_TOKENS and "only the first 48 are used" in info


# -- surprisal (Attention tab) --------------------------------------------------------------------

def test_surprisal_of_one_model_is_its_loss_in_bits(registry):
    first, second, info, table = surprisal_view.surprisal(registry, "base", TEXT, surprisal_view.NONE)
    ckpt = registry.load("base")
    bits = surprisal_bits(ckpt.model, ckpt.tokenizer.encode(TEXT), ckpt.tokenizer.eot_id, ckpt.tokenizer.n_vocab)
    assert first.count('class="tok"') == len(bits) + 7  # each token, and the legend's seven
    assert f"{float(bits.sum()):,.0f} bits" in first and second == "" and table.empty
    assert f"**{float(bits.sum()) / len(TEXT.encode()):.3f}**" in info and "gpt.lens.surprisal_bits" in info


def test_surprisal_side_by_side_token_by_token_or_word_by_word(registry):
    first, second, info, table = surprisal_view.surprisal(registry, "base", TEXT, "instruct")
    assert "token by token" in info and second.count('class="tok"') == first.count('class="tok"')
    assert len(table) == surprisal_view.N_DIFFERENCES and table.columns[0] == "token"
    diffs = table.iloc[:, 3].abs().tolist()
    assert diffs == sorted(diffs, reverse=True)
    _, second, info, table = surprisal_view.surprisal(registry, "base", TEXT, GPT2)
    assert "word by word" in info and table.columns[0] == "word" and "bits: local:gpt2-tiny" in table.columns
    assert set(table["word"]) <= {repr(w.strip(",")) for w in TEXT.split()} | {repr(w) for w in TEXT.split()}


def test_surprisal_cuts_to_every_models_window(registry):
    _, _, info, _ = surprisal_view.surprisal(registry, "base", LONG_TEXT, GPT2)  # GPT-2 tiny reads 64 tokens
    assert "characters are scored: what fits every model's window" in info and "| local:gpt2-tiny | 64 |" in info
    with pytest.raises(ValueError, match="empty"):
        surprisal_view.surprisal(registry, "base", "", "instruct")
    with pytest.raises(ValueError, match="unknown model"):
        surprisal_view.surprisal(registry, "base", TEXT, "gpt-5")


def test_two_gpt2_sizes_are_refused_before_loading(registry, monkeypatch):
    monkeypatch.setattr(registry, "load", lambda name: pytest.fail(f"loaded {name}"))
    with pytest.raises(ValueError, match="Two GPT-2 sizes at once"):
        surprisal_view.surprisal(registry, "gpt2-small", TEXT, "gpt2-xl")
    with pytest.raises(ValueError, match="Two GPT-2 sizes at once"):
        compare_view.compare(registry, "gpt2-medium", "gpt2-large", TEXT, 4)


def test_views_on_a_gpt2_size_through_the_registry(registry, tiny_cached, monkeypatch):
    """The registry's GPT-2 path (Hub cache, offline), with the tiny Hub-layout model standing in for a size."""
    monkeypatch.setattr(ui.registry, "GPT2_SIZES", (*ui.registry.GPT2_SIZES, TINY_NAME))
    grid, _, _ = lens_view.lens(registry, TINY_NAME, TEXT, 0)
    assert len(grid.data[0].z) == TINY.n_layers + 1
    _, _, info, table = surprisal_view.surprisal(registry, TINY_NAME, TEXT, GPT2)
    assert "token by token" in info and (table.iloc[:, 3].abs() < 1e-3).all()  # the same weights, twice
    card, curve, _ = model_card_view.model_card(registry, TINY_NAME)
    assert "OpenAI's GPT-2" in card and curve is None


# -- model against model, beams, KV cache (Generate tab) --------------------------------------------

def test_compare_two_models_with_one_tokenizer_and_with_two(registry):
    fig, first, second, info = compare_view.compare(registry, "base", "instruct", TEXT, 5)
    assert [bar.name for bar in fig.data] == ["base", "instruct"] and "share a tokenizer" in info
    assert None not in fig.data[0].y and None not in fig.data[1].y
    greedy = SamplingConfig(max_new_tokens=5, temperature=0)
    for name, text in (("base", first), ("instruct", second)):
        ckpt = registry.load(name)
        tok = ckpt.tokenizer
        assert text == tok.decode(generate(ckpt.model, tok.encode(TEXT), greedy, tok.eot_id, vocab_size=tok.n_vocab))
    fig, _, _, info = compare_view.compare(registry, "base", GPT2, TEXT, 3)
    assert "different tokenizers" in info and len(fig.data[0].x) <= 2 * compare_view.TOP
    with pytest.raises(ValueError, match="Max new tokens must be between 1 and 64"):
        compare_view.compare(registry, "base", "instruct", TEXT, 100)
    _, _, _, info = compare_view.compare(registry, "base", GPT2, LONG_TEXT, 2)
    assert "base: The text has" in info and "local:gpt2-tiny: The text has" in info and "at most 64" in info


def test_beam_tree_lists_every_beam_then_greedy_and_sampled(registry):
    settings = generation.Settings(temperature=0.8, top_k=40, top_p=0.95, max_new_tokens=6, seed=1)
    table, info = beams_view.beam_tree(registry, settings, "base", TEXT, 3)
    assert table.count("<tr>") == 1 + 3 + 2 and "beam 1 (best)" in table and "greedy" in table
    assert "sampled (T=0.8, seed 1)" in table and "gpt.generate.search_beams" in info
    table, _ = beams_view.beam_tree(registry, settings, "base", TEXT, 1)
    assert "greedy = beam 1" in table  # one beam is greedy
    with pytest.raises(ValueError, match="Beams must be between 1 and 8"):
        beams_view.beam_tree(registry, settings, "base", TEXT, 9)
    with pytest.raises(ValueError, match="Temperature"):
        beams_view.beam_tree(registry, dataclasses.replace(settings, temperature=99), "base", TEXT, 2)


def test_kv_cache_follows_the_prompt(registry):
    info, fig = kv_cache_view.kv_cache(registry, "base", "one two three", "float32")
    cfg = registry.load("base").model.cfg
    n = len(registry.tokenizer("base").encode("one two three"))
    assert f"({cfg.n_layers} × 1 × {cfg.n_heads} × {n} × {cfg.head_dim})" in info
    assert fig.data[2].x == (n,) and fig.data[2].y[0] == pytest.approx(2 * cfg.n_layers * n * cfg.emb_dim * 4 / 1e6)
    half, _ = kv_cache_view.kv_cache(registry, "base", "one two three", "bfloat16")
    assert "in bfloat16" in half
    with pytest.raises(ValueError, match="Precision must be one of"):
        kv_cache_view.kv_cache(registry, "base", "one", "int3")


def test_kv_cache_grows_by_one_position_per_one_token_step(registry):
    prompt = "one two"
    before, _ = kv_cache_view.kv_cache(registry, "base", prompt, "float32")
    prompt, _, _ = generate_tab.one_token(registry, "base", prompt, 0.0, 0, 1.0, 0)
    after, _ = kv_cache_view.kv_cache(registry, "base", prompt, "float32")
    n = len(registry.tokenizer("base").encode(prompt))
    assert f"After reading {n} tokens" in after and f"After reading {n} tokens" not in before


def test_kv_timing_and_memory_table(registry):
    info = kv_cache_view.kv_timing(registry, "base", TEXT, 3)
    assert "with the KV cache" in info and info.count(" ms**") == 2
    with pytest.raises(ValueError, match="Tokens to time"):
        kv_cache_view.kv_timing(registry, "base", TEXT, 100)
    table = kv_cache_view.memory_table(registry, "base", "bfloat16", 1000, 2)
    assert list(table["model"]) == ["base (picked)", *PRESETS, *kv_cache_view.open_model_configs()]
    small = table.set_index("model").loc["gpt2-small"]
    assert small["tokens cached"] == 1000 and small["weights"] == "248.88 MB"
    assert kv_cache_view.memory_table(ModelRegistry(registry.root / "nothing"), "base", "float32", 10, 1).shape[0] \
        == len(PRESETS) + len(kv_cache_view.open_model_configs())
    for bad in (("float32", 0, 1), ("float32", 10, 100), ("fp8", 10, 1)):
        with pytest.raises(ValueError):
            kv_cache_view.memory_table(registry, "base", *bad)


# -- a chat model reads its chat prompt (issue 30) ----------------------------------------------------

def wrapped(text: str = QUESTION) -> str:
    return format_prompt({"instruction": text, "input": ""})


def greedy_text(registry: ModelRegistry, name: str, prompt: str, new_tokens: int) -> str:
    ckpt = registry.load(name)
    tok = ckpt.tokenizer
    cfg = SamplingConfig(max_new_tokens=new_tokens, temperature=0)
    return tok.decode(generate(ckpt.model, tok.encode(prompt), cfg, tok.eot_id, vocab_size=tok.n_vocab))


def test_a_chat_model_is_told_by_its_metadata_and_its_text_wrapped_once():
    chat = {"prompt_format": "alpaca", "steps": 3}
    assert is_chat_model(chat) and not is_chat_model({"steps": 3}) and not is_chat_model(None)
    assert wrap_in_chat_prompt(chat, f" {QUESTION}\n") == wrapped() and is_chat_prompt(wrapped())
    assert wrap_in_chat_prompt(chat, wrapped() + "mi") == wrapped() + "mi"  # a chat prompt already: as it is
    assert wrap_in_chat_prompt(chat, QUESTION, wrap=False) == QUESTION == wrap_in_chat_prompt({}, QUESTION)


def test_the_chat_prompt_shown_is_the_one_a_chat_model_reads(registry):
    assert inside.chat_prompt_shown(registry, [CHAT], QUESTION, True) == wrapped()
    assert inside.chat_prompt_shown(registry, ["base", CHAT], QUESTION, True) == wrapped()
    for names, wrap in (([CHAT], False), (["base"], True), (["base", GPT2, "gpt2-small", "gpt-5", None], True)):
        assert inside.chat_prompt_shown(registry, names, QUESTION, wrap) == ""
    assert inside.chat_prompt_shown(registry, [CHAT], "  ", True) == ""


def test_generate_wraps_a_chat_models_prompt_and_a_plain_models_not(registry):
    text, notice = list(generate_tab.generate(registry, CHAT, QUESTION, 0.0, 0, 1.0, 6, 0, True))[-1]
    assert text == greedy_text(registry, CHAT, wrapped(), 6) and "chat model" not in notice
    req = generation.make_request(registry, CHAT, QUESTION, generation.Settings(0, 0, 1, 1, 0, wrap=True))
    assert req.wrapped and req.prompt == wrapped() and req.ids == registry.tokenizer(CHAT).encode(wrapped())
    text, notice = list(generate_tab.generate(registry, CHAT, QUESTION, 0.0, 0, 1.0, 6, 0, False))[-1]
    assert text == greedy_text(registry, CHAT, QUESTION, 6) and "local:chat is a chat model" in notice
    assert "Wrap in the chat prompt" in notice  # bare text for a chat model is said, never silent
    plain = generation.make_request(registry, "base", QUESTION, generation.Settings(0, 0, 1, 1, 0, wrap=True))
    assert not plain.wrapped and plain.prompt == QUESTION and not any(plain.notices)
    text, notice = list(generate_tab.generate(registry, "base", QUESTION, 0.0, 0, 1.0, 6, 0, True))[-1]
    assert text == greedy_text(registry, "base", QUESTION, 6) and notice == ""


def test_one_token_beams_and_charts_read_the_chat_prompt(registry):
    text, _, _ = generate_tab.one_token(registry, CHAT, QUESTION, 0.0, 0, 1.0, 0, True)
    first = greedy_text(registry, CHAT, wrapped(), 1)
    assert text == wrapped() + first  # the box now holds the chat prompt: the next step reads it as it is
    again, _, _ = generate_tab.one_token(registry, CHAT, text, 0.0, 0, 1.0, 0, True)
    assert again == wrapped() + greedy_text(registry, CHAT, wrapped(), 2)
    assert generate_tab.one_token(registry, "base", QUESTION, 0.0, 0, 1.0, 0, True)[0].startswith(QUESTION)
    best, notice = generate_tab.beams(registry, CHAT, QUESTION, 1, 4, True)
    assert best == greedy_text(registry, CHAT, wrapped(), 4) and "chat model" not in notice
    bars, _, notice = generate_tab.next_token_charts(registry, CHAT, QUESTION, 1.0, 0, 1.0, True)
    assert notice == "" and "chat model" in generate_tab.next_token_charts(registry, CHAT, QUESTION, 1.0, 0, 1.0)[2]
    settings = generation.Settings(temperature=0.8, top_k=40, top_p=0.95, max_new_tokens=4, seed=1, wrap=True)
    table, info = beams_view.beam_tree(registry, settings, CHAT, QUESTION, 1)
    assert "greedy = beam 1" in table and "chat model" not in info
    assert "chat model" in beams_view.beam_tree(registry, dataclasses.replace(settings, wrap=False), CHAT, QUESTION,
                                                1)[1]


def test_the_kv_cache_holds_the_chat_prompt(registry):
    n = len(registry.tokenizer(CHAT).encode(wrapped()))
    info, _ = kv_cache_view.kv_cache(registry, CHAT, QUESTION, "float32", True)
    assert f"After reading {n} tokens" in info
    info, _ = kv_cache_view.kv_cache(registry, "base", QUESTION, "float32", True)
    assert f"After reading {len(registry.tokenizer('base').encode(QUESTION))} tokens" in info
    assert "with the KV cache" in kv_cache_view.kv_timing(registry, CHAT, QUESTION, 2, True)


def test_compare_wraps_the_chat_models_prompt_alone(registry):
    _, first, second, info = compare_view.compare(registry, "base", CHAT, QUESTION, 4, True)
    assert first == greedy_text(registry, "base", QUESTION, 4) and second == greedy_text(registry, CHAT, wrapped(), 4)
    assert "**base** reads your prompt as it is; **local:chat** reads the chat prompt above" in info
    _, first, second, info = compare_view.compare(registry, "base", CHAT, QUESTION, 4, False)
    assert second == greedy_text(registry, CHAT, QUESTION, 4) and "local:chat is a chat model" in info
    _, first, _, info = compare_view.compare(registry, "base", "instruct", QUESTION, 4, True)
    assert first == greedy_text(registry, "base", QUESTION, 4) and "chat" not in info


def test_surprisal_scores_the_chat_prompt_with_every_model(registry):
    n = len(registry.tokenizer(CHAT).encode(wrapped()))
    first, second, info, table = surprisal_view.surprisal(registry, CHAT, QUESTION, "base", True)
    assert first.count('class="tok"') == second.count('class="tok"') == n + 7  # the legend's seven
    assert "Both models score the chat prompt around your text, as **local:chat** reads it" in info
    assert "gpt.instruct.prompt.wrap_in_chat_prompt" in info and table.columns[0] == "token"
    first, _, info, _ = surprisal_view.surprisal(registry, CHAT, QUESTION, surprisal_view.NONE, False)
    assert first.count('class="tok"') == len(registry.tokenizer(CHAT).encode(QUESTION)) + 7
    assert "local:chat is a chat model" in info
    first, _, info, _ = surprisal_view.surprisal(registry, "base", QUESTION, surprisal_view.NONE, True)
    assert first.count('class="tok"') == len(registry.tokenizer("base").encode(QUESTION)) + 7 and "chat" not in info


def test_logit_lens_reads_the_chat_prompt_and_shows_its_end(registry):
    ckpt = registry.load(CHAT)
    ids = ckpt.tokenizer.encode(wrapped())
    assert len(ids) > lens_view.MAX_TOKENS  # the grid shows the prompt's end, where the answer starts
    grid, _, info = lens_view.lens(registry, CHAT, QUESTION, 0, True)
    with torch.no_grad():
        argmax = ckpt.model(torch.tensor([ids]))[0, -lens_view.MAX_TOKENS:, : ckpt.tokenizer.n_vocab].argmax(-1)
    assert list(grid.data[0].text[-1]) == [labels.id_label(ckpt.tokenizer, i) for i in argmax.tolist()]
    assert list(grid.layout.xaxis.ticktext) == [labels.id_label(ckpt.tokenizer, i) for i in ids[-lens_view.MAX_TOKENS:]]
    assert f"the chat prompt around your text ({len(ids)} tokens" in info and "wrap_in_chat_prompt" in info
    grid, _, info = lens_view.lens(registry, CHAT, QUESTION, 0, False)
    assert len(grid.data[0].z[0]) == len(ckpt.tokenizer.encode(QUESTION)) and "local:chat is a chat model" in info
    grid, _, info = lens_view.lens(registry, "base", QUESTION, 0, True)
    assert len(grid.data[0].z[0]) == len(registry.tokenizer("base").encode(QUESTION)) and "chat" not in info
    with pytest.raises(ValueError, match="Position must be between 0 and 48"):
        lens_view.lens(registry, CHAT, QUESTION, 49, True)


# -- how the model was made (under the picker) ---------------------------------------------------

def test_model_card_shows_card_curve_and_baselines(registry):
    card, curve, figures = model_card_view.model_card(registry, "base")
    assert card.startswith("# base") and [t.name for t in curve.data] == ["train", "validation (held out)"]
    assert "| xz -9 | 2.400 | ✓ beaten |" in figures and "| 3-gram | 1.900 | ✗ not beaten |" in figures
    card, curve, figures = model_card_view.model_card(registry, "instruct")
    assert "has no MODEL_CARD.md in its folder, and no training log" in card and curve is None
    assert figures.startswith("Where the code is: `gpt.model_card.read_history`")
    with pytest.raises(ValueError, match="unknown model"):
        model_card_view.model_card(registry, "gpt-5")


def test_model_card_of_a_run_trained_in_the_app(registry, models, tmp_path):
    """A Train-tab run keeps its card and log in the run folder, around its `model/` checkpoint."""
    run = tmp_path / "runs" / "story"
    base = registry.load("base")
    save_checkpoint(base.model, run / "model", base.tokenizer, meta={"steps": 2})
    (run / "MODEL_CARD.md").write_text("# A GPT pretrained from scratch\n2 steps.")
    (run / "log.csv").write_text("step,tokens_seen,train_loss\n1,64,6.0\n2,128,5.5\n")
    card, curve, figures = model_card_view.model_card(ModelRegistry(models, runs_root=tmp_path / "runs"), "run:story")
    assert card.startswith("# A GPT pretrained") and list(curve.data[0].y) == [6.0, 5.5]
    assert "gpt.pretrain.state.loss_figure" in figures


def test_model_card_of_the_shipped_chat_model():
    card, curve, figures = model_card_view.model_card(ModelRegistry(), "instruct")
    assert "instruct" in card.splitlines()[0] and curve.data[0].name == "train"  # its losses per epoch
    assert "Held-out evaluation" in figures and "| addition |" in figures


def test_every_view_names_its_code():
    line = inside.where(lens_view.logit_lens, kv_cache_view.cache_bytes)
    match = re.fullmatch(r"Where the code is: `gpt.lens.logit_lens` \(gpt/lens.py:(\d+)\), "
                         r"`gpt.cache_cost.cache_bytes` \(gpt/cache_cost.py:(\d+)\)\.", line)
    lens_line, cost_line = (int(n) for n in match.groups())
    assert (REPO / "gpt" / "lens.py").read_text().splitlines()[lens_line - 1].startswith("def logit_lens(")
    assert (REPO / "gpt" / "cache_cost.py").read_text().splitlines()[cost_line - 1].startswith("def cache_bytes(")


# -- the named endpoints, through gradio_client (app_client's fixture: the app on this registry) -------------

def test_each_view_has_a_named_endpoint(client):
    assert set(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) >= ENDPOINTS


def test_endpoints_answer(client):
    plot, table, positions, info = client.predict("base", "the, a", "2", True, api_name="/embeddings")
    assert plot["type"] == "plotly" and table["headers"][0] == "word" and "nearest_tokens" in info
    grid, trace, info = client.predict("base", TEXT, 0, api_name="/logit_lens")
    assert len(fig_json(grid)["data"][0]["z"]) == 3 and "layers" in info
    first, second, info, table = client.predict("base", TEXT, "instruct", api_name="/surprisal")
    assert first.count('class="tok"') == second.count('class="tok"') and "bits per byte" in info
    plot, first, second, info = client.predict("base", GPT2, TEXT, 4, api_name="/compare_models")
    assert [t["name"] for t in fig_json(plot)["data"]] == ["base", GPT2] and "different tokenizers" in info
    table, info = client.predict("base", TEXT, 2, 4, 0.8, 40, 0.95, 1, api_name="/beam_tree")
    assert "beam 2" in table and "sampled" in table
    info, plot = client.predict("base", TEXT, "float16", api_name="/kv_cache")
    assert "in float16" in info and plot["type"] == "plotly"
    assert "without (the whole text again)" in client.predict("base", TEXT, 2, api_name="/kv_timing")
    table = client.predict("base", "float32", 512, 1, api_name="/memory_table")
    assert [row[0] for row in table["data"]] == ["base (picked)", *PRESETS, *kv_cache_view.open_model_configs()]


def test_endpoints_take_wrap_last_and_leave_it_off_when_not_sent(client, registry):
    """`wrap` is each endpoint's last value: callers that send what they sent before get the text read as it is."""
    text, notice = client.predict(CHAT, QUESTION, 0.0, 0, 1.0, 4, 0, True, api_name="/generate")
    assert text == greedy_text(registry, CHAT, wrapped(), 4) and not notice
    text, notice = client.predict(CHAT, QUESTION, 0.0, 0, 1.0, 4, 0, api_name="/generate")
    assert text == greedy_text(registry, CHAT, QUESTION, 4) and "local:chat is a chat model" in notice
    text, _, _ = client.predict(CHAT, QUESTION, 0.0, 0, 1.0, 0, True, api_name="/one_token")
    assert text.startswith(wrapped())
    *_, info = client.predict(CHAT, QUESTION, 0, True, api_name="/logit_lens")
    assert "the chat prompt around your text" in info
    *_, info, _ = client.predict(CHAT, QUESTION, "none", True, api_name="/surprisal")
    assert "The model scores the chat prompt" in info
    *_, second, info = client.predict("base", CHAT, QUESTION, 4, True, api_name="/compare_models")
    assert second == greedy_text(registry, CHAT, wrapped(), 4)
    table, info = client.predict(CHAT, QUESTION, 1, 4, 0.8, 40, 0.95, 1, True, api_name="/beam_tree")
    assert "greedy = beam 1" in table and "chat model" not in info
    n = len(registry.tokenizer(CHAT).encode(wrapped()))
    assert f"After reading {n} tokens" in client.predict(CHAT, QUESTION, "float32", True, api_name="/kv_cache")[0]


def test_model_card_endpoint(client):
    assert CARD_ENDPOINT in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    card, curve, figures = client.predict("base", api_name=CARD_ENDPOINT)
    assert card.startswith("# base") and curve["type"] == "plotly" and "beaten" in figures


BAD_INPUT = [
    (("base", "", "2", True), "/embeddings", "empty"),
    (("base", "xylophonically", "2", True), "/embeddings", "None of the words is a single token"),
    (("base", "the", 5, True), "/embeddings", "5 is not"),
    (("base", "one two", 30, ), "/logit_lens", "Position must be between 0 and"),
    (("base", "   ", 0), "/logit_lens", "empty"),
    (("base", "", "instruct"), "/surprisal", "empty"),
    (("gpt2-small", TEXT, "gpt2-medium"), "/surprisal", "Two GPT-2 sizes at once"),
    (("base", TEXT, "gpt-5"), "/surprisal", "unknown model"),
    (("base", "nope-model", TEXT, 4), "/compare_models", "unknown model"),
    (("base", TEXT, 2, 400, 0.8, 40, 0.95, 1), "/beam_tree", "Max new tokens must be between 1 and 128"),
    (("base", "", "float32"), "/kv_cache", "empty"),
    (("base", TEXT, 100), "/kv_timing", " and 32, got "),
    (("base", "float32", 10**6, 1), "/memory_table", " and 8192, got "),
]


@pytest.mark.parametrize(("args", "endpoint", "message"), BAD_INPUT, ids=[f"{e}-{m}" for _, e, m in BAD_INPUT])
def test_bad_input_gets_a_message(client, args, endpoint, message):
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=endpoint)
    assert message in str(info.value) and "Traceback" not in str(info.value)


def test_100k_characters_are_cut_with_a_notice(client):
    *_, info = client.predict("base", LONG_TEXT, 0, api_name="/logit_lens")
    assert "only the first 48 are used" in info
    _, _, info, _ = client.predict("base", LONG_TEXT, "none", api_name="/surprisal")
    assert "what fits every model's window" in info
    info, _ = client.predict("base", LONG_TEXT, "float32", api_name="/kv_cache")
    assert "only the last 512 are used" in info and "After reading 512 tokens" in info
