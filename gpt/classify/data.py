"""The spam data: the UCI SMS Spam Collection, SpamAssassin mail and modern messages, split, tokenized, padded.

Online, the full SMS collection (5,574 messages) is downloaded once and cached; offline, the 4,862-message
part shipped in `assets/` is used. Either way the source is recorded, because the figures depend on it.
The collection is by Tiago A. Almeida and José María Gómez Hidalgo (UCI Machine Learning Repository,
CC BY 4.0, doi:10.24432/C5CC84).

A data mix names what a classifier learns from. `sms` is the book's: the SMS collection alone. SMS spam
is mostly 2010-era premium-rate texts, so a model trained on it alone calls today's phishing ham;
`mixed` adds SpamAssassin mail and messages written by hand for this project (`assets/spam/`). Both are
measured on the same three sets, which neither trains on: the SMS test split, a SpamAssassin test split
and a held-out file of modern messages written apart from the training ones.

Any other classes come from a table (`file_mix`): a CSV or TSV file with a text and a label column,
split 70/10/20 within each class. A file that is not fit to train on is refused as a whole, with
a message saying why (not UTF-8, too big, one class, empty texts or labels, labels that are
numbers, too few messages in a class); completely blank lines are skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pooch
import torch
from torch.utils.data import Dataset

from gpt.data.corpus import read_text
from gpt.data.download import DownloadError, RemoteFile, fetch_cached
from gpt.data.splits import PARTS, Split, seeded_split
from gpt.files import ASSETS
from gpt.tokenizer import Tokenizer
from gpt.training.loop import padded_width

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
# The book's balancing throws away most SMS ham; a classifier trained on the balanced split alone calls
# everyday chatter spam (most of its SMS test errors). The mixed data trains on part of that thrown-away ham.
SMS_EXTRA_HAM = 500
MODERN_FRACTIONS = {"train": 0.9, "test": 0.0, "val": 0.1}  # no test part: the held-out file is the test
# The evaluation sets, by the names their figures are stored under (test_metrics.json), and in words.
SMS_TEST, SPAMASSASSIN_TEST, MODERN_TEST = "sms-test", "spamassassin-test", "modern-heldout"
FILE_TEST = "file-test"  # the test split of a table of one's own
SET_TITLES = {SMS_TEST: "SMS test split", SPAMASSASSIN_TEST: "SpamAssassin test split",
              MODERN_TEST: "modern held-out set", FILE_TEST: "test split of the data file"}
FILE_MIX = "file"  # the mix name recorded for a classifier trained on a table of one's own
# What a table of one's own may hold: the app's upload limit is usually lower than TABLE_MAX_BYTES.
TABLE_MAX_BYTES = 64 * 2**20
TABLE_MAX_ROWS = 100_000
MIN_PER_CLASS = 10  # 70/10/20 of 10 messages: 7 to train on, 1 to validate, 2 to test
MAX_CLASSES = 50
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Message:
    text: str
    label: int  # index into LABELS


@dataclass(frozen=True)
class SpamCorpus:
    messages: tuple[Message, ...]
    kind: str  # "download", "offline" or "file": how to get the same messages again
    source: str  # where the messages came from, in words: it goes into model cards
    labels: tuple[str, ...] = LABELS  # the class names, by index


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


def left_out_ham(corpus: SpamCorpus, split: Split[Message], n: int, seed: int = SPLIT_SEED) -> tuple[Message, ...]:
    """Up to `n` ham messages the balancing left out, none whose text is anywhere in `split` (the collection
    repeats messages: a repeat of a test message would be trained on), none twice; seeded."""
    taken = {m.text for part in (split.train, split.val, split.test) for m in part}
    unused: dict[str, Message] = {}
    for m in corpus.messages:
        if m.label == LABELS.index("ham") and m.text not in taken:
            unused.setdefault(m.text, m)
    texts = sorted(unused)
    return tuple(unused[t] for t in random.Random(seed).sample(texts, min(n, len(texts))))


@dataclass(frozen=True)
class EvaluationSet:
    """Messages a classifier never trains on; its figures on them are stored under `name`."""

    name: str
    messages: tuple[Message, ...]
    source: str


@dataclass(frozen=True)
class DataMix:
    """What a classifier trains on, picks its epoch with, and is measured on."""

    name: str  # one of MIXES, or FILE_MIX
    train: tuple[Message, ...]
    val: tuple[Message, ...]
    tests: tuple[EvaluationSet, ...]  # the SMS test split first: every spam classifier is compared on it
    corpus: SpamCorpus  # the SMS collection (its kind is what `load_mix` needs to get it again), or the file
    parts: dict[str, dict[str, Any]]  # part -> its source in words and its train / val / test counts

    @property
    def labels(self) -> tuple[str, ...]:
        return self.corpus.labels

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": sum(len(s.messages) for s in self.tests)}


def load_mix(name: str = "sms", sms_source: str = "auto", seed: int = SPLIT_SEED) -> DataMix:
    """`sms`: the book's balanced SMS split. `mixed`: the same SMS split (so the SMS test messages are the
    same), plus SpamAssassin balanced and split the same way, plus the modern training messages (a tenth
    of them for validation), plus SMS_EXTRA_HAM of the SMS ham the balancing left out (training only).
    Either mix is tested on the SMS and SpamAssassin test splits and the modern held-out file, none of which
    it trains on: an SMS-only classifier is measured on mail and on today's messages too, beside the shipped
    one.
    """
    if name not in MIXES:
        raise ValueError(f"unknown data mix {name!r}; choose one of {list(MIXES)}")
    sms = load_corpus(sms_source)
    sms_split = balanced_split(sms, seed)
    spamassassin = load_spamassassin()
    sa_split = balanced_split(spamassassin, seed)
    heldout = load_modern(MODERN_HELDOUT)
    train, val = list(sms_split.train), list(sms_split.val)
    sa_train, sa_val = (sa_split.train[:SPAMASSASSIN_TRAIN], sa_split.val[:SPAMASSASSIN_VAL]) if name == "mixed" \
        else ((), ())
    extra_ham = left_out_ham(sms, sms_split, SMS_EXTRA_HAM, seed) if name == "mixed" else ()
    modern_source = f"held out: {MODERN_HELDOUT.name} ({len(heldout.messages)})"
    modern_train: tuple[Message, ...] = ()
    modern_val: tuple[Message, ...] = ()
    if name == "mixed":
        modern = load_modern(MODERN_TRAIN)
        modern_split = seeded_split(modern.messages, MODERN_FRACTIONS, seed)
        modern_train, modern_val = modern_split.train, modern_split.val
        modern_source = f"{MODERN_TRAIN.name} ({len(modern.messages)} messages), {modern_source}"
    train += [*sa_train, *modern_train, *extra_ham]
    val += [*sa_val, *modern_val]
    tests = (EvaluationSet(SMS_TEST, sms_split.test, sms.source),
             EvaluationSet(SPAMASSASSIN_TEST, sa_split.test, spamassassin.source),
             EvaluationSet(MODERN_TEST, heldout.messages, heldout.source))
    parts: dict[str, dict[str, Any]] = {
        "sms": {"source": sms.source, "train": len(sms_split.train) + len(extra_ham), "val": len(sms_split.val),
                "test": len(sms_split.test), "extra_ham": len(extra_ham)},
        "spamassassin": {"source": spamassassin.source, "train": len(sa_train), "val": len(sa_val),
                         "test": len(sa_split.test)},
        "modern": {"source": f"written for this project: {modern_source}", "train": len(modern_train),
                   "val": len(modern_val), "test": len(heldout.messages)},
    }
    return DataMix(name, tuple(train), tuple(val), tests, sms, parts)


# --- a table of one's own -----------------------------------------------------------------------

def _ordinal_rows(rows: list[int], shown: int = 5) -> str:
    listed = ", ".join(str(r) for r in rows[:shown])
    return listed + (f" and {len(rows) - shown} more" if len(rows) > shown else "")


def _read_frame(text: str, name: str, max_rows: int) -> pd.DataFrame:
    """Every cell as a string; a .tsv (or a first line with a tab) is tab-separated and unquoted."""
    first_line = text.split("\n", 1)[0]
    tabs = name.lower().endswith(".tsv") or (not name.lower().endswith(".csv") and "\t" in first_line)
    try:
        frame = pd.read_csv(io.StringIO(text), sep="\t" if tabs else ",", header=None, dtype=str,
                            keep_default_na=False, skip_blank_lines=True, nrows=max_rows + 2,
                            quoting=3 if tabs else 0)  # csv.QUOTE_NONE for TSV, as the UCI file is written
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ValueError(f"{name}: cannot read it as a {'TSV' if tabs else 'CSV'} table ({reason})") from None
    return frame.fillna("")


def _text_and_labels(frame: pd.DataFrame, name: str) -> tuple[pd.Series, pd.Series, bool]:
    """The text and label columns: named by a header row, else the only two (the label: fewer distinct values)."""
    header = [str(c).strip().lower() for c in frame.iloc[0]] if len(frame) else []
    if "text" in header and "label" in header:
        body = frame.iloc[1:]
        return body[header.index("text")], body[header.index("label")], True
    if frame.shape[1] != 2:
        raise ValueError(f"{name}: expected two columns, a text and a label (or a header row naming the columns "
                         f"'text' and 'label'), found {frame.shape[1]}")
    first, second = frame[0], frame[1]
    if first.str.strip().nunique() < second.str.strip().nunique():  # label<TAB>text, as the UCI file
        return second, first, False
    return first, second, False


def parse_table(raw: bytes, name: str, max_rows: int = TABLE_MAX_ROWS) -> SpamCorpus:
    """A CSV/TSV file's bytes -> messages whose classes are the sorted label names; ValueError if unfit."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name} is not UTF-8 text (byte {err.start:,} is not): save it as UTF-8 "
                         "and upload it again") from None
    if not text.strip():
        raise ValueError(f"{name} is empty: it needs a row per message, with its text and its label")
    texts, labels, header = _text_and_labels(_read_frame(text, name, max_rows), name)
    if len(texts) > max_rows:
        raise ValueError(f"{name} has more than {max_rows:,} rows, the most a classifier here trains on")
    texts, labels = texts.tolist(), [label.strip() for label in labels]
    empty = [i for i, (t, label) in enumerate(zip(texts, labels, strict=True), 1) if not t.strip() or not label]
    if empty:
        raise ValueError(f"{name}: {len(empty)} row(s) have an empty text or label (data row(s) "
                         f"{_ordinal_rows(empty)}{', after the header' if header else ''}): fill them in or "
                         "delete them")
    classes = tuple(sorted(set(labels)))
    numbers = [label for label in classes if NUMBER.fullmatch(label)]
    if numbers:
        raise ValueError(f"{name}: the labels are numbers ({', '.join(numbers[:5])}); write class names instead "
                         "(such as ham and spam), so that the classifier's verdicts say what they mean")
    if len(classes) < 2:
        raise ValueError(f"{name}: every message has the label {classes[0]!r}; a classifier needs at least "
                         "two classes")
    if len(classes) > MAX_CLASSES:
        raise ValueError(f"{name}: {len(classes)} different labels, more than {MAX_CLASSES}; is the label column "
                         "the right one? (a header row 'text,label' says which is which)")
    counts = {c: labels.count(c) for c in classes}
    few = [f"{c!r} has {n}" for c, n in counts.items() if n < MIN_PER_CLASS]
    if few:
        raise ValueError(f"{name}: too few messages to split 70/10/20 within each class ({', '.join(few[:5])}); "
                         f"each class needs at least {MIN_PER_CLASS}")
    messages = tuple(Message(t, classes.index(label)) for t, label in zip(texts, labels, strict=True))
    by_class = ", ".join(f"{n} {c}" for c, n in counts.items())
    source = f"{name} ({len(messages)} messages: {by_class}; sha256 {hashlib.sha256(raw).hexdigest()[:12]})"
    return SpamCorpus(messages, "file", source, classes)


