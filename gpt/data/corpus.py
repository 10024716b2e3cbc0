"""The shipped pretraining corpora as documents: Austen, the King James Bible and modern English.

Each novel, each book of the Bible, each Wikipedia article, recipe or address is one document (the
short entries of glosses, fortunes and dialogues are grouped); a model sees them separated by
`<|endoftext|>`. A fixed part of every source is held out and never trained on: one whole novel
(*Persuasion*), five whole books of the Bible, and one document in twenty of each modern source,
chosen by a hash of its name, so the held-out loss measures documents the model has never seen
rather than neighbouring lines of a passage it has.
"""

from __future__ import annotations

import gzip
import json
import lzma
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gpt.files import ASSETS
from gpt.tokenizer import END_OF_TEXT

CORPORA = ASSETS / "corpora"
AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")
HELD_OUT_NOVELS = frozenset({"persuasion"})
# KJV book abbreviations as the file spells them: Ruth, Ecclesiastes, Jonah, Philippians, James.
HELD_OUT_BOOKS = frozenset({"Ruth", "Eccl", "Jonah", "Phi", "Jas"})
# The modern sources, `<name>.jsonl.xz` each (built by `tools/build_corpora.py`); README: assets/corpora/.
MODERN_SOURCES = ("wiki", "recipes", "sotu", "brown", "glosses", "fortunes", "chatterbot")
MODERN_TITLES = {"wiki": "Wikipedia: leads of 10,033 vital articles", "recipes": "Wikibooks: 3,129 recipes",
                 "sotu": "State of the Union addresses, 1946-2021", "brown": "the Brown Corpus (1961 American English)",
                 "glosses": "WordNet: a gloss for each of 44,556 words", "fortunes": "fortunes (quips and quotations)",
                 "chatterbot": "chatterbot's small-talk dialogues"}
SOURCES = ("austen", "kjv", *MODERN_SOURCES)
HELD_OUT_ONE_IN = 20
VERSE_REF = re.compile(r"^(?P<book>[0-9]?[A-Za-z]+)(?P<chapter>[0-9]+):(?P<verse>[0-9]+) ")


@dataclass(frozen=True)
class Document:
    name: str  # e.g. "austen-emma", "kjv-Ge"
    text: str


@dataclass(frozen=True)
class CorpusSplit:
    train: list[Document]
    held_out: list[Document]


def read_text(path: Path) -> str:
    """A UTF-8 text file, plain or compressed with gzip or xz (the corpora ship compressed to stay small)."""
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    elif path.suffix == ".xz":
        data = lzma.decompress(data)
    return data.decode("utf-8").replace("\r\n", "\n")


def unwrap_paragraphs(text: str) -> str:
    """Join hard-wrapped lines into one line per paragraph; paragraphs stay separated by a blank line.

    Project Gutenberg wraps at ~70 columns; a model trained on the wrapped text spends tokens and
    capacity on line breaks that mean nothing and generates ragged text.
    """
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in paragraphs)


def austen_documents(directory: Path = CORPORA) -> list[Document]:
    return [Document(f"austen-{novel}", unwrap_paragraphs(read_text(directory / f"austen-{novel}.txt.gz")))
            for novel in AUSTEN_NOVELS]


def kjv_documents(directory: Path = CORPORA) -> list[Document]:
    """One document per book: verse references ("Ge1:1 ") stripped, one verse a line, chapters apart."""
    books: dict[str, list[str]] = {}
    last_chapter: dict[str, str] = {}
    for line_no, line in enumerate(read_text(directory / "kjv.txt.gz").splitlines(), 1):
        if not line.strip():
            continue
        match = VERSE_REF.match(line)
        if match is None:
            raise ValueError(f"kjv.txt.gz line {line_no}: expected a verse reference like 'Ge1:1 ', got {line[:30]!r}")
        book, chapter = match["book"], match["chapter"]
        verses = books.setdefault(book, [])
        if verses and last_chapter[book] != chapter:
            verses.append("")  # a blank line between chapters
        last_chapter[book] = chapter
        verses.append(line[match.end():].strip())
    return [Document(f"kjv-{book}", "\n".join(verses)) for book, verses in books.items()]


