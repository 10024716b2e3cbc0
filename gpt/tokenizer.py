"""Tokenizers the models use: GPT-2's BPE, or a BPE trained by `gpt.bpe`, both served by tiktoken.

The ranks of a byte-level BPE (token bytes -> id, lower id = earlier merge) are all tiktoken needs,
so a vocabulary trained with our from-scratch trainer runs at tiktoken's speed too. GPT-2's ranks
ship in `assets/`, checked by sha256, so nothing is downloaded.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import tiktoken

from gpt.files import ASSETS, sha256_of, write_text_atomic

GPT2_RANKS = ASSETS / "gpt2.tiktoken"
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# GPT-2's pre-tokenizer: contractions, letters, numbers, punctuation runs and whitespace are split
# apart before any merge, so a token never spans two words.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The same with every digit apart ("137" is "1" "3" "7", as in LLaMA's tokenizer): a number's tokens
# are then its digits, so a model can learn sums digit by digit instead of one token pair at a time.
DIGITS_PATTERN = GPT2_PATTERN.replace(r" ?\p{N}+", r" ?\p{N}")
PRETOKENIZERS = {"gpt2": GPT2_PATTERN, "digits": DIGITS_PATTERN}
END_OF_TEXT = "<|endoftext|>"


@dataclass(frozen=True)
class TokenPiece:
    """One token of an encoded text: its id, its bytes and the characters it covers."""

    id: int
    piece: bytes
    start: int  # character offset in the text
    end: int

    @property
    def text(self) -> str:
        return self.piece.decode("utf-8", errors="replace")


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """Read a tiktoken ranks file (base64 token, space, rank; one per line)."""
    ranks: dict[bytes, int] = {}
    for line_no, line in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as err:
            raise ValueError(f"{path}: line {line_no} is not '<base64> <rank>'") from err
    # tiktoken trusts its ranks (a gap or a missing byte crashes it): a byte-level BPE has ranks
    # 0..n-1 and every single byte among its tokens.
    if sorted(ranks.values()) != list(range(len(ranks))) or any(bytes([b]) not in ranks for b in range(256)):
        raise ValueError(f"{path}: not a byte-level BPE (ranks must be 0..n-1 and include all 256 bytes)")
    return ranks


def write_ranks(ranks: dict[bytes, int], path: str | Path) -> None:
    lines = [f"{base64.b64encode(tok).decode()} {rank}" for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    write_text_atomic(path, "\n".join(lines) + "\n")


class Tokenizer:
    """A byte-level BPE with `<|endoftext|>` as its one special token, placed right after the ranks.

    `pretokenizer` names the pattern that cuts text into pieces before any merge (`PRETOKENIZERS`);
    with "digits" the ranks' multi-digit tokens simply go unused.
    """

    bos_id: int | None = None  # no token starts a text (a Hub tokenizer's may: Llama's `<s>`)

    def __init__(self, name: str, ranks: dict[bytes, int], pretokenizer: str = "gpt2"):
        if pretokenizer not in PRETOKENIZERS:
            raise ValueError(f"pretokenizer must be one of {', '.join(PRETOKENIZERS)}, got {pretokenizer!r}")
        self.name = name
        self.ranks = ranks
        self.pretokenizer = pretokenizer
        self.eot_id = len(ranks)
        self.encoding = tiktoken.Encoding(
            name=f"{name}-{pretokenizer}",
            pat_str=PRETOKENIZERS[pretokenizer],
            mergeable_ranks=ranks,
            special_tokens={END_OF_TEXT: self.eot_id},
            explicit_n_vocab=len(ranks) + 1,
        )

    def with_pretokenizer(self, pretokenizer: str) -> Tokenizer:
        """The same ranks behind another pre-tokenizer."""
        return Tokenizer(self.name, self.ranks, pretokenizer)

    @property
    def n_vocab(self) -> int:
        return self.eot_id + 1

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Every id that ends a generation: here only `<|endoftext|>` (a Hub tokenizer may have several)."""
        return (self.eot_id,)

    @property
    def longest_token_bytes(self) -> int:
        """The most bytes one token stands for: a text of n characters is at least n / this tokens."""
        return max(map(len, self.ranks))

    def token_id(self, piece: bytes) -> int | None:
        """The id of the token with exactly these bytes, or None (the bytes are several tokens here)."""
        return self.eot_id if piece == END_OF_TEXT.encode() else self.ranks.get(piece)

    def same_as(self, other: object) -> bool:
        """The same vocabulary: ids mean the same pieces, so two models compare token by token."""
        return self is other or (isinstance(other, Tokenizer) and self.ranks == other.ranks)

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Encode text. `<|endoftext|>` typed by a user is plain text unless `allow_special`."""
        allowed = {END_OF_TEXT} if allow_special else set()
        return self.encoding.encode(text, allowed_special=allowed, disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)

    def decode_bytes(self, ids: list[int]) -> bytes:
        return self.encoding.decode_bytes(ids)

    def pieces(self, text: str, allow_special: bool = False) -> list[TokenPiece]:
        """Tokens with their bytes and character spans (a token may end inside a character)."""
        ids = self.encode(text, allow_special=allow_special)
        _, starts = self.encoding.decode_with_offsets(ids)
        ends = starts[1:] + [len(text)]
        return [
            TokenPiece(i, self.encoding.decode_single_token_bytes(i), s, max(s, e))
            for i, s, e in zip(ids, starts, ends, strict=True)
        ]


@lru_cache(maxsize=1)
def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's BPE from assets, sha256-checked once per process."""
    if not GPT2_RANKS.is_file():
        raise FileNotFoundError(f"GPT-2 BPE ranks missing: {GPT2_RANKS} (see assets/README.md)")
    digest = sha256_of(GPT2_RANKS)
    if digest != GPT2_RANKS_SHA256:
        raise ValueError(f"{GPT2_RANKS} is corrupt: sha256 {digest}, expected {GPT2_RANKS_SHA256}")
    return Tokenizer("gpt2", read_ranks(GPT2_RANKS))


def load_tokenizer(name_or_path: str = "gpt2", pretokenizer: str = "gpt2") -> Tokenizer:
    """`"gpt2"` for GPT-2's BPE, or a path to a `.tiktoken` ranks file (a small BPE: read fresh)."""
    if name_or_path == "gpt2":
        tokenizer = gpt2_tokenizer()
        return tokenizer if pretokenizer == "gpt2" else tokenizer.with_pretokenizer(pretokenizer)
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    return Tokenizer(path.stem, read_ranks(path), pretokenizer)