def load_table(path: str | Path, max_bytes: int = TABLE_MAX_BYTES, max_rows: int = TABLE_MAX_ROWS) -> SpamCorpus:
    """A CSV or TSV file of labelled messages, within the size and row limits (see `parse_table`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file missing: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path.name} is {size / 2**20:.1f} MB: the limit is {max_bytes / 2**20:.0f} MB")
    return parse_table(path.read_bytes(), path.name, max_rows)


def stratified_split(messages: Sequence[Message], n_classes: int, seed: int = SPLIT_SEED) -> Split[Message]:
    """The seeded 70/10/20 split within each class, the parts joined in class order."""
    per_class = [seeded_split([m for m in messages if m.label == c], SPLIT_FRACTIONS, seed) for c in range(n_classes)]
    return Split(*(tuple(m for split in per_class for m in getattr(split, part)) for part in PARTS))


def file_mix(path: str | Path, seed: int = SPLIT_SEED, max_bytes: int = TABLE_MAX_BYTES,
             max_rows: int = TABLE_MAX_ROWS) -> DataMix:
    """A table of one's own as a data mix: trained, validated and tested on its stratified split."""
    corpus = load_table(path, max_bytes, max_rows)
    split = stratified_split(corpus.messages, len(corpus.labels), seed)
    parts = {FILE_MIX: {"source": corpus.source, "train": len(split.train), "val": len(split.val),
                        "test": len(split.test)}}
    return DataMix(FILE_MIX, split.train, split.val, (EvaluationSet(FILE_TEST, split.test, corpus.source),), corpus,
                   parts)


