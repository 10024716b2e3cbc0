"""The offline instruction-data builder: its rules, its answers, and the shipped file it reproduces."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from gpt.data.corpus import is_held_out, modern_documents
from gpt.instruct.data import SHIPPED_DATA, load_entries
from gpt.instruct.prompt import chat_line
from tools import build_instruct_data as builder

HAS_WORDNET = (builder.WORDNET_DIR / "data.noun").is_file()
needs_wordnet = pytest.mark.skipif(not HAS_WORDNET, reason="Debian wordnet-base not installed")
ARITHMETIC = re.compile(r"\D*(\d+)\D+(\d+)\D*")
TASKS = {"plural", "singular", "past tense", "comparative", "superlative", "antonym", "synonym", "definition",
         "addition", "subtraction", "multiplication", "division", "fact", "small talk", "refusal", "follow-up"}


def counts(words: dict[str, int], after: dict[tuple[str, str], int] | None = None) -> builder.WordCounts:
    return builder.WordCounts(Counter(words), Counter(), Counter(after or {}))


def test_spelling_rules():
    assert [builder.regular_plurals(w) for w in ("box", "city", "day", "cat")] == \
        [{"boxes"}, {"cities"}, {"days"}, {"cats"}]
    assert builder.regular_plurals("woman") == {"womans", "women"}
    assert [builder.regular_pasts(w) for w in ("bake", "carry", "play", "walk")] == \
        [{"baked"}, {"carried"}, {"played"}, {"walked"}]
    assert builder.regular_pasts("stop") == {"stoped", "stopped"}  # the counts decide: stopped, but visited
    assert builder.regular_comparisons("happy", "est") == {"happiest"}
    assert builder.regular_comparisons("big", "er") == {"biger", "bigger"}


def test_forms_are_the_ones_the_corpora_use():
    assert builder.plural_of("woman", {}, counts({"women": 50, "womans": 0})) == "women"
    assert builder.plural_of("mouse", {"mouse": ["mice"]}, counts({"mice": 9, "mouses": 1})) == "mice"
    assert builder.plural_of("information", {}, counts({"informations": 1})) is None  # uncountable
    went = counts({"went": 90, "gone": 40, "goed": 0}, {("he", "went"): 20, ("he", "gone"): 1})
    assert builder.past_of("go", {"go": ["went", "gone", "going"]}, went) == "went"
    showed = counts({"shown": 80, "showed": 60}, {("she", "showed"): 9})
    assert builder.past_of("show", {"show": ["shown"]}, showed) == "showed"  # a listed participle is no past
    assert builder.past_of("put", {"put": ["putting"]}, counts({"put": 500}, {("he", "put"): 30})) == "put"
    assert builder.past_of("need", {}, counts({"need": 500}, {("they", "need"): 30})) is None  # a present
    fed = counts({"fed": 87, "feed": 236}, {("they", "feed"): 7, ("he", "fed"): 3})
    assert builder.past_of("feed", {"feed": ["fed", "feed"]}, fed) == "fed"  # verb.exc also lists "feed feed"
    assert builder.past_of("rewrite", {"rewrite": ["rewrote", "rewritten"]}, counts({"rewritten": 9})) is None
    assert builder.comparison_of("good", "er", {"good": ["better", "best"]}, counts({"better": 9, "best": 9})) == \
        "better"
    assert builder.comparison_of("own", "er", {}, counts({"owner": 90})) is None  # a noun: no "ownest"
    important = counts({}, {("more", "important"): 30, ("most", "important"): 20, ("most", "other"): 90})
    assert builder.comparison_of("important", "er", {}, important) == "more important"
    assert builder.comparison_of("important", "est", {}, important) == "most important"
    assert builder.comparison_of("other", "est", {}, important) is None  # "most other", never "more other"
    assert builder.past_of("beat", {"beat": ["beaten"]}, counts({"beaten": 50})) is None  # a participle only


def test_arithmetic_is_within_range_right_and_varied():
    sums = builder.arithmetic_facts("add")
    assert len(sums) == 100 * 100 and len({fact for _, _, fact in sums}) == 5050  # 5 + 7 and 7 + 5: one fact
    assert len(builder.arithmetic_facts("mul")) == 144 and len(builder.arithmetic_facts("div")) == 144
    cfg = builder.BuildConfig(add=300, sub=300, mul=300, div=100)
    entries = list(builder.arithmetic_entries(cfg, random.Random(0)))
    assert len(entries) == 1000
    ops = {"addition": int.__add__, "subtraction": int.__sub__, "multiplication": int.__mul__,
           "division": int.__floordiv__}
    for e in entries:
        a, b = map(int, ARITHMETIC.fullmatch(e["instruction"]).groups())
        if e["instruction"].startswith(("Subtract", "Take", "How many times")):
            a, b = b, a  # "Subtract 5 from 12", "How many times does 7 go into 84?"
        assert int(e["output"]) == ops[e["task"]](a, b) >= 0
        assert e["task"] != "division" or a % b == 0
    phrasings = Counter(re.sub(r"\d+", "N", e["instruction"]) for e in entries if e["task"] == "multiplication")
    assert len(phrasings) == len(builder.ARITHMETIC_QUESTIONS["mul"])
    # 300 questions on 144 products: every product once before any is asked again, then in another phrasing
    products = [e for e in entries if e["task"] == "multiplication"]
    asked = Counter(ARITHMETIC.fullmatch(e["instruction"]).groups() for e in products)
    assert set(asked.values()) == {2, 3} and len({e["instruction"] for e in products}) == 300


def test_a_fact_is_asked_with_the_subject_the_sentence_uses():
    person = builder.WordNet({("n", "1"): builder.Synset("n", builder.NOUN_PERSON, ("mathematician",), "", ())},
                             {("n", "mathematician"): ["1"]}, Counter())
    lower = counts({"censorship": 10})
    assert builder.first_sentence("Stefan Banach (1892) was a Polish mathematician who was great. He taught.") == \
        "Stefan Banach was a Polish mathematician who was great."
    assert builder.first_sentence("The U.S. Army is big. More.") == "The U.S. Army is big."
    assert builder.first_sentence("Too short.") is None
    assert builder.fact_question("Stefan Banach", "Stefan Banach was a Polish mathematician who lived.",
                                 lower, person) == ("Who was", "Stefan Banach")
    assert builder.fact_question("Censorship", "Censorship is the suppression of speech.", lower, person) == \
        ("What is", "censorship")
    assert builder.fact_question("Academy Awards", "The Academy Awards, known as the Oscars, are awards for film.",
                                 lower, person) == ("What are", "the Academy Awards")
    assert builder.fact_question("Silent Spring", "Silent Spring is a book by Rachel Carson.",
                                 counts({"silent": 10}), person) == ("What is", "Silent Spring")
    assert builder.fact_question("Rye", "Grain of the north is rye.", lower, person) is None  # no subject first


@needs_wordnet
def test_tiny_build_has_every_family_right_and_unique():
    entries = builder.build_dataset(builder.PRESETS["tiny"])
    assert {e["task"] for e in entries} == TASKS
    assert len({(e["instruction"].lower(), e["input"].lower()) for e in entries}) == len(entries)
    assert all(e["fact"] and e["output"] and e["fact"].split(":")[0] for e in entries)
    answers: dict[str, set[str]] = {}
    for e in entries:
        if e["task"] not in ("antonym", "synonym"):  # their facts name a pair, asked from either end
            answers.setdefault(e["fact"], set()).add(e["output"])
    assert all(len(a) == 1 for a in answers.values())  # a fact has one answer, however it is asked
    refusals = [e for e in entries if e["task"] == "refusal"]
    assert all(builder.SCOPE in e["output"] or builder.MATH_SCOPE in e["output"] for e in refusals)
    held_out_titles = {d.name.removeprefix("wiki-") for d in modern_documents("wiki") if is_held_out(d)}
    facts = [e for e in entries if e["task"] == "fact"]
    assert facts and not {e["fact"].removeprefix("fact:") for e in facts} & held_out_titles
    assert all(len(e["output"].split()) <= builder.MAX_FACT_WORDS for e in facts)
    turns = [e for e in entries if e["input"]]
    assert turns and all(re.fullmatch(r"(User: .+\nAssistant: .+\n?)+", e["input"]) for e in turns)
    assert {e["task"] for e in turns} > {"follow-up"}  # questions of every kind come after earlier turns too


@needs_wordnet
def test_word_facts_know_the_irregular_forms():
    facts = builder.word_facts(builder.PRESETS["shipped"], builder.read_wordnet(builder.WORDNET_DIR),
                               builder.WORDNET_DIR, builder.count_words())
    pairs = {relation: dict(p) for relation, p in facts.pairs.items()}
    assert {"mouse": "mice", "child": "children", "woman": "women", "box": "boxes"}.items() <= \
        pairs["plural"].items()
    assert {"go": "went", "write": "wrote", "stop": "stopped", "visit": "visited", "put": "put"}.items() <= \
        pairs["past"].items()
    assert pairs["comparative"]["good"] == "better" and pairs["superlative"]["big"] == "biggest"
    assert pairs["comparative"]["important"] == "more important"
    assert pairs["antonym"]["good"] == "bad" and pairs["singular"]["mice"] == "mouse"
    assert facts.fact_key("antonym", "good", "bad") == facts.fact_key("antonym", "bad", "good") == "antonym:bad|good"


def test_a_missing_wordnet_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        builder.build_dataset(builder.PRESETS["tiny"], wordnet_dir=tmp_path)


def test_chat_history_is_written_as_the_chat_tab_sends_it():
    entries = [builder.entry("plural", f"Plural of w{i}?", f"w{i}s", f"plural:w{i}") for i in range(5)]
    later = list(builder.with_history(builder.BuildConfig(with_history=3), random.Random(0), entries))
    assert len(later) == 3
    for e in later:
        first = e["input"].split("\n")[:2]
        asked = next(x for x in entries if x["instruction"] == first[0].removeprefix("User: "))
        assert first == [chat_line("user", asked["instruction"]), chat_line("assistant", asked["output"])]
        assert e["fact"] == f"plural:{e['instruction'][10:-1]}"  # the new question's fact, not the earlier one's


@needs_wordnet
def test_the_command_rebuilds_the_shipped_file_byte_for_byte(tmp_path, capsys):
    builder.main(["--out", str(tmp_path / "data.json.gz")])
    assert (tmp_path / "data.json.gz").read_bytes() == SHIPPED_DATA.read_bytes()
    assert "27251 entries (23163 train / 2725 test / 1363 validation)" in capsys.readouterr().out
    builder.main(["--preset", "tiny", "--seed", "5", "--out", str(tmp_path / "tiny.json.gz")])
    tiny = load_entries(tmp_path / "tiny.json.gz")
    assert 200 < len(tiny) < 1000 and tiny != load_entries(SHIPPED_DATA)[: len(tiny)]
