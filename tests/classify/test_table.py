"""A table of one's own: CSV/TSV parsing, every refusal with its message, and the stratified split."""

from __future__ import annotations

from collections import Counter

import pytest

from gpt.classify import data
from gpt.classify.data import Message

ROWS = [(f"message number {i}", ("ham", "spam", "eggs")[i % 3]) for i in range(60)]


def csv_bytes(rows=ROWS, header: str | None = "text,label", sep: str = ",") -> bytes:
    lines = ([header] if header else []) + [f"{text}{sep}{label}" for text, label in rows]
    return ("\n".join(lines) + "\n").encode()


def test_a_header_names_the_columns_and_the_sorted_labels_are_the_classes():
    corpus = data.parse_table(csv_bytes(), "mine.csv")
    assert corpus.labels == ("eggs", "ham", "spam") and corpus.kind == "file"
    assert corpus.messages[:3] == (Message("message number 0", 1), Message("message number 1", 2),
                                   Message("message number 2", 0))
    assert corpus.source.startswith("mine.csv (60 messages: 20 eggs, 20 ham, 20 spam; sha256 ")
    swapped = data.parse_table(b"label,text\n" + b"".join(f"{b},{a}\n".encode() for a, b in ROWS), "x.csv")
    assert swapped.messages == corpus.messages


def test_quotes_a_bom_blank_lines_and_surrounding_spaces():
    raw = '\ufefftext,label\n"Hello, world",ham\n\n  "Say ""hi""" , spam \n'.encode() + csv_bytes(header=None)
    corpus = data.parse_table(raw, "q.csv")
    assert corpus.messages[0] == Message("Hello, world", 1)
    assert corpus.messages[1].label == 2 and len(corpus.messages) == 62


def test_two_unnamed_columns_either_way_round_and_tsv_as_the_uci_file_writes_it():
    text_first = data.parse_table(csv_bytes(header=None), "plain.csv")
    assert text_first.labels == ("eggs", "ham", "spam") and text_first.messages[0].text == "message number 0"
    uci = csv_bytes([(label, f'"quoted" {text}') for text, label in ROWS], header=None, sep="\t")
    label_first = data.parse_table(uci, "SMSSpamCollection")  # a tab on the first line: tab-separated
    assert label_first.labels == text_first.labels
    assert label_first.messages[0] == Message('"quoted" message number 0', 1)  # no quoting in TSV
    assert data.parse_table(uci, "sms.tsv").messages == label_first.messages


UNFIT = [
    (b"text,label\n" + b"hello there,ham\n" * 40, "every message has the label 'ham'"),
    (csv_bytes() + b",ham\nsome text,\n   ,spam\n", r"3 row\(s\) have an empty text or label \(data row\(s\) 61, "
                                                  r"62, 63, after the header\)"),
    (csv_bytes([(t, str(i % 2)) for i, (t, _) in enumerate(ROWS)]), "the labels are numbers \\(0, 1\\)"),
    (csv_bytes([(t, "1.5" if i % 2 else "cat") for i, (t, _) in enumerate(ROWS)]), "the labels are numbers"),
    (csv_bytes(ROWS[:25]), "too few messages to split 70/10/20 within each class \\('eggs' has 8, 'ham' has 9"),
    (csv_bytes() + "café,ham\n".encode("latin-1"), f"is not UTF-8 text \\(byte {len(csv_bytes()) + 3:,} is not"),
    (b"", "is empty"),
    (b"a,b,c\n1,2,3\n", "expected two columns, a text and a label"),
    (b"text,label\nx,y\nx,y,z\n", "cannot read it as a CSV table"),
    (csv_bytes([(f"m {i}", f"class{i}") for i in range(60)]), "60 different labels, more than 50"),
]


@pytest.mark.parametrize("raw, message", UNFIT, ids=[m.split(" \\(")[0][:40] for _, m in UNFIT])
def test_unfit_tables_are_refused_whole_with_a_message(raw, message):
    with pytest.raises(ValueError, match=message):
        data.parse_table(raw, "bad.csv")


def test_size_and_row_limits(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_bytes(csv_bytes())
    with pytest.raises(ValueError, match="more than 59 rows"):
        data.load_table(path, max_rows=59)
    assert len(data.load_table(path, max_rows=60).messages) == 60
    with pytest.raises(ValueError, match="the limit is 0 MB"):
        data.load_table(path, max_bytes=100)
    with pytest.raises(FileNotFoundError, match="data file missing"):
        data.load_table(tmp_path / "nowhere.csv")


def test_the_split_is_70_10_20_within_each_class_and_seeded(tmp_path):
    rows = [(f"m {i}", "big") for i in range(100)] + [(f"n {i}", "small") for i in range(10)]
    path = tmp_path / "uneven.csv"
    path.write_bytes(csv_bytes(rows))
    mix = data.file_mix(path)
    counts = {part: Counter(m.label for m in getattr(mix, part)) for part in ("train", "val")}
    assert counts == {"train": {0: 70, 1: 7}, "val": {0: 10, 1: 1}}
    (test,) = mix.tests
    assert test.name == data.FILE_TEST and Counter(m.label for m in test.messages) == {0: 20, 1: 2}
    assert Counter(mix.train + mix.val + test.messages) == Counter(data.load_table(path).messages)
    assert mix.labels == ("big", "small") and mix.sizes() == {"train": 77, "val": 11, "test": 22}
    assert data.file_mix(path) == mix and data.file_mix(path, seed=5).train != mix.train
