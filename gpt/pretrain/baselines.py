"""What a language model's held-out bits per byte should beat: `xz -9`, and a byte n-gram model.

Bits per byte (total bits to encode the text / its UTF-8 bytes) compares models whatever their
tokenizer: a model with a bigger vocabulary has fewer, harder tokens, and per-token loss would
flatter or punish it for that alone.
"""

from __future__ import annotations

import lzma
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from gpt.data.corpus import CorpusSplit, join_documents, load_corpus, source_of
from gpt.model import GPTModel
from gpt.tokenizer import Tokenizer
from gpt.training.loss import bits_per_byte, heldout_loss


def xz_bits_per_byte(text: str, context: str = "") -> float:
    """`xz -9` on `text`; with `context`, the extra bits `text` costs after it (xz(context+text) - xz(context)).

    The second figure is the fair one beside a trained model: xz also gets to learn from the
    training text (preset 9 keeps a 64 MiB window, larger than the corpora).
    """
    data = text.encode("utf-8")
    if not data:
        raise ValueError("cannot measure bits per byte of an empty text")
    size = len(lzma.compress(data, preset=9))
    if context:
        prefix = context.encode("utf-8")
        size = len(lzma.compress(prefix + data, preset=9)) - len(lzma.compress(prefix, preset=9))
    return 8 * size / len(data)


class ByteNGram:
    """An interpolated Kneser-Ney byte n-gram model (`order` bytes: `order - 1` of context).

    Counts live in sorted NumPy arrays of integer keys (context bytes and next byte packed into a
    uint64), so training on megabytes and scoring every byte are a few vectorised sorts and
    searches. The highest order uses raw counts; lower orders use continuation counts (in how many
    distinct contexts a string appears), which is what makes Kneser-Ney better than plain backoff.
    """

    def __init__(self, order: int = 3):
        if not 1 <= order <= 8:
            raise ValueError(f"order must be between 1 and 8 (keys are packed in 64 bits), got {order}")
        self.order = order
        self.tables: list[tuple[np.ndarray, np.ndarray]] = []  # per n: (sorted keys, counts)
        self.discounts: list[float] = []

    @staticmethod
    def _keys(data: np.ndarray, n: int) -> np.ndarray:
        """Key of the n bytes ending at each position (positions >= n - 1 of the padded array)."""
        keys = np.zeros(len(data) - n + 1, dtype=np.uint64)
        for j in range(n):
            keys = (keys << np.uint64(8)) | data[j:len(data) - n + 1 + j].astype(np.uint64)
        return keys

    def fit(self, text: str) -> ByteNGram:
        data = np.frombuffer(b"\0" * (self.order - 1) + text.encode("utf-8"), dtype=np.uint8)
        self.tables, self.discounts = [], []
        higher: np.ndarray | None = None
        for n in range(self.order, 0, -1):
            if higher is None:  # the top order: how often each n-gram occurs
                keys, counts = np.unique(self._keys(data, n), return_counts=True)
            else:  # lower orders: in how many distinct contexts (one byte longer) each n-gram occurs
                keys, counts = np.unique(higher & np.uint64((1 << (8 * n)) - 1), return_counts=True)
            n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
            self.discounts.insert(0, float(n1 / (n1 + 2 * n2)) if n1 + n2 else 0.75)
            self.tables.insert(0, (keys, counts.astype(np.float64)))
            higher = keys
        return self

    def _lookup(self, n: int, keys: np.ndarray) -> np.ndarray:
        table_keys, counts = self.tables[n - 1]
        pos = np.clip(np.searchsorted(table_keys, keys), 0, len(table_keys) - 1)
        return np.where(table_keys[pos] == keys, counts[pos], 0.0)

    def _context_stats(self, n: int, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each context: total count of its continuations, and how many distinct ones there are."""
        table_keys, counts = self.tables[n - 1]
        ctx_of = table_keys >> np.uint64(8)
        lo = np.searchsorted(ctx_of, contexts, side="left")
        hi = np.searchsorted(ctx_of, contexts, side="right")
        cumulative = np.concatenate([[0.0], np.cumsum(counts)])
        return cumulative[hi] - cumulative[lo], (hi - lo).astype(np.float64)

    def byte_probabilities(self, data: bytes) -> np.ndarray:
        """The probability of each byte of `data` given the `order - 1` bytes before it."""
        if not self.tables:
            raise ValueError("fit the model before scoring text")
        padded = np.frombuffer(b"\0" * (self.order - 1) + data, dtype=np.uint8)
        prob = np.full(len(data), 1.0 / 256)
        for n in range(1, self.order + 1):
            keys = self._keys(padded, n)[self.order - n:]  # the n-gram ending at each scored byte
            count = self._lookup(n, keys)
            total, distinct = self._context_stats(n, keys >> np.uint64(8))
            d = self.discounts[n - 1]
            seen = total > 0
            interpolated = (np.maximum(count - d, 0.0) + d * distinct * prob) / np.where(seen, total, 1.0)
            prob = np.where(seen, interpolated, prob)
        return prob

    def bits_per_byte(self, text: str) -> float:
        data = text.encode("utf-8")
        if not data:
            raise ValueError("cannot measure bits per byte of an empty text")
        return float(-np.log2(self.byte_probabilities(data)).mean())


def heldout_baselines(train_text: str, held_out: str, orders: tuple[int, ...] = (3, 5)) -> dict[str, float]:
    """Bits per byte of `held_out` under xz -9 (alone, and after the training text) and byte n-grams fit on it."""
    figures = {"xz -9 (held-out text alone)": xz_bits_per_byte(held_out),
               "xz -9 (after the training text)": xz_bits_per_byte(held_out, context=train_text)}
    for order in orders:
        figures[f"Kneser-Ney byte {order}-gram"] = ByteNGram(order).fit(train_text).bits_per_byte(held_out)
    return figures


def shipped_corpus_baselines(orders: tuple[int, ...] = (3, 5)) -> dict[str, float]:
    """The baselines on the shipped corpora's fixed held-out documents."""
    split = load_corpus()
    train_text, held_out = join_documents(d.text for d in split.train), join_documents(d.text for d in split.held_out)
    return heldout_baselines(train_text, held_out, orders)


@dataclass(frozen=True)
class SourceFigures:
    """One source's held-out bits per byte: the model (if any) beside xz and a byte n-gram."""

    source: str
    held_out_bytes: int
    xz: float  # xz -9 after this source's training text
    ngram: float  # Kneser-Ney byte n-gram fit on this source's training text
    model: float | None = None

    @property
    def model_over_xz(self) -> float | None:
        return None if self.model is None else self.model / self.xz

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"model_over_xz": self.model_over_xz}


