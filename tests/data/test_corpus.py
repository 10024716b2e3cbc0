"""The shipped corpora as documents, and their fixed held-out split."""

from __future__ import annotations

import gzip
import json
import lzma
from collections import Counter

import pytest

from gpt.data.corpus import (
    SOURCES,
    Document,
    is_held_out,
    join_documents,
    kjv_documents,
    load_corpus,
    modern_documents,
    read_text,
    select_corpus,
    source_of,
    unwrap_paragraphs,
)


def test_kjv_references_are_stripped_one_document_per_book(tmp_path):
    lines = ["Ge1:1 In the beginning God created the heaven and the earth.", "Ge1:2 And the earth was without form.",
             "Ge2:1 Thus the heavens were finished.", "Ruth1:1 Now it came to pass.", "1Sm1:1 Now there was a man."]
    (tmp_path / "kjv.txt.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    docs = kjv_documents(tmp_path)
    assert [d.name for d in docs] == ["kjv-Ge", "kjv-Ruth", "kjv-1Sm"]
    assert docs[0].text == ("In the beginning God created the heaven and the earth.\nAnd the earth was without form.\n"
                            "\nThus the heavens were finished.")
    assert [is_held_out(d) for d in docs] == [False, True, False]
    (tmp_path / "kjv.txt.gz").write_bytes(gzip.compress(b"no reference here\n"))
    with pytest.raises(ValueError, match="line 1"):
        kjv_documents(tmp_path)


def test_unwrap_paragraphs_joins_hard_wrapped_lines():
    assert unwrap_paragraphs("Chapter 1\n\n\nIt is a truth\nuniversally\n  acknowledged.\n\nNext.") == (
        "Chapter 1\n\nIt is a truth universally acknowledged.\n\nNext.")


def test_shipped_corpus_split_holds_out_whole_documents_of_every_source():
    split = load_corpus()
    held = {d.name for d in split.held_out}
    assert {"austen-persuasion", "kjv-Ruth", "kjv-Eccl", "kjv-Jonah", "kjv-Phi", "kjv-Jas"} <= held
    assert not held & {d.name for d in split.train}
    assert set(Counter(map(source_of, split.held_out))) == set(SOURCES) == set(Counter(map(source_of, split.train)))
    train_text = join_documents(d.text for d in split.train)
    assert "Ge1:1" not in train_text and train_text.startswith("SENSE AND SENSIBILITY")
    assert "Anne Elliot" not in train_text  # Persuasion's heroine never appears in training text
    assert join_documents(["x", "y"]) == "x<|endoftext|>y<|endoftext|>"
    held_bytes = sum(len(d.text) for d in split.held_out)
    assert 0.03 < held_bytes / (held_bytes + sum(len(d.text) for d in split.train)) < 0.08


def test_modern_sources_hold_out_one_document_in_twenty_by_name(tmp_path):
    docs = [{"name": f"wiki-Article {i}", "text": f"Article {i}\n\nText of article {i}."} for i in range(400)]
    (tmp_path / "wiki.jsonl.xz").write_bytes(lzma.compress("\n".join(map(json.dumps, docs)).encode()))
    read = modern_documents("wiki", tmp_path)
    assert read[3] == Document("wiki-Article 3", "Article 3\n\nText of article 3.")
    held = [d.name for d in read if is_held_out(d)]
    assert 8 <= len(held) <= 40  # about 1 in 20, decided by the name alone: the same whatever the order
    assert held == [d.name for d in reversed(read) if is_held_out(d)][::-1]
    split = load_corpus(tmp_path, sources=["wiki"])
    assert [d.name for d in split.held_out] == held and len(split.train) == 400 - len(held)
    with pytest.raises(ValueError, match="unknown corpus 'news'"):
        load_corpus(tmp_path, sources=["news"])


def test_read_text_reads_plain_gzip_and_xz(tmp_path):
    for name, pack in [("a.txt", bytes), ("a.txt.gz", gzip.compress), ("a.txt.xz", lzma.compress)]:
        (tmp_path / name).write_bytes(pack(b"line\r\nnext"))
        assert read_text(tmp_path / name) == "line\nnext"


def test_a_chosen_novel_trains_alone_and_brings_the_held_out_novel():
    split = select_corpus(["austen-emma", "kjv"])
    assert [d.name for d in split.train if source_of(d) == "austen"] == ["austen-emma"]
    assert [d.name for d in split.held_out if source_of(d) == "austen"] == ["austen-persuasion"]
    assert sum(source_of(d) == "kjv" for d in split.train) == 61 and len(split.held_out) == 6
    whole = select_corpus(["austen"])
    assert len(whole.train) == 5 and [d.name for d in whole.held_out] == ["austen-persuasion"]
    assert select_corpus([]).train == []


@pytest.mark.parametrize("chosen", [["austen-persuasion"], ["austen-dracula"], ["gutenberg"]])
def test_an_unknown_or_held_out_choice_is_refused(chosen):
    with pytest.raises(ValueError, match="unknown corpus"):
        select_corpus(chosen)
