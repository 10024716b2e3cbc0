"""The offline instruction-data builder: its rules, its answers, and the shipped file it reproduces."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from gpt.checkpoint import load_checkpoint_tokenizer
from gpt.data.corpus import is_held_out, modern_documents
from gpt.instruct.data import SHIPPED_DATA, earlier_turns, load_entries, split_entries
from gpt.instruct.prompt import chat_line
from tools import build_instruct_data as builder
from tools import instruct_conversations as conversations

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
    assert (tmp_path / builder.HELDOUT_PHRASINGS.name).read_bytes() == builder.HELDOUT_PHRASINGS.read_bytes()
    assert "54702 entries (46499 train / 5502 test / 2701 validation)" in capsys.readouterr().out
    builder.main(["--preset", "tiny", "--seed", "5", "--out", str(tmp_path / "tiny.json.gz")])
    tiny = load_entries(tmp_path / "tiny.json.gz")
    assert 200 < len(tiny) < 1000 and tiny != load_entries(SHIPPED_DATA)[: len(tiny)]


@needs_wordnet
def test_old_entries_keep_their_split_and_new_ones_ask_within_theirs():
    """The entries of the first shipped dataset (27,251, seeded split) are where the first chat model was
    measured: rebuilt with conversations, each keeps its split, and an entry's earlier turns come from its
    own split."""
    cfg = builder.PRESETS["tiny"]
    core = builder.build_dataset(builder.replace(cfg, new_refusals=0), conversations=False)
    split = split_entries(core, cfg.seed)
    tagged = builder.build_dataset(cfg)
    where = {(e["instruction"], e["input"]): e["split"] for e in tagged}
    for part in ("train", "val", "test"):
        assert all(where[(e["instruction"], e["input"])] == part for e in getattr(split, part))
    with_turns = [e for e in tagged if e["input"]]
    assert 3 <= max(map(earlier_turns, with_turns)) <= conversations.MAX_EARLIER_TURNS
    shipped_turns = Counter(earlier_turns(e) for e in load_entries(SHIPPED_DATA))
    assert set(shipped_turns) == set(range(conversations.MAX_EARLIER_TURNS + 1))
    assert {e["task"] for e in with_turns} >= TASKS - {"synonym", "definition", "fact"}


def test_casual_phrasings_keep_the_answer_and_the_word_asked():
    rng = random.Random(0)
    plural = builder.entry("plural", "What is the plural of 'mouse'?", "mice", "plural:mouse")
    product = builder.entry("multiplication", "What is 12 times 7?", "84", "mul:7x12")
    for _ in range(200):
        assert "mouse" in conversations.phrased(rng, plural).lower()
        text = conversations.phrased(rng, product)
        assert ("12" in text or "twelve" in text) and ("7" in text or "seven" in text)
    assert conversations.number_words(42) == "forty-two" and conversations.number_words(144) == \
        "one hundred and forty-four"
    assert conversations.typo(random.Random(1), "What is the plural of mouse?", {"mouse", "plural"}) != \
        "What is the plural of mouse?"


def test_earlier_turns_are_cut_to_the_chat_prompt_budget():
    tokenizer = load_checkpoint_tokenizer(builder.CHAT_TOKENIZER)
    question = builder.entry("plural", "Plural of cat?", "cats", "plural:cat")
    long_turns = [(f"Tell me about thing number {i} in a long sentence, please.", "A long answer " * 8)
                  for i in range(6)]
    made = conversations.with_turns(question, long_turns, tokenizer.encode)
    assert made is not None and conversations.fits(made, tokenizer.encode)
    assert 0 < earlier_turns(made) < 6 and made["input"].endswith(chat_line("assistant", long_turns[-1][1]))


def test_follow_ups_need_the_turn_before_them():
    rng = random.Random(0)
    singles = [builder.entry("plural", f"Plural of w{i}?", f"w{i}s", f"plural:w{i}") for i in range(6)]
    singles += [builder.entry("addition", f"What is {i} plus 2?", str(i + 2), f"add:2+{i}") for i in range(3, 9)]
    encode = load_checkpoint_tokenizer(builder.CHAT_TOKENIZER).encode
    made = list(conversations.follow_ups(rng, singles, 40, encode))
    assert len(made) > 20
    for e in made:
        last_user = [line for line in e["input"].splitlines() if line.startswith("User: ")][-1]
        if e["task"] == "follow-up" and e["fact"].startswith("plural:"):
            assert last_user.startswith("User: Plural of") and e["output"] == e["fact"].split(":")[1] + "s"
        if e["task"] == "follow-up" and e["fact"].startswith("add:"):
            assert "plus" in last_user and str(sum(map(int, re.findall(r"\d+", e["instruction"])))) == e["output"]


def test_held_out_phrasings_are_none_of_the_training_templates():
    training = {t for ts in [*builder.WORD_QUESTIONS.values(), *builder.ARITHMETIC_QUESTIONS.values()] for t in ts}
    held_out = {t for ts in [*conversations.HELDOUT_WORD_QUESTIONS.values(),
                             *conversations.HELDOUT_ARITHMETIC.values()] for t in ts}
    assert not {t.lower() for t in training} & {t.lower() for t in held_out}
    phrasings = load_entries(builder.HELDOUT_PHRASINGS)
    shipped = load_entries(SHIPPED_DATA)
    trained = {e["instruction"].lower() for e in shipped if e["split"] == "train"}
    test_facts = {e["fact"] for e in shipped if e["split"] == "test"}
    assert len(phrasings) >= 300 and all(e["split"] == "test" for e in phrasings)
    assert not {e["instruction"].lower() for e in phrasings} & trained
    asked = [e for e in phrasings if e["task"] not in ("small talk", "refusal")]
    assert all(e["fact"] in test_facts for e in asked)


def test_a_split_s_conversations_draw_their_earlier_turns_from_that_split_only():
    encode = load_checkpoint_tokenizer(builder.CHAT_TOKENIZER).encode
    test = [builder.entry("plural", f"Plural of w{i}?", f"w{i}s", f"plural:w{i}") for i in range(30)]
    made = conversations.conversation_entries(random.Random(0), "test", test, encode, [])
    answers = {e["output"] for e in test} | {"You are welcome!"}
    replies = [line.removeprefix("Assistant: ") for e in made for line in e["input"].splitlines()
               if line.startswith("Assistant: ")]
    assert replies and set(replies) <= answers and all(e["split"] == "test" for e in made)