def model_bits_per_byte(model: GPTModel, tokenizer: Tokenizer, texts: list[str]) -> float:
    """Bits per byte of documents scored as one stream, each followed by `<|endoftext|>` (as training sees them)."""
    ids = [i for text in texts for i in [*tokenizer.encode(text), tokenizer.eot_id]]
    loss, count = heldout_loss(model, np.asarray(ids, dtype=np.int64), batch_size=32)
    return bits_per_byte(loss * count, len(join_documents(texts).encode("utf-8")))


def per_source_figures(split: CorpusSplit, model: GPTModel | None = None, tokenizer: Tokenizer | None = None,
                       order: int = 5) -> list[SourceFigures]:
    """Every source's held-out documents, scored apart, so that a mix cannot hide a source the model fails on.

    xz and the n-gram see only the source's own training text: the strongest prior each can have
    for that source (xz -9's 64 MiB window would hold the whole mix, but other sources only dilute it).
    """
    train, held = defaultdict(list), defaultdict(list)
    for doc in split.train:
        train[source_of(doc)].append(doc.text)
    for doc in split.held_out:
        held[source_of(doc)].append(doc.text)
    figures = []
    for source, texts in held.items():
        train_text, held_text = join_documents(train[source]), join_documents(texts)
        score = None if model is None or tokenizer is None else model_bits_per_byte(model, tokenizer, texts)
        figures.append(SourceFigures(source, len(held_text.encode("utf-8")),
                                     xz=xz_bits_per_byte(held_text, context=train_text),
                                     ngram=ByteNGram(order).fit(train_text).bits_per_byte(held_text), model=score))
    return figures
