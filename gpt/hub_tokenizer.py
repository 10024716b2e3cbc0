"""Tokenizers of today's open models (Qwen3, SmolLM2, Llama), read from a Hub folder's `tokenizer.json`.

`HubTokenizer` serves the `tokenizers` library's file behind the interface the rest of the code uses
from `gpt.tokenizer.Tokenizer` (`encode`, `decode`, `decode_bytes`, `pieces`, `eot_id`, `n_vocab`),
so a Hub model reads, generates and finetunes in the app like one of ours. Its chat template (Jinja
in `tokenizer_config.json` or `chat_template.jinja`) is rendered as transformers renders it, in a
sandbox: the template comes from a file someone hands us, so it may only produce text.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as FastTokenizer

from gpt.tokenizer import TokenPiece

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # newer Hub repos ship the template as its own file
GENERATION_CONFIG = "generation_config.json"
MODEL_CONFIG = "config.json"
# The named special tokens transformers hands every chat template (its `special_tokens_map`).
TEMPLATE_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# End tokens by convention, for a folder that names no EOS anywhere (GPT-2's tokenizer.json alone).
CONVENTIONAL_EOS = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<|im_end|>", "<|eot_id|>")
BYTE_FALLBACK_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
METASPACE = "\u2581"  # SentencePiece's '▁', which stands for a space in its vocabularies


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte to a printable character: byte-level BPE vocabularies store token
    bytes as these characters, so their inverse gives a token's exact bytes back."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


UNICODE_TO_BYTE = {c: b for b, c in bytes_to_unicode().items()}


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or a one-line ValueError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({_one_line(err)})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _eos_ids(value: Any) -> list[int]:
    """`eos_token_id` of a generation or model config: one id, a list of ids, or absent."""
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _uses(component: dict[str, Any] | None, kind: str) -> bool:
    """Whether a tokenizer.json component (decoder, pre-tokenizer), or one in its sequence, is of `kind`."""
    if not isinstance(component, dict):
        return False
    parts = component.get("decoders") or component.get("pretokenizers") or [component]
    return any(isinstance(part, dict) and part.get("type") == kind for part in parts)


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}…{% endgeneration %}`, which some templates use to mark the assistant's text for
    transformers' training masks: rendered as its body, so such templates parse and render here too."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def _raise_exception(message: str) -> None:
    """Templates call this to refuse a conversation (e.g. roles out of order)."""
    raise jinja2.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """transformers' `tojson`: plain json.dumps, unlike Jinja's own, which escapes <, >, & and ' for HTML."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    """Today's date for templates that put it in the system prompt (Llama 3)."""
    return datetime.now().strftime(fmt)


def chat_environment() -> ImmutableSandboxedEnvironment:
    """The Jinja environment transformers renders chat templates in: sandboxed (no attribute of Python's
    internals, no changing the messages), blocks trimmed, `break`/`continue` allowed, its globals."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, _GenerationBlock])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