def modern_documents(source: str, directory: Path = CORPORA) -> list[Document]:
    """One modern source's documents, in the file's order (one JSON object per line)."""
    lines = read_text(directory / f"{source}.jsonl.xz").splitlines()
    return [Document(d["name"], d["text"]) for d in map(json.loads, lines)]


def source_of(doc: Document) -> str:
    return doc.name.partition("-")[0]


def is_held_out(doc: Document) -> bool:
    """Whole works for Austen and the Bible; for the modern sources, the documents whose name hashes to 0 mod 20."""
    kind, _, name = doc.name.partition("-")
    if kind == "austen":
        return name in HELD_OUT_NOVELS
    if kind == "kjv":
        return name in HELD_OUT_BOOKS
    return zlib.crc32(doc.name.encode("utf-8")) % HELD_OUT_ONE_IN == 0


def source_documents(source: str, directory: Path = CORPORA) -> list[Document]:
    if source == "austen":
        return austen_documents(directory)
    if source == "kjv":
        return kjv_documents(directory)
    if source in MODERN_SOURCES:
        return modern_documents(source, directory)
    raise ValueError(f"unknown corpus {source!r}; the shipped ones are {', '.join(SOURCES)}")


def load_corpus(directory: Path = CORPORA, sources: Iterable[str] = SOURCES) -> CorpusSplit:
    """The shipped documents of `sources`, split into training and held-out ones (fixed, not random)."""
    docs = [doc for source in sources for doc in source_documents(source, directory)]
    return CorpusSplit(train=[d for d in docs if not is_held_out(d)], held_out=[d for d in docs if is_held_out(d)])


def select_corpus(chosen: Iterable[str], directory: Path = CORPORA) -> CorpusSplit:
    """The documents to train on and to hold out for the chosen sources (`SOURCES`) or single novels
    ("austen-emma").

    A source brings its fixed held-out documents; a novel trains alone and brings Persuasion, the
    held-out novel, so that any choice is measured on text it never trained on.
    """
    chosen = set(chosen)
    novels = {c for c in chosen if c.partition("-")[0] == "austen" and c != "austen"}
    unknown = sorted(c for c in chosen - novels if c not in SOURCES) + sorted(
        n for n in novels if n.partition("-")[2] not in AUSTEN_NOVELS or n.partition("-")[2] in HELD_OUT_NOVELS)
    if unknown:
        raise ValueError(f"unknown corpus {unknown[0]!r}; the shipped ones are {', '.join(SOURCES)}, or one "
                         f"novel: {', '.join(f'austen-{n}' for n in AUSTEN_NOVELS if n not in HELD_OUT_NOVELS)}")
    split = load_corpus(directory, [s for s in SOURCES if s in chosen or (s == "austen" and novels)])
    if novels and "austen" not in chosen:
        split = CorpusSplit([d for d in split.train if source_of(d) != "austen" or d.name in novels], split.held_out)
    return split


def join_documents(texts: Iterable[str]) -> str:
    """The text a model sees: every document's text followed by `<|endoftext|>`."""
    return "".join(text + END_OF_TEXT for text in texts)


def hold_out_tails(texts: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """(train, held-out) texts: the last `val_fraction` of each text is held out, the rest trained on."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {val_fraction}")
    cuts = [int(len(text) * (1 - val_fraction)) for text in texts]
    return ([t[:c] for t, c in zip(texts, cuts, strict=True)], [t[c:] for t, c in zip(texts, cuts, strict=True)])


def read_training_text(text_files: list[str], val_fraction: float) -> tuple[list[str], list[str], str]:
    """Training and held-out documents: the shipped corpora, or text files whose tails are held out.

    Returns (train texts, held-out texts, a name for the data that goes into the model card).
    """
    if not text_files:
        split = select_corpus(SOURCES)
        return ([d.text for d in split.train], [d.text for d in split.held_out],
                f"{'+'.join(SOURCES)} (gpt/data/corpus.py split)")
    train_texts, val_texts = hold_out_tails([read_text(Path(name)) for name in text_files], val_fraction)
    return train_texts, val_texts, ", ".join(Path(n).name for n in text_files)
