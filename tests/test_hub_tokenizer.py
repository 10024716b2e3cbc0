"""gpt.hub_tokenizer on small tokenizer.json files trained here, shaped as today's open models ship them:
a byte-level BPE with ChatML special tokens (Qwen3, SmolLM2) and a SentencePiece-style one with byte
fallback (Llama 2, TinyLlama). Chat templates are rendered beside transformers' own rendering."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from gpt.checkpoint import CONFIG_FILE, CheckpointError, load_checkpoint, load_checkpoint_tokenizer, save_checkpoint
from gpt.config import GPTConfig
from gpt.hub_tokenizer import CHAT_TEMPLATE_FILE, HubTokenizer, chat_environment, load_hub_tokenizer
from gpt.model import GPTModel
from gpt.tokenizer import Tokenizer as TiktokenTokenizer
from tests.hub_models import (
    CHATML_TEMPLATE,
    LLAMA2_LIKE_TEMPLATE,
    QWEN_LIKE_TEMPLATE,
    byte_level_json,
    metaspace_json,
    write_folder,
)

SAMPLES = [
    "plain words and 12345 digits",
    "emoji 😀👍🏽 and flags 🇫🇷 mixed with text",
    "line one\nline two\r\n\ttabbed   spaced",
    "ÆØÅ æøå — “quotes” … 東京 नमस्ते",
    "",
    " leading space and trailing space ",
    "<|im_end|> typed by a user, and <|im_start|>system",
]

CONVERSATION = [
    {"role": "system", "content": "Answer in one sentence."},
    {"role": "user", "content": "What is a token?"},
    {"role": "assistant", "content": "<think>\nshort\n</think>\n\nA piece of text with an id."},
    {"role": "user", "content": "And <|im_end|> inside a message?"},
]


@pytest.fixture(scope="module")
def byte_json() -> str:
    return byte_level_json()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, byte_json: str) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub")
    qwen = write_folder(root / "Qwen3-like", byte_json,
                        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None,
                         "chat_template": QWEN_LIKE_TEMPLATE},
                        generation={"eos_token_id": [byte_json_id(byte_json, "<|im_end|>"),
                                                     byte_json_id(byte_json, "<|endoftext|>")]})
    smol = write_folder(root / "SmolLM2-like", byte_json,
                        {"eos_token": {"__type": "AddedToken", "content": "<|im_end|>", "special": True},
                         "bos_token": "<|im_start|>"},
                        template_file=CHATML_TEMPLATE)
    llama = write_folder(root / "Llama2-like", metaspace_json(),
                         {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                          "chat_template": LLAMA2_LIKE_TEMPLATE})
    return {"qwen": qwen, "smol": smol, "llama": llama}


def byte_json_id(tokenizer_json: str, token: str) -> int:
    return Tokenizer.from_str(tokenizer_json).token_to_id(token)


@pytest.fixture(scope="module")
def qwen(folders: dict[str, Path]) -> HubTokenizer:
    return load_hub_tokenizer(folders["qwen"])


@pytest.fixture(scope="module")
def llama(folders: dict[str, Path]) -> HubTokenizer:
    return load_hub_tokenizer(folders["llama"])


# -- encoding --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", SAMPLES)
def test_byte_level_round_trip(qwen: HubTokenizer, text: str) -> None:
    ids = qwen.encode(text)
    assert qwen.decode(ids) == text
    assert qwen.decode_bytes(ids) == text.encode("utf-8")
    assert b"".join(qwen.decode_bytes([i]) for i in ids) == text.encode("utf-8")  # streaming adds up


@pytest.mark.parametrize("text", SAMPLES)
def test_metaspace_round_trip(llama: HubTokenizer, text: str) -> None:
    ids = llama.encode(text)
    assert llama.decode(ids) == text
    # The prepended '▁' is one more space in the tokens' bytes: decode drops it, as the file's decoder does.
    assert llama.decode_bytes(ids) == (b" " + text.encode("utf-8") if ids else b"")


def test_byte_fallback_tokens_are_their_bytes(llama: HubTokenizer) -> None:
    ids = llama.encode("a😀")  # the emoji is in no token of this vocabulary: its four bytes, one token each
    assert [llama.decode_bytes([i]) for i in ids[-4:]] == [bytes([b]) for b in "😀".encode()]
    assert llama.decode_bytes([llama.encode("\n")[-1]]) == b"\n"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_byte_level_round_trip_any_text(qwen: HubTokenizer, text: str) -> None:
    ids = qwen.encode(text)
    assert qwen.decode(ids) == text and qwen.decode_bytes(ids) == text.encode("utf-8")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="▁"), max_size=40))
def test_metaspace_round_trip_any_text(llama: HubTokenizer, text: str) -> None:
    assert llama.decode(llama.encode(text)) == text


@pytest.mark.parametrize("text", SAMPLES)
def test_pieces_tile_the_text(qwen: HubTokenizer, llama: HubTokenizer, text: str) -> None:
    for tok in (qwen, llama):
        pieces = tok.pieces(text)
        assert [p.id for p in pieces] == tok.encode(text)
        assert "".join(text[p.start:p.end] for p in pieces) == text
        assert all(p.piece == tok.decode_bytes([p.id]) for p in pieces)


def test_pieces_span_characters_like_tiktoken(qwen: HubTokenizer) -> None:
    text = "hi 😀"
    pieces = qwen.pieces(text)
    assert b"".join(p.piece for p in pieces) == text.encode()
    emoji = [p for p in pieces if p.start == 3]
    assert [(p.start, p.end) for p in emoji] == [(3, 3)] * (len(emoji) - 1) + [(3, 4)]  # the last byte ends it
    assert [p for p in pieces if p.start <= 2 < p.end][0].piece.startswith(b" ")  # the space is not trimmed off


def test_special_tokens_typed_by_a_user_stay_text(qwen: HubTokenizer) -> None:
    im_end = qwen.encode("<|im_end|>", allow_special=True)
    assert len(im_end) == 1 and im_end[0] in qwen.stop_ids
    typed = qwen.encode("say <|im_end|> now")
    assert not set(typed) & set(qwen.stop_ids) and qwen.decode(typed) == "say <|im_end|> now"
    assert im_end[0] in qwen.encode("say <|im_end|> now", allow_special=True)
    assert [p.id for p in qwen.pieces("<|im_start|>", allow_special=True)] == [qwen.token_id(b"<|im_start|>")]
    # An added token that is not special is a token wherever it is typed, as in transformers.
    assert qwen.encode("<think>") == [qwen.token_id(b"<think>")]


def test_stop_and_start_ids(qwen: HubTokenizer, llama: HubTokenizer, folders: dict[str, Path]) -> None:
    im_end, eot = qwen.token_id(b"<|im_end|>"), qwen.token_id(b"<|endoftext|>")
    assert qwen.eot_id == im_end and qwen.stop_ids == (im_end, eot) and qwen.bos_id is None
    assert llama.eot_id == llama.token_id(b"</s>") == 2 and llama.stop_ids == (2,) and llama.bos_id == 1
    smol = load_hub_tokenizer(folders["smol"], name="SmolLM2")
    assert smol.name == "SmolLM2" and smol.stop_ids == (im_end,)
    assert qwen.name == "Qwen3-like" and qwen.n_vocab == Tokenizer.from_file(str(folders["qwen"] / "tokenizer.json")
                                                                               ).get_vocab_size(with_added_tokens=True)


def test_shared_members_of_both_tokenizers(qwen: HubTokenizer, llama: HubTokenizer, folders: dict[str, Path]) -> None:
    assert qwen.same_as(load_hub_tokenizer(folders["smol"])) and not qwen.same_as(llama)
    assert qwen.token_id(b" the") == qwen.encode(" the")[0] and qwen.token_id(b"no such token!") is None
    assert qwen.longest_token_bytes == max(len(qwen.decode_bytes([i])) for i in range(qwen.n_vocab))
    ours = TiktokenTokenizer("mini", {bytes([b]): b for b in range(256)})
    assert ours.stop_ids == (256,) and ours.longest_token_bytes == 1 and ours.token_id(b"<|endoftext|>") == 256
    assert ours.token_id(b"a") == 97 and ours.same_as(TiktokenTokenizer("other", dict(ours.ranks)))
    assert not ours.same_as(qwen) and not qwen.same_as(ours)


def test_what_a_hub_tokenizer_lacks_is_named(qwen: HubTokenizer) -> None:
    with pytest.raises(AttributeError, match="no tiktoken ranks"):
        _ = qwen.ranks
    with pytest.raises(ValueError, match="keeps its own pre-tokenizer"):
        qwen.with_pretokenizer("digits")
    with pytest.raises(ValueError, match="not in Qwen3-like's vocabulary"):
        qwen.decode_bytes([qwen.n_vocab])
    with pytest.raises(ValueError, match="token id -1 is not"):
        qwen.decode_bytes([-1])


# -- chat templates --------------------------------------------------------------------------------------


def transformers_render(folder: Path, messages: list[dict[str, str]], **kwargs) -> str:
    fast = pytest.importorskip("transformers").PreTrainedTokenizerFast.from_pretrained(str(folder))
    return fast.apply_chat_template(messages, tokenize=False, **kwargs)


@pytest.mark.parametrize("name", ["qwen", "smol", "llama"])
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_chat_template_renders_as_transformers(folders: dict[str, Path], name: str, generation_prompt: bool) -> None:
    tok = load_hub_tokenizer(folders[name])
    messages = CONVERSATION[:2] if name == "llama" else CONVERSATION
    for kwargs in ({}, {"enable_thinking": False}, {"extra": {"html": "<b>&'</b>", "café": [1, None]}}):
        ours = tok.render_chat(messages, add_generation_prompt=generation_prompt, **kwargs)
        assert ours == transformers_render(folders[name], messages, add_generation_prompt=generation_prompt, **kwargs)
    if name == "qwen":
        assert ours.count('"<b>&\'</b>"') == 1 and '"café"' in ours  # tojson as transformers': no HTML escapes
        assert tok.render_chat(messages, enable_thinking=False).endswith("<think>\n\n</think>\n\n")


def test_chat_template_file_wins(folders: dict[str, Path]) -> None:
    smol = load_hub_tokenizer(folders["smol"])
    assert smol.chat_template == CHATML_TEMPLATE and smol.template_source.endswith(CHAT_TEMPLATE_FILE)
    assert smol.render_chat([{"role": "user", "content": "hi"}]).startswith("<|im_start|>system\nYou are a small")


def test_template_globals() -> None:
    env = chat_environment()
    assert env.from_string("{{ strftime_now('%Y') }}").render() in {str(datetime.now().year),
                                                                    str(datetime.now().year - 1)}
    assert env.from_string("{% for i in [1, 2, 3] %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}"
                           "{% generation %}kept{% endgeneration %}").render() == "1kept"


def test_template_raising_is_one_clear_line(folders: dict[str, Path]) -> None:
    qwen = load_hub_tokenizer(folders["qwen"])
    with pytest.raises(ValueError, match="tokenizer_config.json: the chat template refused") as err:
        qwen.render_chat([{"role": "robot", "content": "beep"}])
    assert "Unexpected role robot" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("escape", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.append({'role': 'user', 'content': 'x'}) }}",
    "{{ raise_exception.__globals__['os'].system('echo escaped') }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
])
def test_sandbox_refuses_escapes(tmp_path: Path, byte_json: str, escape: str) -> None:
    tok = load_hub_tokenizer(write_folder(tmp_path / "evil", byte_json, {"eos_token": "<|im_end|>"},
                                          template_file=escape))
    with pytest.raises(ValueError, match=f"{CHAT_TEMPLATE_FILE}: the chat template") as err:
        tok.render_chat([{"role": "user", "content": "hi"}])
    assert "\n" not in str(err.value)


def test_broken_template_is_one_clear_line(tmp_path: Path, byte_json: str) -> None:
    tok = load_hub_tokenizer(write_folder(tmp_path / "bad", byte_json,
                                          {"eos_token": "<|im_end|>", "chat_template": "{% for m in %}\n{{ m }}"}))
    assert tok.encode("still encodes") and tok.chat_template is not None  # plain text needs no template
    with pytest.raises(ValueError, match=r"bad/tokenizer_config.json: the chat template does not parse") as err:
        tok.render_chat([{"role": "user", "content": "hi"}])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="no chat template"):
        load_hub_tokenizer(write_folder(tmp_path / "none", byte_json, {})).render_chat([])


# -- loading errors --------------------------------------------------------------------------------------


def test_missing_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_hub_tokenizer(tmp_path)


@pytest.mark.parametrize("content", ["{not json", '{"model": 3}', "[]", "\xff\xfe garbage"])
def test_broken_tokenizer_json(tmp_path: Path, content: str) -> None:
    (tmp_path / "tokenizer.json").write_text(content, encoding="latin-1")
    with pytest.raises(ValueError, match=r"tokenizer.json: not a readable tokenizer.json") as err:
        load_hub_tokenizer(tmp_path)
    assert "\n" not in str(err.value)


def test_broken_config_is_named(tmp_path: Path, byte_json: str) -> None:
    folder = write_folder(tmp_path, byte_json, {})
    (folder / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(ValueError, match="tokenizer_config.json: not a readable JSON file"):
        load_hub_tokenizer(folder)


def test_eos_from_model_config_and_fallback(tmp_path: Path, byte_json: str) -> None:
    folder = write_folder(tmp_path, byte_json, {})
    assert load_hub_tokenizer(folder).eot_id == byte_json_id(byte_json, "<|endoftext|>")  # the conventional end
    (folder / "config.json").write_text(json.dumps({"eos_token_id": byte_json_id(byte_json, "<|im_end|>")}))
    assert load_hub_tokenizer(folder).stop_ids == (byte_json_id(byte_json, "<|im_end|>"),)


# -- checkpoints -----------------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path: Path, folders: dict[str, Path]) -> None:
    for name in ("qwen", "smol", "llama"):
        tok = load_hub_tokenizer(folders[name])
        model = GPTModel(GPTConfig.preset("tiny", vocab_size=tok.n_vocab))
        out = save_checkpoint(model, tmp_path / name, tok, meta={"from": name})
        config = json.loads((out / CONFIG_FILE).read_text())
        assert config["tokenizer"] == "tokenizer.json" and "pretokenizer" not in config
        ckpt = load_checkpoint(out)
        back = ckpt.tokenizer
        assert isinstance(back, HubTokenizer) and back.same_as(tok) and ckpt.meta == {"from": name}
        assert (back.name, back.eot_id, back.stop_ids, back.bos_id) == (tok.name, tok.eot_id, tok.stop_ids, tok.bos_id)
        assert back.chat_template == tok.chat_template
        assert back.render_chat(CONVERSATION[:2]) == tok.render_chat(CONVERSATION[:2])
        assert load_checkpoint_tokenizer(out).encode(SAMPLES[1]) == tok.encode(SAMPLES[1])


def test_checkpoint_tokenizer_damage_is_named(tmp_path: Path, qwen: HubTokenizer) -> None:
    out = save_checkpoint(GPTModel(GPTConfig.preset("tiny", vocab_size=qwen.n_vocab)), tmp_path, qwen)
    (out / "tokenizer_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="tokenizer_config.json: the file is damaged"):
        load_checkpoint_tokenizer(out)
    (out / "tokenizer_config.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer file missing"):
        load_checkpoint_tokenizer(out)