class SpamDataset(Dataset):
    """Token ids of each message, truncated to the context window; `collate` pads a batch.

    A batch is padded with the end-of-text id to its longest example rounded up to a few widths
    (`gpt.training.loop.padded_width`: each new batch shape costs memory that stays). The book pads to
    the longest of the whole split; reading the class at each row's last real token (or the mean over
    its real ones) makes every padding give the same result, and short batches cost less. The
    end-of-text id never comes out of `Tokenizer.encode` (a user typing `<|endoftext|>` gets plain
    text), so a row's length is its count of other ids.
    Use it as `DataLoader(dataset, collate_fn=dataset.collate, ...)`.
    """

    def __init__(self, messages: Sequence[Message], tokenizer: Tokenizer, context_length: int):
        if not messages:
            raise ValueError("no messages to build a dataset from")
        self.pad_id = tokenizer.eot_id
        self.context_length = context_length
        self.encoded = [tokenizer.encode(m.text)[:context_length] for m in messages]
        self.labels = [m.label for m in messages]

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.encoded[i], self.labels[i]

    def collate(self, batch: Sequence[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, label) pairs -> ids (B, width) padded with the end-of-text id, labels (B,): the width is the
        longest example's length rounded up (`padded_width`), at most the context."""
        longest = padded_width(max(len(ids) for ids, _ in batch), self.context_length)
        padded = [ids + [self.pad_id] * (longest - len(ids)) for ids, _ in batch]
        return torch.tensor(padded, dtype=torch.long), torch.tensor([label for _, label in batch], dtype=torch.long)
