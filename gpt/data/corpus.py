"""The shipped pretraining corpora (Jane Austen's six novels, the King James Bible) as documents.

Each novel and each book of the Bible is one document; a model sees them separated by
`<|endoftext|>`. A fixed part is held out for evaluation and never trained on: one whole novel
(*Persuasion*) and five whole books of the Bible, so the held-out loss measures text the model has
never seen rather than neighbouring lines of a passage it has.
"""

from __future__ import annotations

import gzip
import re
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
    """A UTF-8 text file, gzip-compressed or not (the corpora ship as .txt.gz to stay small)."""
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
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


def is_held_out(doc: Document) -> bool:
    kind, _, name = doc.name.partition("-")
    return (kind == "austen" and name in HELD_OUT_NOVELS) or (kind == "kjv" and name in HELD_OUT_BOOKS)


def load_corpus(directory: Path = CORPORA) -> CorpusSplit:
    """All shipped documents, split into training and held-out ones (the split is fixed, not random)."""
    docs = austen_documents(directory) + kjv_documents(directory)
    return CorpusSplit(train=[d for d in docs if not is_held_out(d)], held_out=[d for d in docs if is_held_out(d)])


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
        split = load_corpus()
        return [d.text for d in split.train], [d.text for d in split.held_out], "austen+kjv (gpt/data/corpus.py split)"
    train_texts, val_texts = hold_out_tails([read_text(Path(name)) for name in text_files], val_fraction)
    return train_texts, val_texts, ", ".join(Path(n).name for n in text_files)
