"""Build the project's offline instruction dataset, `assets/instruct/instruction-data.json.gz`.

`python -m tools.build_instruct_data` writes it from sources this machine has; the same seed and
sources give the same bytes. Every entry is the book's shape, `{"instruction", "input", "output"}`,
plus a `task` (the family the evaluation reports scores for) and a `fact` (what the answer states,
e.g. "plural:mouse", "mul:7x12"), so that a held-out question whose fact training asked in other
words can be told from one the model never saw answered.

The families are ones a 5M-parameter model can learn: word forms (plural, singular, past tense,
comparative, superlative), antonyms, synonyms and definitions of common words (WordNet 3.0), sums,
differences and times tables (computed), one-sentence facts from the Wikipedia leads the base model
was pretrained on, greetings and small talk, and honest refusals of what it cannot answer. Each
question comes in many phrasings; answers are short, because the model reads 256 tokens at most.
"""

from __future__ import annotations

import argparse
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from gpt.checkpoint import load_checkpoint_tokenizer
from gpt.data.corpus import CORPORA, MODERN_SOURCES, is_held_out, modern_documents
from gpt.data.splits import PARTS
from gpt.files import ASSETS
from gpt.instruct.data import (
    SHIPPED_DATA,
    SPLIT_FRACTIONS,
    SPLIT_SEED,
    Entry,
    deduplicate,
    save_entries,
    split_entries,
)
from gpt.instruct.prompt import chat_line
from gpt.reasoning.problems import ADD_SUB_MAX, ARITHMETIC_QUESTIONS, TABLES_MAX
from tools.instruct_conversations import conversation_entries, heldout_phrasings, new_refusals

CHAT_TOKENIZER = ASSETS / "models" / "instruct"  # the chat models' tokenizer: earlier turns are cut to its tokens
HELDOUT_PHRASINGS = SHIPPED_DATA.with_name("heldout-phrasings.json.gz")

WORDNET_DIR = Path("/usr/share/wordnet")


# -- WordNet -------------------------------------------------------------------------------------

POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
SENSE_KEY_POS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}
NOUN_PERSON = 18  # WordNet's lexicographer file noun.person
WORD = re.compile(r"(?=.*[aeiouy])[a-z]{2,}")  # lowercase, with a vowel: "go", not "cm"


@dataclass(frozen=True)
class Synset:
    pos: str
    lexfile: int  # WordNet's lexicographer file (noun.person, noun.food ...)
    words: tuple[str, ...]
    definition: str
    antonyms: tuple[tuple[str, str], ...]  # (word here, its antonym): lexical "!" pointers


@dataclass(frozen=True)
class WordNet:
    synsets: dict[tuple[str, str], Synset]  # by (pos, offset)
    senses: dict[tuple[str, str], list[str]]  # (pos, lemma) -> synset offsets, most frequent sense first
    tag_counts: Counter  # (pos, lemma) -> how often its senses were tagged in WordNet's corpus

    def first_sense(self, pos: str, lemma: str) -> Synset:
        return self.synsets[(pos, self.senses[(pos, lemma)][0])]

    def common(self, pos: str, n: int) -> list[str]:
        """The `n` most often tagged single lowercase words of a part of speech, most frequent first."""
        lemmas = [lemma for (p, lemma), _ in self.tag_counts.most_common()
                  if p == pos and WORD.fullmatch(lemma) and (pos, lemma) in self.senses]
        return lemmas[:n]

    def is_person(self, noun: str) -> bool:
        return ("n", noun) in self.senses and self.first_sense("n", noun).lexfile == NOUN_PERSON


def _clean_word(raw: str) -> str:
    return re.sub(r"\(.*\)$", "", raw).replace("_", " ")  # adjectives carry markers like "(a)"


