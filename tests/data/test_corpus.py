"""The shipped corpora as documents, and their fixed held-out split."""

from __future__ import annotations

import gzip

import pytest

from gpt.data.corpus import is_held_out, join_documents, kjv_documents, load_corpus, unwrap_paragraphs


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


def test_shipped_corpus_split_holds_out_whole_documents():
    split = load_corpus()
    held = {d.name for d in split.held_out}
    assert held == {"austen-persuasion", "kjv-Ruth", "kjv-Eccl", "kjv-Jonah", "kjv-Phi", "kjv-Jas"}
    assert not held & {d.name for d in split.train} and len(split.train) == 5 + 61
    train_text = join_documents(d.text for d in split.train)
    assert "Ge1:1" not in train_text and train_text.startswith("SENSE AND SENSIBILITY")
    assert "Anne Elliot" not in train_text  # Persuasion's heroine never appears in training text
    assert join_documents(["x", "y"]) == "x<|endoftext|>y<|endoftext|>"
