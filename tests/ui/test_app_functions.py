"""The app's event functions and model registry, called directly on tiny random models."""

from __future__ import annotations

import math
import types
from itertools import pairwise

import gradio as gr
import numpy as np
import pytest
import torch

from gpt.checkpoint import Checkpoint
from gpt.config import GPT2_SIZES, GPTConfig
from gpt.generate import SamplingConfig
from gpt.instruct.prompt import chat_stream
from gpt.open_models import CATALOGUE
from gpt.tokenizer import END_OF_TEXT, load_tokenizer
from tests.helpers import make_model_folder
from ui import attention_tab, chat_tab, common, generate_tab, labels, picker, spam_tab, tokenizer_tab
from ui.generation import Settings, make_request
from ui.registry import ModelRegistry, ModelUnavailableError, UnknownModelError

LONG_TEXT = "word " * 20_000  # 100,000 characters


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    return make_model_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture
def registry(models) -> ModelRegistry:
    return ModelRegistry(models)


@pytest.fixture
def empty_registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path)


# -- registry ----------------------------------------------------------------------------------

def test_registry_lists_shipped_local_and_gpt2(models, tmp_path):
    registry = ModelRegistry(models)
    assert registry.base_names() == ["base", "instruct", *GPT2_SIZES]
    assert registry.names()[:len(GPT2_SIZES) + 2 + len(CATALOGUE)] == [*registry.base_names(), *CATALOGUE]
    assert registry.default() == "base"
    (models / "mine").symlink_to(models / "base", target_is_directory=True)
    try:
        assert "local:mine" in ModelRegistry(models).names()
        assert ModelRegistry(models).load("local:mine").model.cfg == registry.load("base").model.cfg
    finally:
        (models / "mine").unlink()
    assert ModelRegistry(tmp_path).base_names() == list(GPT2_SIZES)


@pytest.mark.parametrize("name", ["nope", "", "gpt2-tiny", "local:", "local:../..", "local:/etc", "/etc/passwd"])
def test_registry_rejects_unknown_names_and_paths_outside_its_folder(registry, name):
    with pytest.raises(UnknownModelError):
        registry.resolve(name)


@pytest.mark.parametrize("name", [12, ["base"], {"a": 1}, 1.5, "local:" + "x" * 300, "run:" + "y" * 300])
def test_registry_names_that_are_not_short_text_are_refused_clearly(registry, name):
    with pytest.raises(UnknownModelError, match="a model name is text|no model has a name of"):
        registry.resolve(name)


def test_registry_messages_name_no_server_path(registry):
    for name in ("nope", "local:../..", "local:nothing-here"):
        try:
            registry.load(name)
        except (UnknownModelError, ModelUnavailableError) as err:
            assert str(registry.root) not in str(err) and "/" not in str(err).replace("local:../..", "")
        else:
            raise AssertionError(f"{name} loaded")


def test_registry_holds_one_gpt2_at_a_time(registry, monkeypatch):
    """GPT-2 sizes take gigabytes: the one loaded before is dropped before the next one loads."""
    import gpt.pretrained

    held = []

    def fake(name, **kwargs):
        cached = [k[1] for k in registry._cache if k[1] in GPT2_SIZES]
        held.append((name, cached))
        return types.SimpleNamespace(model=torch.nn.Linear(1, 1))

    monkeypatch.setattr(gpt.pretrained, "load_pretrained", fake)
    registry.load("base")
    registry.load("gpt2-small")
    registry.load("gpt2-medium")
    assert held == [("gpt2-small", []), ("gpt2-medium", [])]
    assert [k[1] for k in registry._cache] == ["base", "gpt2-medium"]


def test_registry_caches_and_evicts_least_recently_used(models):
    registry = ModelRegistry(models, capacity=1)
    base = registry.load("base")
    assert registry.load("base") is base
    instruct = registry.load("instruct")
    assert registry.load("instruct") is instruct  # the most recent one stays
    assert registry.load("base") is not base  # reloaded after eviction


def test_missing_shipped_model_is_a_clear_error(empty_registry):
    with pytest.raises(ModelUnavailableError, match="'base' is not available"):
        empty_registry.load("base")
    assert "not available" in picker.show_model(empty_registry, "base")


