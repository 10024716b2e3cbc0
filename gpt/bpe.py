"""Byte-level byte-pair encoding written from scratch: training, encoding, decoding.

This is the teaching implementation (the book's chapter 2 uses tiktoken as a black box). A BPE is
fully described by its ranks: token bytes -> id, where the 256 single bytes come first and every
later id is a merge of two earlier tokens. Encoding repeatedly merges the adjacent pair whose
concatenation has the lowest rank, which is exactly what tiktoken does, so the ranks we train load
into `gpt.tokenizer.Tokenizer` for speed, and GPT-2's ranks load here and encode identically.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import regex
from tqdm.auto import tqdm

from gpt.tokenizer import GPT2_PATTERN, Tokenizer, read_ranks, write_ranks

PRETOKENIZER = regex.compile(GPT2_PATTERN)
# Training reads longer pre-tokenized words in pieces of this many bytes. No word of a real text is
# that long, and each merge revisits every word holding the pair, so a single run of 50,000 letters
# would otherwise cost minutes and gigabytes.
MAX_WORD_BYTES = 100


def pretokenize(text: str) -> list[bytes]:
    """Split text into GPT-2's word-like chunks, as UTF-8 bytes; merges never cross chunks."""
    return [m.encode("utf-8") for m in PRETOKENIZER.findall(text)]


class BytePairEncoder:
    def __init__(self, ranks: dict[bytes, int]):
        self.ranks = ranks
        self.vocab = {rank: token for token, rank in ranks.items()}
        self._cache: dict[bytes, list[int]] = {}

    # -- training ----------------------------------------------------------------------------
    @classmethod
    def train(cls, text: str, vocab_size: int, progress: bool = False) -> BytePairEncoder:
        """Learn merges until the vocabulary (256 bytes + merges + `<|endoftext|>`) has `vocab_size`.

        Pair counts are kept incrementally: a merge only revisits the words that contain the pair,
        so training on a few megabytes takes seconds rather than hours.
        """
        if vocab_size < 257:
            raise ValueError(f"vocab_size must be at least 257 (256 bytes + <|endoftext|>), got {vocab_size}")
        word_counts = Counter(word[i:i + MAX_WORD_BYTES] for word in pretokenize(text)
                              for i in range(0, len(word), MAX_WORD_BYTES))
        words = [list(w) for w in word_counts]  # each word as a list of token ids (bytes first)
        freqs = list(word_counts.values())
        vocab = [bytes([b]) for b in range(256)]
        ranks = {tok: i for i, tok in enumerate(vocab)}

        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
        for wi, (word, freq) in enumerate(zip(words, freqs, strict=True)):
            for pair in pairwise(word):
                pair_counts[pair] += freq
                pair_words[pair].add(wi)
        heap = [(-count, pair) for pair, count in pair_counts.items()]
        heapq.heapify(heap)

        n_merges = vocab_size - 1 - 256
        bar = tqdm(total=n_merges, desc="BPE merges", disable=not progress)
        while len(ranks) < vocab_size - 1 and heap:
            neg_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -neg_count or neg_count == 0:
                continue  # stale heap entry
            merged = vocab[pair[0]] + vocab[pair[1]]
            if merged in ranks:  # reached before by another pair of parts: reuse its id
                new_id = ranks[merged]
            else:
                new_id = len(vocab)
                vocab.append(merged)
                ranks[merged] = new_id
                bar.update(1)
            changed: set[tuple[int, int]] = set()
            for wi in pair_words.pop(pair):
                word, freq = words[wi], freqs[wi]
                for p in pairwise(word):
                    pair_counts[p] -= freq
                    changed.add(p)
                words[wi] = word = _merge(word, pair, new_id)
                for p in pairwise(word):
                    pair_counts[p] += freq
                    pair_words[p].add(wi)
                    changed.add(p)
            pair_counts.pop(pair, None)
            for p in changed:
                if pair_counts.get(p, 0) > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
        bar.close()
        return cls(ranks)

    # -- encoding ----------------------------------------------------------------------------
    def encode_chunk(self, chunk: bytes) -> list[int]:
        """Merge the lowest-ranked adjacent pair until none of the pairs is a token."""
        if chunk in self._cache:
            return self._cache[chunk]
        parts = [chunk[i : i + 1] for i in range(len(chunk))]
        while len(parts) > 1:
            best_rank, best_i = None, -1
            for i in range(len(parts) - 1):
                rank = self.ranks.get(parts[i] + parts[i + 1])
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best_i = rank, i
            if best_rank is None:
                break
            parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        ids = [self.ranks[p] for p in parts]
        self._cache[chunk] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        return [i for chunk in pretokenize(text) for i in self.encode_chunk(chunk)]

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the ranks in tiktoken's format, so `gpt.tokenizer.load_tokenizer(path)` reads them."""
        write_ranks(self.ranks, path)

    @classmethod
    def load(cls, path: str | Path) -> BytePairEncoder:
        return cls(read_ranks(path))

    def to_tokenizer(self, name: str = "bpe") -> Tokenizer:
        return Tokenizer(name, dict(self.ranks))


def _merge(word: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out
