"""The spam data: the UCI SMS Spam Collection, SpamAssassin mail and modern messages, split, tokenized, padded.

Online, the full SMS collection (5,574 messages) is downloaded once and cached; offline, the 4,862-message
part shipped in `assets/` is used. Either way the source is recorded, because the figures depend on it.
The collection is by Tiago A. Almeida and José María Gómez Hidalgo (UCI Machine Learning Repository,
CC BY 4.0, doi:10.24432/C5CC84).

A data mix names what a classifier learns from. `sms` is the book's: the SMS collection alone. SMS spam
is mostly 2010-era premium-rate texts, so a model trained on it alone calls today's phishing ham;
`mixed` adds SpamAssassin mail and messages written by hand for this project (`assets/spam/`), and is
measured on three sets it never trains on: the SMS test split, a SpamAssassin test split and a held-out
file of modern messages written apart from the training ones.
"""

from __future__ import annotations

import gzip
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pooch
import torch
from torch.utils.data import Dataset

from gpt.data.corpus import read_text
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

SPAM_DATA = ASSETS / "spam"  # what the `mixed` data adds; provenance in its README.md
SPAMASSASSIN_COPY = SPAM_DATA / "spamassassin.tsv.xz"  # written by `python -m tools.build_spam_data`
MODERN_TRAIN = SPAM_DATA / "modern-train.tsv"
MODERN_HELDOUT = SPAM_DATA / "modern-heldout.tsv"
MIXES = ("sms", "mixed")
# A mail fills most of the 256-token context and pads every batch it is in to that length, so a batch
# with a mail costs about 8 of SMS messages: the mix trains on part of SpamAssassin's training split,
# to keep a finetuning on 2 CPU cores within minutes. The test split is whole.
SPAMASSASSIN_TRAIN = 600
SPAMASSASSIN_VAL = 100
MODERN_FRACTIONS = {"train": 0.9, "test": 0.0, "val": 0.1}  # no test part: the held-out file is the test
# The evaluation sets, by the names their figures are stored under (test_metrics.json), and in words.
SMS_TEST, SPAMASSASSIN_TEST, MODERN_TEST = "sms-test", "spamassassin-test", "modern-heldout"
SET_TITLES = {SMS_TEST: "SMS test split", SPAMASSASSIN_TEST: "SpamAssassin test split",
              MODERN_TEST: "modern held-out set"}


@dataclass(frozen=True)
class Message:
    text: str
    label: int  # index into LABELS


@dataclass(frozen=True)
class SpamCorpus:
    messages: tuple[Message, ...]
    kind: str  # "download" or "offline": how to get the same messages again
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


def unescape_cell(cell: str) -> str:
    r"""A TSV cell as SpamAssassin's copies escape it: `\\` is a backslash, `\n` a newline."""
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], cell)


def escape_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def load_spamassassin(path: str | Path = SPAMASSASSIN_COPY) -> SpamCorpus:
    """The compact SpamAssassin copy: `label<TAB>group<TAB>text` lines, the text escaped."""
    path = Path(path)
    messages = []
    for line_no, line in enumerate(read_text(path).splitlines(), 1):
        cells = line.split("\t")
        if len(cells) != 3 or cells[0] not in LABELS or not cells[2]:
            raise ValueError(f"{path}: line {line_no} is not '<ham|spam><TAB><group><TAB><text>'")
        messages.append(Message(unescape_cell(cells[2]), LABELS.index(cells[0])))
    source = f"SpamAssassin public corpus, subject and start of each mail ({path.name}, {len(messages)} mails)"
    return SpamCorpus(tuple(messages), "offline", source)


def load_modern(path: str | Path) -> SpamCorpus:
    """Modern messages written by hand for this project, in the UCI format."""
    path = Path(path)
    messages = parse_tsv(read_text(path), str(path))
    return SpamCorpus(messages, "offline", f"modern messages written for this project ({path.name}, "
                                           f"{len(messages)} messages)")


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


@dataclass(frozen=True)
class EvaluationSet:
    """Messages a classifier never trains on; its figures on them are stored under `name`."""

    name: str
    messages: tuple[Message, ...]
    source: str


@dataclass(frozen=True)
class DataMix:
    """What a classifier trains on, picks its epoch with, and is measured on."""

    name: str  # one of MIXES
    train: tuple[Message, ...]
    val: tuple[Message, ...]
    tests: tuple[EvaluationSet, ...]  # the SMS test split first: every classifier is compared on it
    sms: SpamCorpus  # its kind is what `load_mix` needs to get the same SMS messages again
    parts: dict[str, dict[str, Any]]  # part -> its source in words and its train / val / test counts

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": sum(len(s.messages) for s in self.tests)}


def load_mix(name: str = "sms", sms_source: str = "auto", seed: int = SPLIT_SEED) -> DataMix:
    """`sms`: the book's balanced SMS split. `mixed`: the same SMS split (so the SMS test messages are the
    same), plus SpamAssassin balanced and split the same way, plus the modern training messages (a tenth
    of them for validation); tested on the SMS and SpamAssassin test splits and the modern held-out file.
    """
    if name not in MIXES:
        raise ValueError(f"unknown data mix {name!r}; choose one of {list(MIXES)}")
    sms = load_corpus(sms_source)
    sms_split = balanced_split(sms, seed)
    train, val = list(sms_split.train), list(sms_split.val)
    tests = [EvaluationSet(SMS_TEST, sms_split.test, sms.source)]
    parts: dict[str, dict[str, Any]] = {"sms": {"source": sms.source, "train": len(sms_split.train),
                                                "val": len(sms_split.val), "test": len(sms_split.test)}}
    if name == "mixed":
        spamassassin = load_spamassassin()
        sa_split = balanced_split(spamassassin, seed)
        sa_train, sa_val = sa_split.train[:SPAMASSASSIN_TRAIN], sa_split.val[:SPAMASSASSIN_VAL]
        modern = load_modern(MODERN_TRAIN)
        modern_split = seeded_split(modern.messages, MODERN_FRACTIONS, seed)
        heldout = load_modern(MODERN_HELDOUT)
        train += [*sa_train, *modern_split.train]
        val += [*sa_val, *modern_split.val]
        tests += [EvaluationSet(SPAMASSASSIN_TEST, sa_split.test, spamassassin.source),
                  EvaluationSet(MODERN_TEST, heldout.messages, heldout.source)]
        parts["spamassassin"] = {"source": spamassassin.source, "train": len(sa_train), "val": len(sa_val),
                                 "test": len(sa_split.test)}
        parts["modern"] = {"source": f"written for this project: {MODERN_TRAIN.name} ({len(modern.messages)} "
                                     f"messages), held out: {MODERN_HELDOUT.name} ({len(heldout.messages)})",
                           "train": len(modern_split.train), "val": len(modern_split.val),
                           "test": len(heldout.messages)}
    return DataMix(name, tuple(train), tuple(val), tuple(tests), sms, parts)


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