def test_gpt2_sizes_go_through_the_weight_loader(registry, monkeypatch):
    import gpt.pretrained

    calls = []

    def offline(name, **kwargs):
        calls.append(name)
        raise gpt.pretrained.WeightsUnavailableError(f"{name}: offline and not in the cache")

    monkeypatch.setattr(gpt.pretrained, "load_pretrained", offline)
    assert "offline and not in the cache" in picker.show_model(registry, "gpt2-medium")
    assert calls == ["gpt2-medium"]
    assert registry.tokenizer("gpt2-xl").n_vocab == 50257  # the tokenizer needs no weights


def test_picker_summary_describes_the_model(registry):
    summary = picker.show_model(registry, "base")
    assert "2 layers" in summary and "4 heads" in summary and "context 512" in summary
    with pytest.raises(UnknownModelError):
        picker.show_model(registry, "nope")


# -- error handling ----------------------------------------------------------------------------

def test_user_errors_turns_failures_into_messages():
    def bad_input():
        raise ValueError("the text is empty")

    def bug():
        raise RuntimeError("internal detail")

    def stream():
        yield 1
        raise ValueError("bad second step")

    with pytest.raises(gr.Error, match="the text is empty"):
        common.user_errors(bad_input)()
    with pytest.raises(gr.Error) as info:
        common.user_errors(bug)()
    assert "internal detail" not in str(info.value) and "still running" in str(info.value)
    wrapped = common.user_errors(stream)
    assert [next(wrapped())] == [1]
    with pytest.raises(gr.Error, match="bad second step"):
        list(wrapped())


@pytest.mark.parametrize("value", [None, "3", float("nan"), True, -1, 11, 2.5])
def test_check_number_rejects(value):
    with pytest.raises(ValueError):
        common.check_number(value, "x", 0, 10, integer=True)


# -- tokenizer tab -----------------------------------------------------------------------------

def tokenize(registry, text, allow_special=False, vocab=300):
    return tokenizer_tab.tokenize(registry, "base", text, allow_special, tokenizer_tab.default_training_text(), vocab)


def test_tokenizer_tab_counts_and_views(registry):
    text = "Hello  world\nhello!"
    model_html, table, counts, gpt2_html, trained_html, chars_html, special, notices = tokenize(registry, text)
    gpt2_ids = load_tokenizer("gpt2").encode(text)
    rows = counts.set_index("tokenizer")
    assert rows.loc["GPT-2 BPE", "tokens"] == len(gpt2_ids)
    assert rows.loc["characters", "tokens"] == len(text)
    assert rows["characters"].tolist() == [len(text)] * 4
    assert table["id"].tolist() == registry.tokenizer("base").encode(text)
    assert gpt2_html.count('class="tok c') == len(gpt2_ids)
    assert "␣" in chars_html and "↵" in chars_html  # whitespace is visible
    assert f">{gpt2_ids[0]}</small>" in gpt2_html  # ids under the tokens
    assert notices == ""


def test_tokenizer_tab_special_token_switch(registry):
    text = f"a{END_OF_TEXT}b"
    plain = tokenize(registry, text)[2].set_index("tokenizer").loc["GPT-2 BPE", "tokens"]
    special = tokenize(registry, text, allow_special=True)
    assert special[2].set_index("tokenizer").loc["GPT-2 BPE", "tokens"] == 3 < plain
    assert "special token" in special[6]


def test_tokenizer_tab_shows_bytes_of_split_characters(registry):
    html = tokenize(registry, "🙂")[4]  # the trained BPE never saw an emoji: it falls back to bytes
    assert "&lt;f0&gt;" in html


def test_tokenizer_tab_trains_bpe_of_the_chosen_size():
    trained = tokenizer_tab.trained_tokenizer(tokenizer_tab.default_training_text(), 400)
    assert trained.n_vocab == 400
    assert trained.decode(trained.encode("Mr. Darcy")) == "Mr. Darcy"


