from __future__ import annotations

import base64
import random
import string
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt.bpe import MAX_WORD_BYTES, BytePairEncoder
from gpt.tokenizer import GPT2_RANKS, Tokenizer, gpt2_tokenizer, load_tokenizer, read_ranks

BOOK_SENTENCE = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace."
BOOK_IDS = [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114, 286, 617, 34680,
            27271, 13]


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return load_tokenizer("gpt2")


@pytest.fixture(scope="module")
def gpt2_from_scratch() -> BytePairEncoder:
    return BytePairEncoder.load(GPT2_RANKS)


def test_book_sentence_ids(gpt2: Tokenizer) -> None:
    assert gpt2.encode(BOOK_SENTENCE, allow_special=True) == BOOK_IDS
    assert gpt2.decode(BOOK_IDS) == BOOK_SENTENCE
    assert gpt2.n_vocab == 50257 and gpt2.eot_id == 50256


def test_typed_endoftext_is_plain_text(gpt2: Tokenizer) -> None:
    ids = gpt2.encode("a <|endoftext|> b")
    assert gpt2.eot_id not in ids
    assert gpt2.decode(ids) == "a <|endoftext|> b"


def test_corrupt_ranks_file_is_refused(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "gpt2.tiktoken"
    bad.write_bytes(GPT2_RANKS.read_bytes()[:-10])
    monkeypatch.setattr("gpt.tokenizer.GPT2_RANKS", bad)
    gpt2_tokenizer.cache_clear()
    try:
        with pytest.raises(ValueError, match="corrupt"):
            load_tokenizer("gpt2")
    finally:
        gpt2_tokenizer.cache_clear()


def test_pieces_cover_the_text(gpt2: Tokenizer) -> None:
    text = "Tea  time:\tnaïve café ☕ 12345!"
    pieces = gpt2.pieces(text)
    assert b"".join(p.piece for p in pieces) == text.encode("utf-8")
    assert [p.id for p in pieces] == gpt2.encode(text)
    assert pieces[0].start == 0 and pieces[-1].end == len(text)
    assert all(text[p.start : p.end] == p.text for p in pieces if p.piece.decode("utf-8", "ignore") == p.text)


def test_from_scratch_bpe_equals_tiktoken_on_a_whole_novel(gpt2: Tokenizer, gpt2_from_scratch: BytePairEncoder,
                                                           novel: str) -> None:
    ours = gpt2_from_scratch.encode(novel)
    assert len(ours) > 100_000
    assert ours == gpt2.encode(novel)
    assert gpt2_from_scratch.decode(ours) == novel


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_gpt2_round_trip_any_unicode(gpt2_from_scratch: BytePairEncoder, text: str) -> None:
    assert gpt2_from_scratch.decode(gpt2_from_scratch.encode(text)) == text


@pytest.fixture(scope="module")
def trained(novel: str) -> BytePairEncoder:
    return BytePairEncoder.train(novel[:200_000], vocab_size=600)


def test_training_reaches_the_vocab_size_and_compresses(trained: BytePairEncoder, novel: str) -> None:
    assert len(trained.ranks) == 599  # + <|endoftext|> = 600
    sample = novel[200_000:220_000]
    assert len(trained.encode(sample)) < 0.5 * len(sample.encode("utf-8"))
    # Every merged token is the concatenation of two earlier tokens.
    for token, rank in trained.ranks.items():
        if rank >= 256:
            assert any(token[:i] in trained.ranks and token[i:] in trained.ranks and
                       max(trained.ranks[token[:i]], trained.ranks[token[i:]]) < rank for i in range(1, len(token)))


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_trained_round_trip_any_unicode(trained: BytePairEncoder, text: str) -> None:
    assert trained.decode(trained.encode(text)) == text


def test_trained_ranks_run_in_tiktoken_identically(trained: BytePairEncoder, novel: str, tmp_path) -> None:
    path = tmp_path / "bpe.tiktoken"
    trained.save(path)
    assert read_ranks(path) == trained.ranks
    fast = load_tokenizer(str(path))
    sample = novel[300_000:340_000]
    assert fast.encode(sample) == trained.encode(sample)
    assert fast.eot_id == 599 and fast.decode(fast.encode(sample)) == sample


def test_tiny_vocab_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 257"):
        BytePairEncoder.train("abc", vocab_size=100)


@pytest.mark.parametrize("damage", ["gap", "duplicate", "missing byte"])
def test_ranks_that_would_crash_tiktoken_are_refused(trained: BytePairEncoder, tmp_path, damage: str) -> None:
    ranks = dict(trained.ranks)
    if damage == "gap":
        ranks[max(ranks, key=ranks.get)] += 1
    elif damage == "duplicate":
        ranks[max(ranks, key=ranks.get)] = 300
    else:
        del ranks[b"A"]
        ranks = {tok: i for i, tok in enumerate(sorted(ranks, key=ranks.get))}
    path = tmp_path / "bad.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks.items()))
    with pytest.raises(ValueError, match="not a byte-level BPE"):
        read_ranks(path)


def test_bpe_training_on_one_endless_word_stays_small():
    """50,000 random letters are one pre-tokenized 'word': training reads it in bounded pieces, so its
    memory stays small (unbounded, this took minutes and 5 GB) and no token is longer than a piece."""
    letters = "".join(random.Random(0).choice(string.ascii_lowercase) for _ in range(50_000))
    tracemalloc.start()
    bpe = BytePairEncoder.train(letters, 600)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 100 * 2**20
    assert max(map(len, bpe.ranks)) <= MAX_WORD_BYTES
    assert bpe.to_tokenizer("t").decode(bpe.to_tokenizer("t").encode(letters)) == letters


def test_the_digits_pretokenizer_gives_every_digit_its_own_token(gpt2: Tokenizer) -> None:
    digits = gpt2.with_pretokenizer("digits")
    text = "In 2021, 12 x 7 = 84 and pi is 3.14159."
    assert [digits.decode([i]) for i in digits.encode(text)][1:6] == [" 2", "0", "2", "1", ","]
    assert all(len(piece.strip()) == 1 for piece in (digits.decode([i]) for i in digits.encode("137 4096 99"))
               if piece.strip())
    assert digits.decode(digits.encode(text)) == text  # the same ranks: any text still round-trips
    assert gpt2.encode("hello world, tea?") == digits.encode("hello world, tea?")  # words are cut as before
    assert len(gpt2.encode(" 2021")) < len(digits.encode(" 2021"))


def test_an_unknown_pretokenizer_is_refused(gpt2: Tokenizer) -> None:
    with pytest.raises(ValueError, match="pretokenizer must be one of gpt2, digits"):
        gpt2.with_pretokenizer("words")
