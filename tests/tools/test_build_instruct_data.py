"""The offline instruction-data builder: its rules, its answers, and the shipped file it reproduces."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest

from gpt.instruct.data import SHIPPED_DATA, load_entries
from tools import build_instruct_data as builder

HAS_WORDNET = (builder.WORDNET_DIR / "data.noun").is_file()
needs_wordnet = pytest.mark.skipif(not HAS_WORDNET, reason="Debian wordnet-base not installed")


def test_inflection_rules():
    assert [builder.regular_plural(w) for w in ("box", "city", "day", "piano", "cat")] == \
        ["boxes", "cities", "days", None, "cats"]
    assert [builder.regular_past(w) for w in ("bake", "carry", "play", "stop", "walk")] == \
        ["baked", "carried", "played", None, "walked"]
    assert [builder.regular_ing(w) for w in ("bake", "die", "see", "walk")] == \
        ["baking", "dying", "seeing", "walking"]
    assert builder.format_number(Fraction(5, 2)) == "2.5"
    assert builder.format_number(Fraction(1, 3)) is None


def test_questions_about_the_shipped_corpora():
    cfg = builder.BuildConfig(bible=20, austen=10)
    bible = list(builder.bible_entries(cfg, random.Random(0)))
    assert len(bible) == 20 and {e["task"] for e in bible} == {"bible book", "bible quote"}
    assert all(e["output"] in builder.BIBLE_BOOKS.values() for e in bible if e["task"] == "bible book")
    austen = list(builder.austen_entries(cfg, random.Random(0)))
    assert len(austen) == 10 + len(builder.NOVELS)
    assert {"instruction": "Who wrote Emma?", "input": "", "output": "Jane Austen", "task": "austen novel"} in austen


@needs_wordnet
def test_builder_answers_are_right_and_unique():
    entries = builder.build_dataset(builder.PRESETS["tiny"])
    assert len(entries) > 200
    assert len({(e["instruction"].lower(), e["input"].lower()) for e in entries}) == len(entries)
    for e in entries:
        m = re.fullmatch(r"What is (\d+) (\+|-|times|divided by) (\d+)\?", e["instruction"])
        if m:
            a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
            assert int(e["output"]) == {"+": a + b, "-": a - b, "times": a * b, "divided by": a // b}[op]
            if op == "divided by":
                assert a % b == 0
        if e["task"] == "rewrite" and e["instruction"].startswith("Sort"):
            assert e["output"].split(", ") == sorted(e["input"].split(", "))
    tasks = {e["task"] for e in entries}
    assert {"definition", "synonym", "antonym", "arithmetic", "conversion", "bible book", "austen novel"} <= tasks
    assert {"instruction": 'What is the opposite of "good"?', "input": "", "output": "bad", "task": "antonym"} \
        in builder.build_dataset(builder.BuildConfig(n_common_words=100, antonyms=10_000))


def test_a_missing_wordnet_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        builder.build_dataset(builder.PRESETS["tiny"], wordnet=tmp_path)


@needs_wordnet
def test_the_command_rebuilds_the_shipped_file_byte_for_byte(tmp_path, capsys):
    builder.main(["--out", str(tmp_path / "data.json.gz")])
    assert (tmp_path / "data.json.gz").read_bytes() == SHIPPED_DATA.read_bytes()
    assert "7849 entries (6671 train / 784 test / 394 validation)" in capsys.readouterr().out
    builder.main(["--preset", "tiny", "--seed", "5", "--out", str(tmp_path / "tiny.json.gz")])
    tiny = load_entries(tmp_path / "tiny.json.gz")
    assert 200 < len(tiny) < 1000 and tiny != load_entries(SHIPPED_DATA)[: len(tiny)]