def test_tokenizer_tab_long_text_is_cut_with_notices(registry):
    html, table, counts, *_, notices = tokenize(registry, LONG_TEXT + "extra")
    assert "first 100,000" in notices and "first 1,000 tokens" in notices
    assert html.count('class="tok c') == labels.MAX_SHOWN_TOKENS == len(table)


@pytest.mark.parametrize("args", [("", False, "x", 300), ("  ", False, "x", 300), ("hi", False, "", 300),
                                  ("hi", False, "x", 256), ("hi", False, "x", 10_000)])
def test_tokenizer_tab_rejects_bad_input(registry, args):
    with pytest.raises(ValueError):
        tokenizer_tab.tokenize(registry, "base", *args)


# -- attention tab -----------------------------------------------------------------------------

def test_attention_heatmap_is_causal_and_rows_sum_to_one(registry):
    text = "the cat the cat the cat"
    fig, info = attention_tab.attention(registry, "base", text, 2, "one head", 3)
    z = np.array(fig.data[0].z, dtype=float)
    n = len(registry.tokenizer("base").encode(text))
    assert z.shape == (n, n)
    assert np.isnan(z[np.triu_indices(n, k=1)]).all()  # the mask: no token sees the future
    assert np.allclose(np.nansum(z, axis=1), 1, atol=1e-5)
    assert list(fig.layout.xaxis.tickvals) == list(range(n))  # repeated tokens keep their own position
    assert len(set(fig.layout.xaxis.ticktext)) < n
    assert f"{n} tokens" in info


def test_attention_views_match_the_model(registry):
    model = registry.load("base").model
    ids = registry.tokenizer("base").encode("one two three")
    maps = model.attention_maps(torch.tensor([ids]))
    n, n_heads = len(ids), model.cfg.n_heads
    lower = np.tril_indices(n)
    grid, _ = attention_tab.attention(registry, "base", "one two three", 1, "all heads", 1)
    tiles = np.array(grid.data[0].z, dtype=float)  # every head tiled into one map, NaN between tiles
    step, cols = n + 2, min(attention_tab.GRID_COLUMNS, n_heads)
    for h in range(n_heads):
        r, c = divmod(h, cols)
        tile = tiles[r * step : r * step + n, c * step : c * step + n]
        assert np.allclose(tile[lower], maps[0][0, h].numpy()[lower], atol=1e-6)
        assert np.isnan(tile[np.triu_indices(n, k=1)]).all()
    assert [a.text for a in grid.layout.annotations] == [f"head {h + 1}" for h in range(n_heads)]
    mean, _ = attention_tab.attention(registry, "base", "one two three", 1, "mean over heads", 1)
    got = np.array(mean.data[0].z, dtype=float)
    assert np.allclose(got[lower], maps[0][0].mean(0).numpy()[lower], atol=1e-6)


def test_attention_long_text_is_cut(registry):
    fig, info = attention_tab.attention(registry, "base", LONG_TEXT, 1, "one head", 1)
    assert len(fig.data[0].z) == attention_tab.MAX_TOKENS
    assert "first 128" in info


@pytest.mark.parametrize("args", [("", 1, "one head", 1), ("hi", 0, "one head", 1), ("hi", 3, "one head", 1),
                                  ("hi", 1, "one head", 5), ("hi", 1, "sideways", 1), ("hi", 1.5, "one head", 1)])
def test_attention_rejects_bad_input(registry, args):
    with pytest.raises(ValueError):
        attention_tab.attention(registry, "base", *args)


def test_attention_sliders_follow_the_model(registry, empty_registry):
    layer, head = attention_tab.slider_limits(registry, "base")
    assert layer["maximum"] == 2 and head["maximum"] == 4
    assert attention_tab.slider_limits(empty_registry, "base") == (gr.update(), gr.update())


# -- generate tab ------------------------------------------------------------------------------

SETTINGS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}


def test_generate_streams_a_growing_reproducible_text(registry):
    outputs = list(generate_tab.generate(registry, "base", "It is a truth", max_new_tokens=12, seed=7, **SETTINGS))
    texts = [text for text, _ in outputs]
    assert texts[0] == "" and len(texts) >= 2
    assert all(a == b[: len(a)] or "\ufffd" in a for a, b in pairwise(texts))
    again = [t for t, _ in generate_tab.generate(registry, "base", "It is a truth", max_new_tokens=12, seed=7,
                                                 **SETTINGS)]
    assert again == texts