class HubTokenizer:
    """A `tokenizer.json` behind `gpt.tokenizer.Tokenizer`'s interface, with its chat template.

    Two copies of the tokenizer serve `encode`: one that reads special tokens typed in the text as
    plain text (`encode_special_tokens`), one that reads them as the tokens, so neither is switched
    while another thread encodes. Added tokens that are not special (Qwen3's `<think>`) are tokens in
    both, as in transformers. Neither adds a BOS: callers put one (`bos_id`) where the model wants it.
    """

    pretokenizer = "tokenizer.json"  # not one of ours: the file's own pre-tokenizer cuts the text

    def __init__(self, name: str, tokenizer_json: str, tokenizer_config: dict[str, Any] | None = None,
                 chat_template: str | None = None, eos_ids: list[int] | None = None,
                 source: str = TOKENIZER_JSON, template_source: str = TOKENIZER_CONFIG):
        self.name = name
        self.tokenizer_json = tokenizer_json
        self.tokenizer_config = dict(tokenizer_config or {})
        self.chat_template = chat_template
        self.template_source = template_source
        try:
            self._special = FastTokenizer.from_str(tokenizer_json)
            self._plain = FastTokenizer.from_str(tokenizer_json)
        except Exception as err:  # the library raises its own Exception subclass for every parse failure
            raise ValueError(f"{source}: not a readable tokenizer.json ({_one_line(err)})") from err
        self._plain.encode_special_tokens = True
        # The BOS the file's post-processor puts first (Llama), or None (Qwen, SmolLM2).
        starts = self._special.encode("", add_special_tokens=True).ids
        self._added = {i: t.content for i, t in self._special.get_added_tokens_decoder().items()}
        self.bos_id: int | None = starts[0] if starts and starts[0] in self._added else None
        for tok in (self._special, self._plain):
            tok.no_truncation()
            tok.no_padding()
            # Only adds special tokens (never asked for here) and trims spaces off offsets: without it
            # the pieces' spans tile the text, as tiktoken's do.
            tok.post_processor = None
        vocab = self._special.get_vocab(with_added_tokens=True)
        self.n_vocab = max(vocab.values()) + 1 if vocab else 0
        # Generation stops at the first EOS the folder names; every one named ends a reply too. A folder
        # that names none (GPT-2's tokenizer.json alone) falls back on a conventional end token.
        named = [i for i in dict.fromkeys([*(eos_ids or []), *self._config_ids("eos_token")]) if 0 <= i < self.n_vocab]
        fallback = [i for t in CONVENTIONAL_EOS if (i := self._special.token_to_id(t)) is not None]
        if not named and not fallback:
            raise ValueError(f"{source}: no end-of-sequence token found (none in generation_config.json, config.json "
                             f"or tokenizer_config.json, nor any of {', '.join(CONVENTIONAL_EOS)})")
        self.stop_ids: tuple[int, ...] = tuple(named or fallback[:1])
        self.eot_id = self.stop_ids[0]

    def _config_ids(self, key: str) -> list[int]:
        text = _token_text(self.tokenizer_config.get(key))
        token_id = None if text is None else self._special.token_to_id(text)
        return [] if token_id is None else [token_id]

    # -- the interface of gpt.tokenizer.Tokenizer ------------------------------------------------------

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Encode text. Special tokens typed by a user (`<|im_end|>`) are plain text unless `allow_special`:
        a message must not be able to end its own turn or open the system's."""
        return (self._special if allow_special else self._plain).encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text as the file's decoder writes it, special tokens included (as tiktoken's decode keeps them)."""
        return self._special.decode(ids, skip_special_tokens=False)

    def decode_bytes(self, ids: list[int]) -> bytes:
        """Each token's exact bytes, joined: streaming token by token gives the same bytes as all at once.

        A SentencePiece-style vocabulary (Llama 2) prepends '▁' to a text, so there the first token of
        an encoded text carries one space more than the text had; `decode` drops it, as the file's
        decoder does.
        """
        table = self._token_bytes
        bad = next((i for i in ids if not 0 <= i < len(table)), None)
        if bad is not None:  # a negative id would index from the end without a word
            raise ValueError(f"token id {bad} is not in {self.name}'s vocabulary of {len(table):,}")
        return b"".join(table[i] for i in ids)

    def pieces(self, text: str, allow_special: bool = False) -> list[TokenPiece]:
        """Tokens with their bytes and character spans, as `Tokenizer.pieces` gives them: a token that
        ends inside a character (one byte of an emoji) gets an empty span, the last one the character."""
        encoding = (self._special if allow_special else self._plain).encode(text, add_special_tokens=False)
        ids, offsets = encoding.ids, encoding.offsets
        nexts = [start for start, _ in offsets[1:]] + [len(text)] if ids else []
        return [TokenPiece(i, self._token_bytes[i], s, max(s, min(e, n)))
                for i, (s, e), n in zip(ids, offsets, nexts, strict=True)]

    @property
    def longest_token_bytes(self) -> int:
        """The most bytes one token stands for: a text of n characters is at least n / this tokens."""
        return max(map(len, self._token_bytes), default=1)

    def token_id(self, piece: bytes) -> int | None:
        """The id of the token with exactly these bytes, or None (the bytes are several tokens here)."""
        return self._ids_by_bytes.get(piece)

    def same_as(self, other: object) -> bool:
        """The same vocabulary: ids mean the same pieces, so two models compare token by token."""
        return self is other or (isinstance(other, HubTokenizer) and other._token_bytes == self._token_bytes)

    def with_pretokenizer(self, pretokenizer: str) -> HubTokenizer:
        raise ValueError(f"{self.name}'s tokenizer comes from tokenizer.json and keeps its own pre-tokenizer; "
                         f"it cannot take {pretokenizer!r}")

    @property
    def ranks(self) -> dict[bytes, int]:
        raise AttributeError(f"{self.name}'s tokenizer comes from tokenizer.json: it has no tiktoken ranks "
                             "(use token_id, longest_token_bytes or same_as)")

    @property
    def encoding(self) -> Any:
        raise AttributeError(f"{self.name}'s tokenizer comes from tokenizer.json: it has no tiktoken encoding")

    # -- bytes of each token ---------------------------------------------------------------------------

    @cached_property
    def _token_bytes(self) -> list[bytes]:
        """Every id's bytes, built once: byte-level vocabularies through GPT-2's table, SentencePiece
        ones with '▁' as a space and `<0x0A>` as its byte, added tokens as their UTF-8 text."""
        spec = json.loads(self.tokenizer_json)
        byte_level = _uses(spec.get("decoder"), "ByteLevel") or _uses(spec.get("pre_tokenizer"), "ByteLevel")
        byte_fallback = bool((spec.get("model") or {}).get("byte_fallback")) or _uses(spec.get("decoder"),
                                                                                       "ByteFallback")
        table = []
        for i in range(self.n_vocab):
            token = self._special.id_to_token(i)
            if token is None:
                table.append(b"")  # a gap in the ids: no text at all
            elif i in self._added:
                table.append(self._added[i].encode("utf-8"))
            elif byte_level and all(c in UNICODE_TO_BYTE for c in token):
                table.append(bytes(UNICODE_TO_BYTE[c] for c in token))
            elif byte_fallback and (match := BYTE_FALLBACK_TOKEN.fullmatch(token)):
                table.append(bytes([int(match.group(1), 16)]))
            else:
                table.append(token.replace(METASPACE, " ").encode("utf-8"))
        return table

    @cached_property
    def _ids_by_bytes(self) -> dict[bytes, int]:
        ids: dict[bytes, int] = {}
        for i, piece in enumerate(self._token_bytes):
            if piece:
                ids.setdefault(piece, i)  # the first id wins: byte tokens (<0x20>) and pieces can share bytes
        return ids

    # -- chat template ---------------------------------------------------------------------------------

    @cached_property
    def _template(self) -> jinja2.Template:
        if self.chat_template is None:
            raise ValueError(f"{self.name}: no chat template ({TOKENIZER_CONFIG} has no chat_template and there is "
                             f"no {CHAT_TEMPLATE_FILE})")
        try:
            return chat_environment().from_string(self.chat_template)
        except jinja2.TemplateError as err:
            raise ValueError(f"{self.template_source}: the chat template does not parse ({_one_line(err)})") from err

    def template_tokens(self) -> dict[str, str]:
        """`bos_token`, `eos_token`… as tokenizer_config.json names them, the variables every template gets."""
        return {key: text for key in TEMPLATE_TOKENS if (text := _token_text(self.tokenizer_config.get(key)))}

    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True,
                    **template_kwargs: Any) -> str:
        """The conversation as the model's chat template writes it, the text the model was tuned on.
        `template_kwargs` reach the template as variables (Qwen3's `enable_thinking=False`)."""
        template = self._template
        chat = [dict(message) for message in messages]  # copies: a template only ever sees plain data
        variables = {**self.template_tokens(), **template_kwargs}
        try:
            return template.render(messages=chat, tools=None, documents=None,
                                   add_generation_prompt=add_generation_prompt, **variables)
        except jinja2.TemplateError as err:
            raise ValueError(f"{self.template_source}: the chat template refused ({_one_line(err)})") from err
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as err:
            raise ValueError(f"{self.template_source}: the chat template failed ({_one_line(err)})") from err


def _chat_template(folder: Path, config: dict[str, Any]) -> tuple[str | None, str]:
    """The template and the file it came from: `chat_template.jinja` wins over tokenizer_config.json's, as in
    transformers; a config may hold several named templates, of which "default" is the chat one."""
    jinja_file = folder / CHAT_TEMPLATE_FILE
    if jinja_file.is_file():
        try:
            return jinja_file.read_text(encoding="utf-8"), str(jinja_file)
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{jinja_file}: not a readable chat template ({_one_line(err)})") from err
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return (template if isinstance(template, str) else None), str(folder / TOKENIZER_CONFIG)


def load_hub_tokenizer(folder: str | Path, name: str | None = None) -> HubTokenizer:
    """The tokenizer of a Hub model folder: tokenizer.json, with tokenizer_config.json (special tokens, chat
    template), and the EOS ids of generation_config.json and config.json where present (in that order: the
    first named is where generation stops by default)."""
    folder = Path(folder)
    path = folder / TOKENIZER_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {TOKENIZER_JSON}; a Hub model's tokenizer needs its {TOKENIZER_JSON} "
                                f"(and, for chat, {TOKENIZER_CONFIG})")
    try:
        tokenizer_json = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable tokenizer.json ({_one_line(err)})") from err
    config = _read_json(folder / TOKENIZER_CONFIG) if (folder / TOKENIZER_CONFIG).is_file() else {}
    eos_ids: list[int] = []
    for extra in (GENERATION_CONFIG, MODEL_CONFIG):
        if (folder / extra).is_file():
            eos_ids += _eos_ids(_read_json(folder / extra).get("eos_token_id"))
    template, template_source = _chat_template(folder, config)
    return HubTokenizer(name or folder.name, tokenizer_json, config, template, eos_ids,
                        source=str(path), template_source=template_source)
