"""The SMS spam data: the UCI SMS Spam Collection, balanced, split, tokenized and padded.

Online, the full collection (5,574 messages) is downloaded once and cached; offline, the 4,862-message
part shipped in `assets/` is used. Either way the source is recorded, because the figures depend on it.
The collection is by Tiago A. Almeida and José María Gómez Hidalgo (UCI Machine Learning Repository,
CC BY 4.0, doi:10.24432/C5CC84).
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pooch
import torch
from torch.utils.data import Dataset

from gpt.data.download import DownloadError, RemoteFile, fetch_cached
from gpt.data.splits import Split, seeded_split
from gpt.files import ASSETS
from gpt.tokenizer import Tokenizer

LABELS = ("ham", "spam")  # the class index is the position in this tuple
UCI_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
UCI_ARCHIVE = "sms_spam_collection.zip"  # its name in the download cache
UCI_MEMBER = "SMSSpamCollection"  # the tab-separated file inside the zip
OFFLINE_COPY = ASSETS / "sms_spam.tsv.gz"
SOURCES = ("auto", "download", "offline")
SPLIT_SEED = 123  # fixed, so that every classifier is measured on the same test messages
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}  # the book's, cut in this order


@dataclass(frozen=True)
class Message:
    text: str
    label: int  # index into LABELS


@dataclass(frozen=True)
class SpamCorpus:
    messages: tuple[Message, ...]
    kind: str  # "download" or "offline": what `load_corpus` needs to get the same messages again
    source: str  # where the messages came from, in words: it goes into model cards


def parse_tsv(text: str, origin: str) -> tuple[Message, ...]:
    """`label<TAB>text` lines (the UCI format) -> messages; blank lines are skipped."""
    messages = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        label, sep, body = line.partition("\t")
        if not sep or label not in LABELS:
            raise ValueError(f"{origin}: line {line_no} is not '<ham|spam><TAB><text>'")
        if body.strip():
            messages.append(Message(body, LABELS.index(label)))
    return tuple(messages)


def download_collection(url: str = UCI_URL, cache_dir: str | Path | None = None, timeout: float = 30.0) -> Path:
    """The collection's TSV file, downloaded and unzipped on first use, from the cache afterwards.

    The UCI archive is not pinned to a hash: UCI publishes none. Raises DownloadError.
    """
    return fetch_cached(RemoteFile(url, UCI_ARCHIVE), cache_dir, timeout, processor=pooch.Unzip(members=[UCI_MEMBER]))


def load_offline_copy(path: str | Path = OFFLINE_COPY) -> SpamCorpus:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"offline SMS spam data missing: {path}")
    messages = parse_tsv(gzip.decompress(path.read_bytes()).decode("utf-8"), str(path))
    source = f"offline part of the UCI SMS Spam Collection ({path.name}, {len(messages)} messages)"
    return SpamCorpus(messages, "offline", source)


def load_corpus(source: str = "auto", url: str = UCI_URL, cache_dir: str | Path | None = None) -> SpamCorpus:
    """`download` (full collection), `offline` (shipped part), or `auto`: download, else the shipped part.

    `cache_dir` defaults to the shared download cache (`gpt.data.download.cache_dir`).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; choose one of {list(SOURCES)}")
    if source == "offline":
        return load_offline_copy()
    try:
        path = download_collection(url, cache_dir)
    except DownloadError as err:
        if source == "download":
            raise FileNotFoundError(f"SMS Spam Collection: {err}") from err
        return load_offline_copy()
    messages = parse_tsv(path.read_bytes().decode("utf-8", errors="replace"), str(path))
    return SpamCorpus(messages, "download", f"UCI SMS Spam Collection, downloaded ({len(messages)} messages)")


def balance(messages: Sequence[Message], seed: int = SPLIT_SEED) -> list[Message]:
    """Undersample every class to the size of the smallest one (here: ham down to the spam count)."""
    by_class = [[m for m in messages if m.label == c] for c in range(len(LABELS))]
    smallest = min(len(group) for group in by_class)
    if smallest == 0:
        raise ValueError("cannot balance: a class has no messages")
    rng = random.Random(seed)
    return [m for group in by_class for m in (group if len(group) == smallest else rng.sample(group, smallest))]


def balanced_split(corpus: SpamCorpus, seed: int = SPLIT_SEED) -> Split[Message]:
    """The book's recipe: balance by undersampling ham, then a seeded 70/10/20 train/val/test split."""
    return seeded_split(balance(corpus.messages, seed), SPLIT_FRACTIONS, seed)


class SpamDataset(Dataset):
    """Token ids of each message, truncated to the context window; `collate` pads a batch.

    A batch is padded with the end-of-text id to its longest example (the book pads to the longest
    of the whole split; reading the class at each row's last real token makes both give the same
    result, and short batches cost less). The end-of-text id never comes out of `Tokenizer.encode`
    (a user typing `<|endoftext|>` gets plain text), so a row's length is its count of other ids.
    Use it as `DataLoader(dataset, collate_fn=dataset.collate, ...)`.
    """

    def __init__(self, messages: Sequence[Message], tokenizer: Tokenizer, context_length: int):
        if not messages:
            raise ValueError("no messages to build a dataset from")
        self.pad_id = tokenizer.eot_id
        self.encoded = [tokenizer.encode(m.text)[:context_length] for m in messages]
        self.labels = [m.label for m in messages]

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.encoded[i], self.labels[i]

    def collate(self, batch: Sequence[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, label) pairs -> ids (B, longest) padded with the end-of-text id, labels (B,)."""
        longest = max(len(ids) for ids, _ in batch)
        padded = [ids + [self.pad_id] * (longest - len(ids)) for ids, _ in batch]
        return torch.tensor(padded, dtype=torch.long), torch.tensor([label for _, label in batch], dtype=torch.long)