def test_generate_greedy_matches_argmax(registry):
    ckpt = registry.load("base")
    prompt = "In the beginning"
    ids = ckpt.tokenizer.encode(prompt)
    expected = int(ckpt.model(torch.tensor([ids]))[0, -1].argmax())
    assert expected != ckpt.tokenizer.eot_id  # this tiny model's choice here: a token with text
    text, _ = list(generate_tab.generate(registry, "base", prompt, 0.0, 0, 1.0, 1, 0))[-1]
    assert text == ckpt.tokenizer.decode([expected])


def test_beam_search_with_one_beam_is_greedy_and_more_beams_say_what_greedy_gives(registry):
    prompt = "In the beginning"
    greedy = list(generate_tab.generate(registry, "base", prompt, 0.0, 0, 1.0, 6, 0))[-1][0]
    one, notice = generate_tab.beams(registry, "base", prompt, 1, 6)
    assert one == greedy and generate_tab.one_line(greedy) in notice
    best, notice = generate_tab.beams(registry, "base", prompt, 4, 6)
    assert isinstance(best, str) and "best of 4 beams" in notice
    for bad in ((0, 6), (9, 6), (2, 500), ("2", 6)):
        with pytest.raises(ValueError):
            generate_tab.beams(registry, "base", prompt, *bad)


def test_next_token_charts_before_and_after(registry):
    bars, temps, notice = generate_tab.next_token_charts(registry, "base", "It is a", 1.0, 1, 1.0)
    before, after = (np.array(trace.y) for trace in bars.data)
    assert after.max() == pytest.approx(1.0) and (after > 0).sum() == 1  # top-k = 1 keeps one token
    assert np.all(np.diff(before) <= 0)  # top candidates, most likely first
    assert len(bars.data[0].x) == generate_tab.TOP_CANDIDATES == len(bars.layout.xaxis.ticktext)
    low, mid, high = (np.array(t.y) for t in temps.data)
    assert low[0] >= mid[0] >= high[0]  # a low temperature sharpens, a high one flattens
    assert notice == ""


def test_temperature_figure_matches_softmax(registry):
    req = make_request(registry, "base", "It is a", Settings(1.0, 0, 1.0, 1, 0))
    logits = generate_tab.last_logits(req)
    fig = generate_tab.temperature_figure(req, logits)
    top = torch.softmax(logits, -1).topk(generate_tab.TOP_CANDIDATES).indices
    assert np.allclose(fig.data[2].y, torch.softmax(logits / 5.0, -1)[top].numpy(), atol=1e-6)


def test_one_token_appends_the_drawn_token(registry):
    prompt = "It is a truth"
    text, bars, info = generate_tab.one_token(registry, "base", prompt, 0.0, 0, 1.0, 3)
    ckpt = registry.load("base")
    greedy = int(ckpt.model(torch.tensor([ckpt.tokenizer.encode(prompt)]))[0, -1, : ckpt.tokenizer.n_vocab].argmax())
    assert text == prompt + ckpt.tokenizer.decode([greedy])
    assert f"Picked token {greedy}" in info and "probability 1.000" in info


def test_generate_long_prompt_is_cut_to_the_context(registry):
    req = make_request(registry, "base", LONG_TEXT + "more", Settings(1.0, 0, 1.0, 5, 0))
    assert len(req.ids) == 512
    _, notice = list(generate_tab.generate(registry, "base", LONG_TEXT + "more", 1.0, 0, 1.0, 3, 0))[-1]
    assert notice.startswith("⚠️ Only the first 100,000") and "\n\n⚠️ The text has" in notice
    assert "only the last 512" in notice and "⚠️ ⚠️" not in notice
    _, _, info = generate_tab.one_token(registry, "base", LONG_TEXT, 1.0, 0, 1.0, 0)
    assert info.startswith("⚠️ The text has") and "\n\nPicked token" in info