@lru_cache(maxsize=2)  # parsing is slow, and the result is only read
def read_wordnet(directory: Path) -> WordNet:
    raw: dict[tuple[str, str], tuple[int, list[str], str, list[tuple[str, str, str]]]] = {}
    for pos, name in POS_FILES.items():
        for line in (directory / f"data.{name}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue  # the license header
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            offset, lexfile, n_words = fields[0], int(fields[1]), int(fields[3], 16)
            words = [_clean_word(fields[4 + 2 * i]) for i in range(n_words)]
            at = 4 + 2 * n_words
            antonym_ptrs = []
            for i in range(int(fields[at])):
                symbol, target_offset, target_pos, source_target = fields[at + 1 + 4 * i: at + 5 + 4 * i]
                if symbol == "!":
                    antonym_ptrs.append((target_offset, "a" if target_pos == "s" else target_pos, source_target))
            raw[(pos, offset)] = (lexfile, words, gloss.strip(), antonym_ptrs)
    synsets = {}
    for key, (lexfile, words, gloss, antonym_ptrs) in raw.items():
        antonyms = []
        for offset, pos, source_target in antonym_ptrs:
            source, target = int(source_target[:2], 16), int(source_target[2:], 16)
            other = raw.get((pos, offset))
            if other and 0 < source <= len(words) and 0 < target <= len(other[1]):
                antonyms.append((words[source - 1], other[1][target - 1]))
        definition = gloss.split(";")[0].strip()  # the rest are example sentences
        synsets[key] = Synset(key[0], lexfile, tuple(words), definition, tuple(antonyms))
    senses: dict[tuple[str, str], list[str]] = {}
    for pos, name in POS_FILES.items():
        for line in (directory / f"index.{name}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue
            fields = line.split()
            senses[(pos, fields[0].replace("_", " "))] = fields[-int(fields[2]):]
    counts: Counter = Counter()
    for line in (directory / "cntlist.rev").read_text(encoding="latin-1").splitlines():
        key, _, count = line.split()
        lemma, _, rest = key.partition("%")
        counts[(SENSE_KEY_POS[rest[0]], lemma.replace("_", " "))] += int(count)
    return WordNet(synsets, senses, counts)


def read_exceptions(directory: Path, name: str) -> dict[str, list[str]]:
    """WordNet's irregular forms: base word -> inflected forms (e.g. verb.exc: go -> went, gone)."""
    forms: dict[str, list[str]] = defaultdict(list)
    for line in (directory / f"{name}.exc").read_text(encoding="latin-1").splitlines():
        inflected, *bases = line.split()
        for base in bases:
            forms[base].append(inflected)
    return forms


# -- which forms English uses: counted in the modern corpora the base model was trained on ----------

SUBJECTS = ("i", "you", "he", "she", "it", "we", "they")
THIRD_PERSON = ("he", "she", "it")
CONTEXT_WORDS = frozenset({*SUBJECTS, "more", "most"})
ATTESTED = 3  # a form seen this often in the corpora is taken to be English


@dataclass(frozen=True)
class WordCounts:
    """Word counts of the modern pretraining documents (held-out ones excluded), lowercased."""

    words: Counter
    capitalized: Counter  # how often each (lowercased) word was written with a capital
    after: Counter  # (previous word, word) for a previous word in CONTEXT_WORDS: "he went", "more useful"

    def past_uses(self, form: str, subjects: Sequence[str] = SUBJECTS) -> int:
        """How often a verb form follows a subject pronoun ("he went"): the past tense does, a participle not."""
        return sum(self.after[(s, form)] for s in subjects)

    def mostly_lowercase(self, word: str) -> bool:
        return self.capitalized[word] * 2 < self.words[word]


@lru_cache(maxsize=2)
def count_words(corpora: Path = CORPORA) -> WordCounts:
    words: Counter = Counter()
    capitalized: Counter = Counter()
    after: Counter = Counter()
    for source in MODERN_SOURCES:
        for doc in modern_documents(source, corpora):
            if is_held_out(doc):
                continue
            tokens = re.findall(r"[A-Za-z]+", doc.text)
            lower = [t.lower() for t in tokens]
            words.update(lower)
            capitalized.update(w for w, t in zip(lower, tokens, strict=True) if t[0].isupper())
            after.update(pair for pair in pairwise(lower) if pair[0] in CONTEXT_WORDS)
    return WordCounts(words, capitalized, after)


# -- word forms: WordNet's exceptions and the spelling rules, kept where the corpora attest them ------

VOWELS = frozenset("aeiou")


def _doubles(word: str) -> bool:
    """Ends consonant-vowel-consonant, where a suffix may double the last letter (stop -> stopped)."""
    return (len(word) >= 3 and word[-1] not in VOWELS and word[-1] not in "wxy" and word[-2] in VOWELS
            and word[-3] not in VOWELS)


def regular_plurals(noun: str) -> set[str]:
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return {noun + "es"}
    if noun.endswith("y") and noun[-2] not in VOWELS:
        return {noun[:-1] + "ies"}
    return {noun + "s", noun[:-3] + "men"} if noun.endswith("man") else {noun + "s"}  # woman -> women


def regular_pasts(verb: str) -> set[str]:
    if verb.endswith("e"):
        return {verb + "d"}
    if verb.endswith("y") and verb[-2] not in VOWELS:
        return {verb[:-1] + "ied"}
    return {verb + "ed", verb + verb[-1] + "ed"} if _doubles(verb) else {verb + "ed"}  # visited, stopped


def regular_comparisons(adjective: str, suffix: str) -> set[str]:
    """-er or -est forms by spelling: nicer, happier, bigger (and commoner, which the counts then reject)."""
    if adjective.endswith("e"):
        return {adjective + suffix[1:]}
    if adjective.endswith("y") and adjective[-2] not in VOWELS:
        return {adjective[:-1] + "i" + suffix}
    if _doubles(adjective):
        return {adjective + suffix, adjective + adjective[-1] + suffix}
    return {adjective + suffix}


def _most_used(forms: set[str], counts: WordCounts) -> str | None:
    attested = [f for f in forms if counts.words[f] >= ATTESTED]
    return max(attested, key=lambda f: (counts.words[f], f)) if attested else None


def plural_of(noun: str, exceptions: dict[str, list[str]], counts: WordCounts) -> str | None:
    """The most used of WordNet's irregular plurals and the regular one; None for uncountable nouns."""
    irregular = {f for f in exceptions.get(noun, []) if WORD.fullmatch(f) and f != noun}
    return _most_used(irregular | regular_plurals(noun), counts)


def past_of(verb: str, exceptions: dict[str, list[str]], counts: WordCounts, verbs: Set[str] = frozenset()
            ) -> str | None:
    """The past tense: of the attested candidates, the one most often after a subject ("he went", not
    "he gone": verb.exc lists past and participle without saying which is which). A verb with no
    attested -ed form and no listed one (put, cut, read) has its base form as the past, if "he put" is used.
    `verbs` are all the verbs: "hoped" is the past of "hope", so not a candidate for "hop"."""
    irregular = {f for f in exceptions.get(verb, []) if WORD.fullmatch(f) and not f.endswith("ing") and f != verb}
    regular = regular_pasts(verb) - ({verb + "ed"} if verb + "e" in verbs else set())
    candidates = {f for f in irregular | regular if counts.words[f] >= ATTESTED}
    if not candidates:  # "he put" is a past, "they put" may not be
        return verb if counts.past_uses(verb, THIRD_PERSON) >= ATTESTED else None
    best = max(candidates, key=lambda f: (counts.past_uses(f), counts.words[f], f))
    if (len(candidates) > 1 or best in irregular) and counts.past_uses(best) == 0:
        return None  # a listed form may be the participle only ("beaten"): it needs a sign that it is a past
    return best


def comparison_of(adjective: str, suffix: str, exceptions: dict[str, list[str]], counts: WordCounts) -> str | None:
    """The comparative (suffix "er") or superlative ("est"): the inflected form or "more"/"most" + the
    adjective, whichever the corpora use more. An inflected form counts only if its partner is attested
    too, which keeps out nouns such as "owner" or "foreigner"."""
    other, adverb, partner_adverb = ("est", "more", "most") if suffix == "er" else ("er", "most", "more")
    listed = {f for f in exceptions.get(adjective, []) if WORD.fullmatch(f)}
    form = _most_used({f for f in listed if f.endswith(suffix)} | regular_comparisons(adjective, suffix), counts)
    partner = _most_used({f for f in listed if f.endswith(other)} | regular_comparisons(adjective, other), counts)
    periphrastic = counts.after[(adverb, adjective)]
    if form and (partner or listed) and counts.words[form] >= periphrastic:
        return form
    if min(periphrastic, counts.after[(partner_adverb, adjective)]) >= ATTESTED and len(adjective) >= 5:
        return f"{adverb} {adjective}"  # "more useful" and "most useful": gradable, unlike "most other"
    return None


# -- phrasings -------------------------------------------------------------------------------------

# A question about a word, `{w}` standing for the word (quoted or not, chosen per entry).
WORD_QUESTIONS = {
    "plural": ["What is the plural of {w}?", "Plural of {w}?", "{w} -> plural", "What's the plural of {w}?",
               "What is more than one {w} called?", "Give the plural form of {w}.", "What is the plural form of {w}?",
               "What do you call more than one {w}?", "One {w}, two ...?", "plural: {w}", "Make {w} plural.",
               "What is the plural of the word {w}?"],
    "singular": ["What is the singular of {w}?", "Singular of {w}?", "{w} -> singular", "What's the singular of {w}?",
                 "Give the singular form of {w}.", "What is the singular form of {w}?", "singular: {w}",
                 "Make {w} singular.", "What is one of the {w} called?", "What is the singular of the word {w}?"],
    "past": ["What is the past tense of {w}?", "Past tense of {w}?", "{w} -> past tense",
             "What's the past tense of {w}?", "Give the past tense of {w}.", "What is the simple past of {w}?",
             "past tense: {w}",
             "Put {w} in the past tense.", "What is the past form of the verb {w}?", "What is {w} in the past tense?"],
    "comparative": ["What is the comparative of {w}?", "Comparative of {w}?", "{w} -> comparative",
                    "What's the comparative form of {w}?", "Give the comparative of {w}.", "comparative: {w}",
                    "What is the comparative form of the word {w}?", "What is the comparative of the adjective {w}?"],
    "superlative": ["What is the superlative of {w}?", "Superlative of {w}?", "{w} -> superlative",
                    "What's the superlative form of {w}?", "Give the superlative of {w}.", "superlative: {w}",
                    "What is the superlative of the adjective {w}?", "What is the superlative form of the word {w}?"],
    "antonym": ["What is the opposite of {w}?", "Opposite of {w}?", "{w} -> opposite", "What's the antonym of {w}?",
                "Give an antonym for {w}.", "What word means the opposite of {w}?", "antonym: {w}",
                "What is the antonym of {w}?", "Give me the opposite of {w}.", "What's the opposite of {w}?"],
    "synonym": ["Give a synonym for {w}.", "What is another word for {w}?", "Synonym of {w}?", "{w} -> synonym",
                "What's a synonym of {w}?", "What word means the same as {w}?", "synonym: {w}"],
    "define": ["Define {w}.", "What does {w} mean?", "What is the meaning of {w}?", "Meaning of {w}?",
               "Define the word {w}.", "What's the meaning of the word {w}?", "{w} -> definition"],
}
FOLLOW_UPS = ["And {w}?", "And of {w}?", "What about {w}?", "How about {w}?", "And for {w}?", "Now {w}."]
ARITHMETIC_TASKS = {"add": "addition", "sub": "subtraction", "mul": "multiplication", "div": "division"}
WORD_TASKS = {"plural": "plural", "singular": "singular", "past": "past tense", "comparative": "comparative",
              "superlative": "superlative", "antonym": "antonym", "synonym": "synonym", "define": "definition"}
FACT_QUESTIONS = ["{what} {subject}?", "Tell me about {subject}.", "What do you know about {subject}?",
                  "Describe {subject} in one sentence.", "{what} {subject}? Answer in one sentence."]

SCOPE = "I can answer questions about words, numbers and simple facts."
MATH_SCOPE = "I can add and subtract numbers up to 100, and multiply and divide up to 12 times 12."
ME = "I am a small language model, trained from scratch in this playground."
SMALL_TALK = {  # intent: (ways to say it, the answer)
    "hello": (["Hello", "Hi", "Hey", "Hello there", "Hi there", "Hey there", "Greetings", "Howdy", "Hiya",
               "Hello bot", "Hi friend"], "Hello! How can I help you?"),
    "good morning": (["Good morning", "Morning"], "Good morning! How can I help you?"),
    "good afternoon": (["Good afternoon"], "Good afternoon! How can I help you?"),
    "good evening": (["Good evening", "Evening"], "Good evening! How can I help you?"),
    "how are you": (["How are you", "How are you doing", "How's it going", "How are you today", "How do you do",
                     "Are you well", "How have you been", "Hi, how are you", "Hello, how are you doing",
                     "How is your day"], "I am well, thank you! How can I help you?"),
    "thanks": (["Thanks", "Thank you", "Thanks a lot", "Thank you very much", "Many thanks", "Thanks for your help",
                "Thank you so much", "That helps, thanks", "Great, thank you"], "You are welcome!"),
    "bye": (["Bye", "Goodbye", "See you", "See you later", "Bye bye", "Good night", "Farewell", "Talk to you later",
             "I have to go now", "That is all, bye"], "Goodbye! Have a nice day."),
    "who are you": (["Who are you", "What are you", "What is your name", "Are you a robot", "Are you human",
                     "Tell me about yourself", "Introduce yourself", "Are you a person", "Who made you",
                     "What kind of program are you"], f"{ME} {SCOPE}"),
    "what can you do": (["What can you do", "How can you help me", "What do you know", "What can I ask you", "Help",
                         "What are you good at", "Can you help me", "What questions can you answer",
                         "What should I ask you"], "I can give plurals, past tenses, opposites and meanings of "
                                                   "words, do small sums and times tables, and answer short "
                                                   "questions such as \"What is a violin?\""),
}
QUESTIONS = frozenset({"how are you", "who are you", "what can you do"})  # said with a "?"
CITIES = ["Paris", "London", "Tokyo", "New York", "Berlin", "Cairo", "Sydney", "Moscow", "Rome", "Madrid", "Lagos",
          "Chicago", "Mumbai", "Beijing", "Toronto", "Lima", "Oslo", "Dublin", "Seoul", "Nairobi"]
COUNTRIES = ["France", "Germany", "the United States", "Japan", "Brazil", "India", "Canada", "Italy", "Kenya",
             "Mexico", "Spain", "China", "Egypt", "Australia", "Russia", "Nigeria", "Sweden", "Peru"]
LANGUAGES = ["French", "German", "Spanish", "Italian", "Chinese", "Japanese", "Russian", "Arabic", "Dutch", "Hindi"]
FOREIGN = ["Bonjour, comment ça va ?", "¿Cómo estás?", "Wie geht es dir?", "Ciao, come stai?", "Hola, ¿qué tal?",
           "Parlez-vous français ?", "Wie spät ist es?", "Dov'è la stazione?", "Ты говоришь по-русски?", "你好吗？",
           "こんにちは、元気ですか？", "Hoe gaat het met je?", "Qual é o seu nome?", "Où est la bibliothèque ?",
           "¿Qué hora es?", "Ich habe eine Frage.", "Je voudrais un café, s'il vous plaît.", "Jak się masz?",
           "Merhaba, nasılsın?", "Hvordan har du det?", "Mikä sinun nimesi on?", "Kako si?"]
CODE_LANGUAGES = ["Python", "JavaScript", "Java", "C++", "Rust", "Go", "SQL", "Bash", "C#", "PHP"]
CODE_TASKS = ["sorts a list", "reverses a string", "reads a file", "checks if a number is prime", "adds two numbers",
              "finds the largest number in a list", "counts the words in a text", "prints the Fibonacci numbers",
              "connects to a database", "parses JSON", "makes a web page", "downloads a file"]
REFUSALS = {  # kind: (question templates, the answer), filled in by refusal_entries
    "now": ([
        "What is the weather like in {city} today?", "Will it rain tomorrow in {city}?", "What's the weather?",
        "Is it cold in {city} right now?", "What is the latest news?", "What happened in the news today?",
        "What are today's headlines about {nouns}?", "Who won the game last night?", "What is today's date?",
        "What day is it today?", "What time is it?", "What year is it now?", "Who is the president of {country} now?",
        "What is the price of {a_noun} today?", "What is the stock price of Apple today?",
        "Who won the election in {country} this year?", "What is the temperature outside?",
        "What is happening in {city} right now?", "Any news about {nouns} this week?", "What is the date tomorrow?",
    ], "I cannot know that: I have no news, clock or internet. " + SCOPE),
    "opinion": ([
        "What do you think about {nouns}?", "Do you like {nouns}?", "What is your favorite {noun}?",
        "Is {a_noun} better than {a_noun2}?", "Which is better, {nouns} or {nouns2}?", "What is the meaning of life?",
        "Do you believe in God?", "Should I buy {a_noun}?", "Who is the best singer in the world?",
        "What is your opinion of {nouns}?", "Are {nouns} good or bad?", "Which political party should I vote for?",
        "Do you love me?", "What do you feel about {nouns}?", "Should I quit my job?", "Is it wrong to eat {nouns}?",
    ], "I have no opinions of my own. " + SCOPE),
    "code": ([
        "Write a {lang} function that {task}.", "How do I write a program in {lang} that {task}?",
        "Write {lang} code that {task}.", "Fix my {lang} code.", "What is wrong with this code: print(x",
        "Can you write a script that {task}?", "Write a program that {task}.", "Explain this {lang} error.",
        "How do I install {lang}?", "Write a SQL query that finds every customer.", "Debug my {lang} program.",
    ], "I cannot write or read code. " + SCOPE),
    "long": ([
        "Write an essay about {nouns}.", "Write a story about {a_noun}.", "Write a poem about {nouns}.",
        "Write a letter to my teacher.", "Explain the history of {nouns} in detail.", "Write 500 words on {nouns}.",
        "Summarize the history of {country}.", "Tell me a long story.", "Write a report about {nouns}.",
        "Write a song about {a_noun}.", "Describe {country} in three paragraphs.", "Write a speech about {nouns}.",
    ], "I can only give short answers. " + SCOPE),
    "language": ([
        "{foreign}", "Translate {word} into {language}.", "How do you say {word} in {language}?",
        "What is {word} in {language}?", "Can you speak {language}?", "Answer me in {language}.",
        "Translate this sentence into {language}: I like {nouns}.",
    ], "I only understand simple English. " + SCOPE),
    "math": ([], "That is beyond what I can compute. " + MATH_SCOPE),  # asked by out_of_range_question
}


def quoted(rng: random.Random, word: str) -> str:
    """The word as people type it: bare, in double quotes or in single quotes."""
    return rng.choice([word, f'"{word}"', f"'{word}'"])


def casual(rng: random.Random, text: str) -> str:
    """Now and then the way people type in a hurry: no capital letter."""
    return text[0].lower() + text[1:] if rng.random() < 0.15 else text


def entry(task: str, instruction: str, output: str, fact: str, input_text: str = "") -> Entry:
    return {"instruction": instruction, "input": input_text, "output": output, "task": task, "fact": fact}


def asked(rng: random.Random, items: Sequence[tuple[Any, str, str]], templates: Sequence[str], n: int
          ) -> Iterator[tuple[str, Any, str, str]]:
    """`n` (template, subject, answer, fact) for items (subject, answer, fact): every item once in a
    random phrasing before any item is asked again, and then in another phrasing."""
    order = rng.sample(list(items), len(items))
    phrasings: dict[int, list[str]] = {}
    for i in range(min(n, len(order) * len(templates))):
        subject, answer, fact = order[i % len(order)]
        own = phrasings.setdefault(i % len(order), rng.sample(list(templates), len(templates)))
        yield own[i // len(order)], subject, answer, fact


# -- the builder ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildConfig:
    """How many entries of each family the builder draws (before deduplication), and its seed."""

    seed: int = 123
    n_common_words: int = 6000  # most often tagged lemmas per part of speech (WordNet's sense-tag counts)
    min_count: int = 20  # a word (and its answer) must be this frequent in the corpora to be asked about
    plural: int = 3000
    singular: int = 2000
    past: int = 2200
    comparative: int = 700
    superlative: int = 600
    antonym: int = 2400
    synonym: int = 400
    define: int = 600
    add: int = 6000
    sub: int = 4500
    mul: int = 1500
    div: int = 500
    facts: int = 800
    small_talk: int = 700
    refusals: int = 1500
    follow_ups: int = 300
    with_history: int = 600  # questions asked after one or two earlier turns, as the Chat tab sends them
    new_refusals: int = 700  # jokes and harmful requests (tools.instruct_conversations)


PRESETS = {
    "shipped": BuildConfig(),
    "tiny": BuildConfig(n_common_words=400, plural=40, singular=20, past=30, comparative=15, superlative=15,
                        antonym=30, synonym=10, define=20, add=40, sub=30, mul=30, div=10, facts=20, small_talk=30,
                        refusals=40, follow_ups=10, with_history=20, new_refusals=20),
}


@dataclass(frozen=True)
class WordFacts:
    """Each relation's (word, answer) pairs, from WordNet and the corpus counts."""

    pairs: dict[str, list[tuple[str, str]]]

    def fact_key(self, relation: str, word: str, answer: str) -> str:
        """Symmetric relations name the pair, so "opposite of bad" and "opposite of good" are one fact."""
        if relation in ("antonym", "synonym"):
            return f"{relation}:{'|'.join(sorted((word, answer)))}"
        return f"{relation}:{word}"


def word_facts(cfg: BuildConfig, wordnet: WordNet, directory: Path, counts: WordCounts) -> WordFacts:
    """Common words (often tagged in WordNet, used in the corpora, mostly written in lowercase) and their
    forms. A word listed under several parts of speech is asked about under its most often tagged one,
    so that "light" has one opposite and one definition."""
    main_pos: dict[str, str] = {}
    for pos in POS_FILES:
        for lemma in wordnet.common(pos, cfg.n_common_words):
            if counts.words[lemma] >= cfg.min_count and counts.mostly_lowercase(lemma) and (
                    lemma not in main_pos or wordnet.tag_counts[(pos, lemma)] > wordnet.tag_counts[(main_pos[lemma],
                                                                                                  lemma)]):
                main_pos[lemma] = pos
    noun_exc, verb_exc, adj_exc = (read_exceptions(directory, name) for name in ("noun", "verb", "adj"))
    inflected = {f for forms in noun_exc.values() for f in forms}

    def is_plural(noun: str) -> bool:  # "words", "means": WordNet lemmas that are plurals themselves
        return noun in inflected or any(noun.endswith(s) and ("n", noun[: -len(s)]) in wordnet.senses
                                        for s in ("s", "es"))

    def of(pos: str) -> list[str]:
        return [lemma for lemma, p in main_pos.items() if p == pos]

    plurals = [(n, p) for n in of("n") if not is_plural(n) and (p := plural_of(n, noun_exc, counts))]
    verbs = {lemma for pos, lemma in wordnet.senses if pos == "v"}
    owners = Counter(p for _, p in plurals)
    antonyms, synonyms = [], []
    for lemma, pos in main_pos.items():
        sense = wordnet.first_sense(pos, lemma)
        opposite = [a for w, a in sense.antonyms
                    if w == lemma and WORD.fullmatch(a) and counts.words[a] >= cfg.min_count]
        if opposite:
            antonyms.append((lemma, opposite[0]))
        others = [w for w in sense.words if w != lemma and WORD.fullmatch(w) and counts.words[w] >= cfg.min_count]
        if others:
            synonyms.append((lemma, max(others, key=lambda w: (counts.words[w], w))))
    return WordFacts({
        "plural": plurals,
        "singular": [(p, n) for n, p in plurals if owners[p] == 1],  # "axes" could be axe or axis
        "past": [(v, p) for v in of("v") if v != "be" and (p := past_of(v, verb_exc, counts, verbs))],
        "comparative": [(a, f) for a in of("a") if (f := comparison_of(a, "er", adj_exc, counts))],
        "superlative": [(a, f) for a in of("a") if (f := comparison_of(a, "est", adj_exc, counts))],
        "antonym": antonyms,
        "synonym": synonyms,
        "define": [(lemma, sentence(wordnet.first_sense(pos, lemma).definition)) for lemma, pos in main_pos.items()],
    })


def sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def word_entries(cfg: BuildConfig, rng: random.Random, facts: WordFacts) -> Iterator[Entry]:
    for relation, task in WORD_TASKS.items():
        items = [(w, a, facts.fact_key(relation, w, a)) for w, a in facts.pairs[relation]]
        for template, word, answer, fact in asked(rng, items, WORD_QUESTIONS[relation], getattr(cfg, relation)):
            yield entry(task, casual(rng, template.format(w=quoted(rng, word))), answer, fact)


def follow_up_entries(cfg: BuildConfig, rng: random.Random, facts: WordFacts) -> Iterator[Entry]:
    """A word question answered, then "And of goose?": only the earlier turn says what is asked."""
    relations = ["plural", "singular", "past", "comparative", "superlative", "antonym"]
    for _ in range(cfg.follow_ups):
        relation = rng.choice(relations)
        (first, first_answer), (word, answer) = rng.sample(facts.pairs[relation], 2)
        question = rng.choice(WORD_QUESTIONS[relation]).format(w=quoted(rng, first))
        history = "\n".join([chat_line("user", question), chat_line("assistant", first_answer)])
        yield entry("follow-up", rng.choice(FOLLOW_UPS).format(w=quoted(rng, word)), answer,
                    facts.fact_key(relation, word, answer), history)


# -- arithmetic, computed ----------------------------------------------------------------------------

def arithmetic_facts(op: str) -> list[tuple[tuple[int, int], str, str]]:
    """Every (operands, answer, fact) of an operation within the model's range. A sum or product names
    its operands in order, so 5 + 7 and 7 + 5 are one fact."""
    numbers, table = range(1, ADD_SUB_MAX + 1), range(1, TABLES_MAX + 1)
    if op == "add":
        return [((a, b), str(a + b), f"add:{min(a, b)}+{max(a, b)}") for a in numbers for b in numbers]
    if op == "sub":
        return [((a, b), str(a - b), f"sub:{a}-{b}") for a in numbers for b in numbers if b <= a]
    if op == "mul":
        return [((a, b), str(a * b), f"mul:{min(a, b)}x{max(a, b)}") for a in table for b in table]
    return [((a * b, b), str(a), f"div:{a * b}/{b}") for a in table for b in table]


def arithmetic_entries(cfg: BuildConfig, rng: random.Random) -> Iterator[Entry]:
    for op, task in ARITHMETIC_TASKS.items():
        for template, (a, b), answer, fact in asked(rng, arithmetic_facts(op), ARITHMETIC_QUESTIONS[op],
                                                    getattr(cfg, op)):
            yield entry(task, template.format(a=a, b=b), answer, fact)


def out_of_range_question(rng: random.Random) -> str:
    """Arithmetic the model cannot do, mostly in the phrasings of the arithmetic it can."""
    kind = rng.randrange(6)
    big = rng.choice([rng.randint(101, 999), rng.randint(1000, 9999)])
    if kind == 0:
        return rng.choice(ARITHMETIC_QUESTIONS["add"]).format(a=big, b=rng.randint(1, 9999))
    if kind == 1:
        return rng.choice(ARITHMETIC_QUESTIONS["sub"]).format(a=big, b=rng.randint(1, big))
    if kind == 2:
        a, b = rng.sample([rng.randint(13, 999), rng.randint(2, 999)], 2)
        return rng.choice(ARITHMETIC_QUESTIONS["mul"]).format(a=a, b=b)
    if kind == 3:
        return rng.choice(ARITHMETIC_QUESTIONS["div"]).format(a=big, b=rng.randint(13, 97))
    if kind == 4:
        return rng.choice(["What is the square root of {n}?", "What is {n} squared?", "What is {n} to the power of 7?",
                           "What is {n} factorial?", "What is 2 to the power of {n}?"]).format(n=rng.randint(13, 999))
    return rng.choice(["What is {a}.{b} plus {c}.{b}?", "What is {a}/{c} plus 1/{b}?", "Solve x + {a} = {c}{b}.",
                       "What is {a} percent of {c}{b}?", "What is the integral of x squared?",
                       "What is pi to ten digits?"]).format(a=rng.randint(2, 99), b=rng.randint(2, 9),
                                                            c=rng.randint(2, 99))


# -- facts from the Wikipedia leads the base model was pretrained on -------------------------------

MAX_FACT_WORDS = 30
COPULA = re.compile(r"\b(is|are|was|were)\b")
SENTENCE_END = re.compile(r"(?<![A-Z])(?<!\b[A-Z][a-z])(?<!\bc)\.(?=\s+[A-Z\"'])")  # not after U.S, Mr, St, c.
HEAD_NOUN = re.compile(  # "was a Polish mathematician who ...": the noun before the first clause or phrase
    r"\s+(?:an?|the)\s+([^,.;]*?\w)(?=\s+(?:who|whose|which|that|of|in|from|and|or|by|for|with|on|at|to|as|"
    r"known|born|based|best|widely|famous|noted|located|considered|regarded|often|commonly|also)\b|[,.;])")


def first_sentence(lead: str) -> str | None:
    """The lead's first sentence without its parentheses, if it has at most MAX_FACT_WORDS words."""
    text = " ".join(re.sub(r"\s*\([^()]*\)", "", lead.split("\n")[0]).split())
    end = SENTENCE_END.search(text)
    text = text[: end.start() + 1] if end else text
    return text if text.endswith(".") and 5 <= len(text.split()) <= MAX_FACT_WORDS else None


def fact_question(title: str, text: str, counts: WordCounts, wordnet: WordNet) -> tuple[str, str] | None:
    """("What are", "the Academy Awards") for "The Academy Awards ... are awards ...": the subject as the
    sentence writes it, and a question word that fits (Who for people, by WordNet's noun.person)."""
    name = re.sub(r"\s*\(.*\)$", "", title)
    match = re.match(rf"(?:In [^,]{{1,40}}, )?((?:the |an? )?{re.escape(name)}(?:e?s)?)\b", text, re.IGNORECASE)
    copula = COPULA.search(text, match.end()) if match else None
    if not match or not copula or copula.start() - match.end() > 60:
        return None
    subject = match.group(1)
    article = subject.split()[0].lower() in ("the", "a", "an")
    if match.start(1) == 0 and (article or not re.search(r"\s[A-Z]", subject)
                                and counts.mostly_lowercase(subject.split()[0].lower())):
        subject = subject[0].lower() + subject[1:]  # "Censorship is ..." -> "What is censorship?", not "Silent Spring"
    verb = copula.group(1)
    head = HEAD_NOUN.match(text, copula.end())
    who = verb in ("is", "was") and head is not None and wordnet.is_person(head.group(1).split()[-1].lower())
    return ("Who" if who else "What") + f" {verb}", subject


def fact_entries(cfg: BuildConfig, rng: random.Random, corpora: Path, counts: WordCounts,
                 wordnet: WordNet) -> Iterator[Entry]:
    """ "What is X?" -> the first sentence of X's Wikipedia lead, for the leads the base model trained on."""
    items = []
    for doc in modern_documents("wiki", corpora):
        if is_held_out(doc):
            continue  # held out of pretraining: the model never read the answer
        title, _, lead = doc.text.partition("\n\n")
        answer = first_sentence(lead)
        question = fact_question(title, answer, counts, wordnet) if answer else None
        if question:
            items.append((question, answer, f"fact:{title}"))
    for template, (what, subject), answer, fact in asked(rng, items, FACT_QUESTIONS, cfg.facts):
        yield entry("fact", template.format(what=what, subject=subject), answer, fact)


# -- small talk and refusals ------------------------------------------------------------------------

def small_talk_entries(cfg: BuildConfig, rng: random.Random) -> Iterator[Entry]:
    intents = sorted(SMALL_TALK)
    for _ in range(cfg.small_talk):
        intent = rng.choice(intents)
        ways, answer = SMALL_TALK[intent]
        said = rng.choice(ways) + rng.choice(["", "?"] if intent in QUESTIONS else ["", "!", "."])
        yield entry("small talk", casual(rng, said), answer, f"small talk:{intent}")


def with_article(noun: str) -> str:
    return ("an " if noun[0] in VOWELS else "a ") + noun


def refusal_entries(cfg: BuildConfig, rng: random.Random, nouns: Sequence[str], plurals: Sequence[str]
                    ) -> Iterator[Entry]:
    """Questions it cannot answer (the news, opinions, code, essays, other languages, hard sums):
    one consistent answer per kind, naming what it can do, instead of a guess."""
    kinds = sorted(REFUSALS)
    for _ in range(cfg.refusals):
        kind = rng.choice(kinds)
        templates, answer = REFUSALS[kind]
        if kind == "math":
            question = out_of_range_question(rng)
        else:
            noun, noun2 = rng.sample(list(nouns), 2)
            nouns_, nouns2 = rng.sample(list(plurals), 2)
            question = rng.choice(templates).format(
                noun=noun, a_noun=with_article(noun), a_noun2=with_article(noun2), nouns=nouns_, nouns2=nouns2,
                city=rng.choice(CITIES), country=rng.choice(COUNTRIES), language=rng.choice(LANGUAGES),
                lang=rng.choice(CODE_LANGUAGES), task=rng.choice(CODE_TASKS), foreign=rng.choice(FOREIGN),
                word=quoted(rng, noun))
        yield entry("refusal", casual(rng, question), answer, f"refusal:{kind}")


def with_history(cfg: BuildConfig, rng: random.Random, entries: Sequence[Entry]) -> Iterator[Entry]:
    """Questions after one or two earlier turns in the Chat tab's format, so that an earlier turn in the
    prompt's input does not throw the model off the new question."""
    short = [e for e in entries if not e["input"] and len(e["output"].split()) <= 12]
    for _ in range(cfg.with_history):
        question, *earlier = rng.sample(short, rng.randint(2, 3))
        lines = [line for e in earlier for line in (chat_line("user", e["instruction"]),
                                                    chat_line("assistant", e["output"]))]
        yield {**question, "input": "\n".join(lines)}


def build_dataset(cfg: BuildConfig = PRESETS["shipped"], wordnet_dir: Path = WORDNET_DIR,
                  corpora: Path = CORPORA, conversations: bool = True) -> list[Entry]:
    """Every family, deduplicated, in a seeded random order; with `conversations`, tagged with their split
    and asked again in conversations and casual phrasings (without: the first shipped dataset, untagged)."""
    if not (wordnet_dir / "data.noun").is_file():
        raise FileNotFoundError(f"WordNet not found in {wordnet_dir} (Debian: apt-get install wordnet-base)")
    if not (corpora / "wiki.jsonl.xz").is_file():
        raise FileNotFoundError(f"the modern corpora (wiki.jsonl.xz ...) not found in {corpora}")
    rng = random.Random(cfg.seed)
    wordnet, counts = read_wordnet(wordnet_dir), count_words(corpora)
    facts = word_facts(cfg, wordnet, wordnet_dir, counts)
    plurals = facts.pairs["plural"]
    entries = [*word_entries(cfg, rng, facts), *arithmetic_entries(cfg, rng),
               *fact_entries(cfg, rng, corpora, counts, wordnet), *small_talk_entries(cfg, rng),
               *refusal_entries(cfg, rng, [n for n, _ in plurals], [p for _, p in plurals]),
               *follow_up_entries(cfg, rng, facts)]
    entries += with_history(cfg, rng, entries)
    entries = deduplicate(entries)
    random.Random(cfg.seed).shuffle(entries)
    return with_conversations(cfg, entries, [n for n, _ in plurals]) if conversations else entries


def with_conversations(cfg: BuildConfig, entries: Sequence[Entry], nouns: Sequence[str]) -> list[Entry]:
    """The entries tagged with their seeded split, then each split's conversations, casual phrasings,
    follow-ups and new refusals (`tools.instruct_conversations`), in a seeded order. A prompt already
    asked keeps its first answer: the new entries never change an old one or move it to another split."""
    rng = random.Random(cfg.seed + 1)
    encode = load_checkpoint_tokenizer(CHAT_TOKENIZER).encode
    split = split_entries(entries, cfg.seed)
    refusals: dict[str, list[Entry]] = {part: [] for part in PARTS}
    for e in new_refusals(rng, nouns, cfg.new_refusals):
        refusals[rng.choices(list(SPLIT_FRACTIONS), weights=list(SPLIT_FRACTIONS.values()))[0]].append(e)
    tagged = [{**e, "split": part} for part in PARTS for e in getattr(split, part)]
    for part in PARTS:
        tagged += conversation_entries(rng, part, getattr(split, part), encode, refusals[part])
    seen: set[tuple[str, str]] = set()
    kept = []
    for e in tagged:
        key = (e["instruction"].strip().lower(), e["input"].strip().lower())
        if key not in seen:
            seen.add(key)
            kept.append(e)
    rng.shuffle(kept)
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.build_instruct_data", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shipped", help="shipped, or tiny (for tests)")
    parser.add_argument("--seed", type=int, default=SPLIT_SEED, help="seeds the sampling, the order and the split")
    parser.add_argument("--wordnet", type=Path, default=WORDNET_DIR, help="WordNet 3.0's dict folder")
    parser.add_argument("--out", type=Path, default=SHIPPED_DATA, help="where to write (default: the shipped file)")
    args = parser.parse_args(argv)
    entries = build_dataset(replace(PRESETS[args.preset], seed=args.seed), args.wordnet)
    path = save_entries(entries, args.out)
    split = split_entries(entries, args.seed)
    phrasings = save_entries(heldout_phrasings(random.Random(args.seed), split.test),
                             args.out.with_name(HELDOUT_PHRASINGS.name))
    print(f"held-out phrasings of test facts -> {phrasings}")
    print(f"{len(entries)} entries ({len(split.train)} train / {len(split.test)} test / {len(split.val)} validation) "
          f"-> {path} ({path.stat().st_size / 1e6:.2f} MB)")
    for task, n in sorted(Counter(e["task"] for e in entries).items()):
        print(f"  {task}: {n}")


if __name__ == "__main__":
    main()
