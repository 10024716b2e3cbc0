"""The data in `assets/spam/`: the modern messages written by hand, their held-out file's independence,
and the compact SpamAssassin copy with the builder that writes it."""

from __future__ import annotations

import lzma
import re
from collections import Counter

import pytest

from gpt.classify import data
from tools import build_spam_data as builder


def ngrams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@pytest.mark.parametrize("path, at_least", [(data.MODERN_TRAIN, 1000), (data.MODERN_HELDOUT, 240)])
def test_modern_files_are_balanced_short_messages_without_repeats(path, at_least):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(line.count("\t") == 1 for line in lines)  # label<TAB>text, no tab inside a message
    messages = data.load_modern(path).messages
    assert len(messages) == len(lines) >= at_least
    counts = Counter(m.label for m in messages)
    assert abs(counts[0] - counts[1]) <= len(messages) * 0.02  # half spam
    assert all(4 <= len(m.text.split()) <= 40 for m in messages)
    assert len({m.text.lower() for m in messages}) == len(messages)


def test_the_held_out_messages_share_no_five_words_in_a_row_with_the_training_ones():
    """Written apart, not paraphrased: no held-out message shares a word 5-gram with any training message."""
    training = set().union(*(ngrams(m.text) for m in data.load_modern(data.MODERN_TRAIN).messages))
    shared = {m.text: ngrams(m.text) & training for m in data.load_modern(data.MODERN_HELDOUT).messages}
    assert {text: grams for text, grams in shared.items() if grams} == {}


def test_the_held_out_file_is_half_spam():
    counts = Counter(m.label for m in data.load_modern(data.MODERN_HELDOUT).messages)
    assert counts[0] == counts[1]


ISSUES = {
    "WINNER! Claim your free prize now": "spam",
    "You won a free iPhone, click here to claim": "spam",
    "Your parcel is waiting for delivery. Please settle the £1.20 fee here: bit.ly/3xParcel": "spam",
    "I just won the office raffle lol, a free spa day!!": "ham",
    "Congratulations! You have won a $1000 Walmart gift card. Click here to claim your prize now!": "spam",
    "Receipt for your Spotify Premium Individual plan. Amount: £11.99, paid 14 May by card ending 4821. "
    "Next renewal 14 June.": "ham",
}


def test_the_messages_of_the_issues_are_held_out():
    """Today's spam that the first classifier called ham, everyday messages that use 'won' and 'free' innocently
    (issue 17), a gift-card prize and a subscription's receipt (issue 30): measured, never trained on."""
    heldout = {m.text: data.LABELS[m.label] for m in data.load_modern(data.MODERN_HELDOUT).messages}
    assert {text: heldout.get(text) for text in ISSUES} == ISSUES
    training = {m.text for m in data.load_modern(data.MODERN_TRAIN).messages}
    assert not training & set(ISSUES)


def test_no_html_entities_in_the_modern_messages():
    """Written as a phone shows them: `&lt;#&gt;` and the like are the SMS collection's, not these files'."""
    for path in (data.MODERN_TRAIN, data.MODERN_HELDOUT):
        assert [m.text for m in data.load_modern(path).messages if re.search(r"&#?\w+;", m.text)] == []


def test_the_shipped_spamassassin_copy():
    assert data.SPAMASSASSIN_COPY.stat().st_size <= 1.5e6
    corpus = data.load_spamassassin()
    counts = Counter(m.label for m in corpus.messages)
    assert (counts[0], counts[1]) == (4096, 1582)  # of 5,731 mails, 53 were identical to another once cut
    assert all(m.text.startswith("Subject: ") and len(m.text) <= builder.MAX_CHARS for m in corpus.messages)
    assert all(m.text.count("\n") <= 1 for m in corpus.messages)  # after the subject (one is longer than 600)
    assert len({m.text for m in corpus.messages}) == len(corpus.messages)


def test_compact_cuts_at_a_word_and_collapses_whitespace():
    assert builder.compact(" Hello\n there ", "a  b\n\n c\td") == "Subject: Hello there\na b c d"
    long = builder.compact("s", "word " * 200)
    assert len(long) <= 600 and long.endswith("word") and long.startswith("Subject: s\nword word")
    assert len(builder.compact("s", "x" * 1000)) == 600  # one unbreakable "word" is cut anyway


def test_the_builder_writes_the_same_bytes_from_the_same_input(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rows = ["ham\teasy-ham-1\tRe: lunch\tSee you at\\n\\n  noon \\\\o/",
            "spam\tspam-2\tWIN\tFree   money " + "click " * 200,
            "ham\teasy-ham-2\tRe: lunch\tSee you at noon \\\\o/",  # the same text once collapsed: dropped
            "spam\tspam-1\t\tCheap meds"]
    (src / "spamassassin.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    first, again = tmp_path / "a" / "sa.tsv.xz", tmp_path / "b" / "sa.tsv.xz"
    builder.main([str(src), "--out", str(first)])
    assert builder.build(src, again) == (4, 3)
    assert first.read_bytes() == again.read_bytes()
    assert lzma.decompress(first.read_bytes()).decode().splitlines()[0] == \
        "ham\teasy-ham-1\tSubject: Re: lunch\\nSee you at noon \\\\o/"
    corpus = data.load_spamassassin(first)
    assert [m.label for m in corpus.messages] == [0, 1, 1]
    assert corpus.messages[0].text == "Subject: Re: lunch\nSee you at noon \\o/"
    assert corpus.messages[2].text == "Subject: \nCheap meds"
    (src / "spamassassin.tsv").write_text("ham\tonly three\tcells\n")
    with pytest.raises(ValueError, match="line 1"):
        builder.build(src, tmp_path / "c.xz")