@pytest.mark.parametrize("args", [("", 1.0, 0, 1.0, 5, 0), ("hi", -1, 0, 1.0, 5, 0), ("hi", 6, 0, 1.0, 5, 0),
                                  ("hi", 1.0, -3, 1.0, 5, 0), ("hi", 1.0, 0, 0, 5, 0), ("hi", 1.0, 0, 1.5, 5, 0),
                                  ("hi", 1.0, 0, 1.0, 0, 0), ("hi", 1.0, 0, 1.0, 10_000, 0), ("hi", 1.0, 0, 1.0, 5, -1),
                                  ("hi", 1.0, 0, 1.0, 5, None)])
def test_generate_rejects_bad_input(registry, args):
    with pytest.raises(ValueError):
        list(generate_tab.generate(registry, "base", *args))


def test_generate_unknown_or_missing_model(registry, empty_registry):
    with pytest.raises(UnknownModelError):
        list(generate_tab.generate(registry, "gpt5", "hi", 1.0, 0, 1.0, 5, 0))
    with pytest.raises(ModelUnavailableError):
        generate_tab.next_token_charts(empty_registry, "base", "hi", 1.0, 0, 1.0)


def test_a_padded_vocabulary_is_never_drawn(registry):
    """Output rows past the tokenizer's vocabulary have no text: the sampler must never draw them."""
    ckpt = registry.load("base")

    class PaddedHead(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model
            self.cfg = model.cfg
            self.tok_emb = model.tok_emb

        def forward(self, idx, cache=None, last_only=False):
            logits = self.model(idx.clamp(max=ckpt.tokenizer.n_vocab - 1), cache, last_only)
            return torch.cat([logits, torch.full((*logits.shape[:-1], 4), 50.0)], dim=-1)

        def new_cache(self, batch_size=1):
            return self.model.new_cache(batch_size)

    padded = ModelRegistry(registry.root)
    padded.cached(("lm", "base"), lambda: Checkpoint(PaddedHead(ckpt.model), ckpt.tokenizer, {}))
    text, _ = list(generate_tab.generate(padded, "base", "hi", 1.0, 0, 1.0, 5, 0))[-1]
    unpadded, _ = list(generate_tab.generate(registry, "base", "hi", 1.0, 0, 1.0, 5, 0))[-1]
    assert text == unpadded != ""  # the padded rows score 50 and would win every draw if they were drawable
    _, _, info = generate_tab.one_token(padded, "base", "hi", 1.0, 0, 1.0, 0)
    assert int(info.split()[2]) < ckpt.tokenizer.n_vocab


# -- spam tab ----------------------------------------------------------------------------------

def test_classify_gives_probabilities_and_attention(registry):
    probs, html, notice = spam_tab.classify(registry, "WIN a free prize now")
    assert set(probs) == {"ham", "spam"} and math.isclose(sum(probs.values()), 1, abs_tol=1e-5)
    model = spam_tab.classifier(registry)
    assert html.count("<span") == len(model.tokenizer.encode("WIN a free prize now"))
    assert notice == ""


def test_classify_long_message_and_bad_input(registry):
    _, _, notice = spam_tab.classify(registry, LONG_TEXT)
    assert "reads the first 512" in notice
    with pytest.raises(ValueError):
        spam_tab.classify(registry, "   ")


def test_spam_test_figures_and_examples(registry, empty_registry):
    summary, table, confusion = spam_tab.test_figures(registry)
    assert "75.0%" in summary and "4 held-out" in summary
    assert table["class"].tolist() == ["ham", "spam"]
    assert [list(row) for row in confusion.data[0].z] == [[1, 1], [0, 2]]
    assert spam_tab.examples(registry) == ["See you at lunch tomorrow", "WIN a free prize now, text CLAIM to 80082"]
    assert spam_tab.examples(empty_registry) == [text for text, _ in spam_tab.EXAMPLES]
    with pytest.raises(FileNotFoundError):
        spam_tab.classify(empty_registry, "hello")
    assert "not available" in spam_tab.test_figures(empty_registry)[0]


# -- chat tab ----------------------------------------------------------------------------------

@pytest.mark.parametrize("history", [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
    [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},  # what Gradio 6 hands over
     {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]}],
])
def test_chat_streams_and_shows_the_exact_prompt(registry, history):
    outputs = list(chat_tab.chat(registry, "Name a colour.", history, 0.0, 8, 1))
    assert outputs
    reply, prompt = outputs[-1]
    assert "### Instruction:\nName a colour." in prompt and prompt.endswith("### Response:\n")
    assert "### Input:\nUser: Hi\nAssistant: Hello.\n" in prompt
    sampling = SamplingConfig(max_new_tokens=8, temperature=0.0, seed=1)
    expected = list(chat_stream(registry.load("instruct"), history, "Name a colour.", sampling))
    assert [r for r, _ in outputs] == (expected or [chat_tab.EMPTY_REPLY])


def test_an_empty_reply_is_said_in_words(registry, monkeypatch):
    monkeypatch.setattr(chat_tab, "chat_stream", lambda *args: iter(()))
    assert list(chat_tab.chat(registry, "Name a colour.", [], 0.0, 8, 1))[-1][0] == chat_tab.EMPTY_REPLY


@pytest.mark.parametrize("args", [("", 0.0, 8, 1), ("hi", 3.0, 8, 1), ("hi", 0.0, 0, 1), ("hi", 0.0, 8, -2)])
def test_chat_rejects_bad_input(registry, args):
    message, *settings = args
    with pytest.raises(ValueError):
        list(chat_tab.chat(registry, message, [], *settings))


def test_chat_without_the_model(empty_registry):
    with pytest.raises(ModelUnavailableError):
        list(chat_tab.chat(empty_registry, "hi", [], 0.0, 8, 1))


# -- the whole app -----------------------------------------------------------------------------

def test_app_builds_with_and_without_models(registry, empty_registry):
    from app import build_app

    for reg in (registry, empty_registry):
        demo = build_app(reg)
        names = {dep.api_name for dep in demo.fns.values() if dep.api_name}
        assert {"tokenize", "attention", "generate", "next_token_probs", "one_token", "classify",
                "spam_test_figures", "chat", "load_model"} <= names



def test_chat_message_longer_than_the_context_is_refused_clearly(registry):
    with pytest.raises(ValueError, match="too long"):
        list(chat_tab.chat(registry, LONG_TEXT, [], 0.0, 8, 1))


def test_spam_classifier_made_for_another_base_is_reported(tmp_path):
    from gpt.checkpoint import load_checkpoint, save_checkpoint
    from gpt.model import GPTModel

    models = make_model_folder(tmp_path)
    base = load_checkpoint(models / "base")
    torch.manual_seed(1)
    save_checkpoint(GPTModel(base.model.cfg), models / "base", base.tokenizer)  # retrained base: new weights
    registry = ModelRegistry(models)
    assert "finetune again" in spam_tab.test_figures(registry)[0]
    with pytest.raises(ValueError, match="finetune again"):
        spam_tab.classify(registry, "hello")


def test_lora_is_the_default_only_for_a_base_over_twice_the_shipped_ones_size(tmp_path):
    """A chat model of about the base's size trains whole, whatever its architecture (a smaller modern base must not
    flip the shipped chat models to LoRA); a base several times larger trains adapters."""
    from gpt.checkpoint import load_checkpoint, save_checkpoint
    from gpt.model import GPTModel

    root = make_model_folder(tmp_path)
    base = load_checkpoint(root / "base")
    cfg = base.model.cfg
    for name, emb_dim in (("instruct", cfg.emb_dim + 16), ("chat-dpo", 2 * cfg.emb_dim)):
        save_checkpoint(GPTModel(GPTConfig.from_dict({**cfg.to_dict(), "emb_dim": emb_dim})), root / name,
                        base.tokenizer, meta={"purpose": "app tests"})
    registry = ModelRegistry(root)
    sizes = {name: registry.base_model(name).config.n_params() for name in ("base", "instruct", "chat-dpo")}
    assert sizes["base"] < sizes["instruct"] < 2 * sizes["base"] < sizes["chat-dpo"]
    assert [registry.lora_by_default(name) for name in sizes] == [False, False, True]
