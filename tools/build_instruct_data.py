"""Instruction data: the book's instruction-data.json (downloaded, cached) and the project's own
offline dataset, built here from sources this machine has (`python -m gpt build-instruct-data`).

Every entry is the book's shape, `{"instruction", "input", "output"}`, plus a `task` tag so that the
evaluation can report scores per kind of question. The offline dataset is built from:
WordNet 3.0 (Debian `wordnet-base`: definitions, synonyms, antonyms, example sentences, irregular
forms), exact arithmetic and unit conversions, word-level rewrites, and the corpora shipped in
`assets/corpora/` (which novel a sentence is from, which book of the Bible a verse is from, quoting
a verse). All answers are short, because the shipped model reads 256 tokens at most.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import requests

from gpt.tokenizer import ASSETS

BOOK_URL = ("https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/"
            "01_main-chapter-code/instruction-data.json")
SHIPPED_DATA = ASSETS / "instruct" / "instruction-data.json.gz"
CORPORA = ASSETS / "corpora"
WORDNET_DIR = Path("/usr/share/wordnet")
FIELDS = ("instruction", "input", "output")

Entry = dict[str, str]


class InstructDataUnavailableError(FileNotFoundError):
    """The book's dataset is neither cached nor downloadable (offline)."""


# -- reading, writing, splitting ------------------------------------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get("GPT_CACHE_DIR", Path.home() / ".cache" / "gpt-from-scratch"))


def validate_entries(entries: object, source: str | Path) -> list[Entry]:
    """Check the book's shape: a list of objects with string instruction, input and output."""
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: expected a non-empty JSON list of instruction entries")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k, ""), str) for k in FIELDS) \
                or not entry.get("instruction") or "output" not in entry:
            raise ValueError(f"{source}: entry {i} needs string 'instruction', 'input' and 'output' fields")
    return entries


def load_entries(path: str | Path) -> list[Entry]:
    """Read a JSON list of entries, gzip-compressed if the name ends in .gz."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"instruction data not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not readable as JSON ({err})") from err
    return validate_entries(entries, path)


def save_entries(entries: list[Entry], path: str | Path) -> Path:
    """Write entries as gzip-compressed JSON, one entry a line (readable diffs), reproducibly (mtime 0)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries) + "\n]\n"
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(text.encode("utf-8"))
    return path


def download_instruction_data(url: str = BOOK_URL, cache: str | Path | None = None, timeout: float = 30) -> Path:
    """The book's 1,100-entry instruction-data.json, downloaded once with requests, then read from the cache."""
    path = Path(cache) if cache is not None else cache_dir() / "instruction-data.json"
    if path.is_file():
        return path
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        entries = response.json()
    except (requests.RequestException, ValueError) as err:
        raise InstructDataUnavailableError(f"cannot download {url} ({type(err).__name__}); "
                                           f"offline, use the shipped {SHIPPED_DATA.name}") from err
    validate_entries(entries, url)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=1, ensure_ascii=False))
    os.replace(tmp, path)  # a crash never leaves half a file under the cached name
    return path


def resolve_data(name_or_path: str) -> list[Entry]:
    """`shipped` (the offline dataset), `book` (download, cached) or a path to a .json / .json.gz file."""
    if name_or_path == "shipped":
        return load_entries(SHIPPED_DATA)
    if name_or_path == "book":
        return load_entries(download_instruction_data())
    return load_entries(name_or_path)


def split_entries(entries: list[Entry], seed: int = 123, train_frac: float = 0.85,
                  test_frac: float = 0.10) -> tuple[list[Entry], list[Entry], list[Entry]]:
    """A seeded shuffle, then train / test / validation in the book's order (85 / 10 / 5)."""
    shuffled = list(entries)
    random.Random(seed).shuffle(shuffled)
    n_train = int(len(shuffled) * train_frac)
    n_test = int(len(shuffled) * test_frac)
    return shuffled[:n_train], shuffled[n_train:n_train + n_test], shuffled[n_train + n_test:]


def deduplicate(entries: Iterable[Entry]) -> list[Entry]:
    """One entry per prompt: exact repeats collapse; a prompt seen with two different answers is dropped."""
    by_prompt: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for e in entries:
        by_prompt[(e["instruction"].strip().lower(), e["input"].strip().lower())].append(e)
    kept = []
    for group in by_prompt.values():
        if len({e["output"].strip().lower() for e in group}) == 1:
            kept.append(group[0])
    return kept


# -- WordNet -------------------------------------------------------------------------------------

POS_NAMES = {"n": "noun", "v": "verb", "a": "adjective", "r": "adverb"}
POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
SENSE_KEY_POS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}
WORD = re.compile(r"[a-z]{3,}")


@dataclass(frozen=True)
class Synset:
    pos: str
    words: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]
    antonyms: tuple[tuple[str, str], ...]  # (word here, its antonym): lexical "!" pointers


def _clean_word(raw: str) -> str:
    return re.sub(r"\(.*\)$", "", raw).replace("_", " ")  # adjectives carry markers like "(a)"


@lru_cache(maxsize=2)  # parsing takes seconds; the result is only read
def read_wordnet(directory: Path) -> tuple[dict[tuple[str, str], Synset], dict[tuple[str, str], list[str]], Counter]:
    """Synsets by (pos, offset), each lemma's synsets in WordNet's frequency order, and tag counts."""
    raw: dict[tuple[str, str], tuple[list[str], str, list[tuple[str, str, str]]]] = {}
    for pos, name in POS_FILES.items():
        for line in (directory / f"data.{name}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue  # the license header
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            offset, n_words = fields[0], int(fields[3], 16)
            words = [_clean_word(fields[4 + 2 * i]) for i in range(n_words)]
            at = 4 + 2 * n_words
            n_ptrs = int(fields[at])
            antonym_ptrs = []
            for i in range(n_ptrs):
                symbol, target_offset, target_pos, source_target = fields[at + 1 + 4 * i: at + 5 + 4 * i]
                if symbol == "!":
                    antonym_ptrs.append((target_offset, "a" if target_pos == "s" else target_pos, source_target))
            raw[(pos, offset)] = (words, gloss.strip(), antonym_ptrs)
    synsets = {}
    for key, (words, gloss, antonym_ptrs) in raw.items():
        definition, *examples = [part.strip() for part in gloss.split(";")]
        quoted = tuple(x.strip('"') for x in examples if x.startswith('"') and x.endswith('"') and len(x) > 2)
        antonyms = []
        for offset, pos, source_target in antonym_ptrs:
            source, target = int(source_target[:2], 16), int(source_target[2:], 16)
            other = raw.get((pos, offset))
            if other and 0 < source <= len(words) and 0 < target <= len(other[0]):
                antonyms.append((words[source - 1], other[0][target - 1]))
        synsets[key] = Synset(key[0], tuple(words), definition, quoted, tuple(antonyms))
    senses: dict[tuple[str, str], list[str]] = {}
    for pos, name in POS_FILES.items():
        for line in (directory / f"index.{name}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue
            fields = line.split()
            n_synsets = int(fields[2])
            senses[(pos, fields[0].replace("_", " "))] = fields[-n_synsets:]
    counts: Counter = Counter()
    for line in (directory / "cntlist.rev").read_text(encoding="latin-1").splitlines():
        key, _, count = line.split()
        lemma, _, rest = key.partition("%")
        counts[(SENSE_KEY_POS[rest[0]], lemma.replace("_", " "))] += int(count)
    return synsets, senses, counts


def read_exceptions(directory: Path, name: str) -> dict[str, list[str]]:
    """WordNet's irregular forms: base word -> inflected forms (e.g. verb.exc: go -> went)."""
    forms: dict[str, list[str]] = defaultdict(list)
    for line in (directory / f"{name}.exc").read_text(encoding="latin-1").splitlines():
        inflected, *bases = line.split()
        for base in bases:
            forms[base].append(inflected)
    return forms


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


# -- inflection rules: regular forms (what WordNet's morphology undoes), for words with no exception --

VOWELS = set("aeiou")


def regular_plural(noun: str) -> str | None:
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in VOWELS:
        return noun[:-1] + "ies"
    if noun.endswith(("o", "f", "fe", "is", "um", "us", "on", "a")):
        return None  # potatoes or pianos, leaves or roofs: no safe rule
    return noun + "s"


def regular_past(verb: str) -> str | None:
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in VOWELS:
        return verb[:-1] + "ied"
    if verb[-1] not in VOWELS and verb[-1] not in "wxy" and verb[-2] in VOWELS and verb[-3] not in VOWELS:
        return None  # stop -> stopped, but visit -> visited: stress decides, WordNet lists the doubled ones
    return verb + "ed"


def regular_ing(verb: str) -> str | None:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    if verb[-1] not in VOWELS and verb[-1] not in "wxy" and verb[-2] in VOWELS and verb[-3] not in VOWELS:
        return None
    return verb + "ing"


# -- the builder ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildConfig:
    """How many entries of each kind the builder draws (before deduplication), and its seed."""

    seed: int = 123
    n_common_words: int = 2500  # most frequent lemmas per part of speech (WordNet's sense-tag counts)
    definitions: int = 1400
    synonyms: int = 700
    antonyms: int = 500
    examples: int = 600
    plurals: int = 450
    singulars: int = 250
    verb_forms: int = 500
    comparisons: int = 200
    arithmetic: int = 1000
    conversions: int = 500
    rewrites: int = 700
    bible: int = 800
    austen: int = 600


PRESETS = {
    "shipped": BuildConfig(),
    "tiny": BuildConfig(n_common_words=300, definitions=30, synonyms=20, antonyms=20, examples=20, plurals=20,
                        singulars=10, verb_forms=20, comparisons=10, arithmetic=40, conversions=20, rewrites=30,
                        bible=30, austen=30),
}


def entry(task: str, instruction: str, output: str, input_text: str = "") -> Entry:
    return {"instruction": instruction, "input": input_text, "output": output, "task": task}


def _sample(rng: random.Random, items: list, k: int) -> list:
    return rng.sample(items, min(k, len(items)))


def wordnet_entries(cfg: BuildConfig, rng: random.Random, directory: Path = WORDNET_DIR) -> Iterator[Entry]:
    synsets, senses, counts = read_wordnet(directory)
    common: dict[str, list[str]] = {}  # pos -> the most frequent single words, most frequent first
    for pos in POS_NAMES:
        lemmas = [lemma for (p, lemma), c in counts.most_common() if p == pos and WORD.fullmatch(lemma)
                  and (pos, lemma) in senses]
        common[pos] = lemmas[:cfg.n_common_words]

    def first_sense(pos: str, lemma: str) -> Synset:
        return synsets[(pos, senses[(pos, lemma)][0])]

    pairs = [(pos, lemma) for pos in POS_NAMES for lemma in common[pos]]
    for pos, lemma in _sample(rng, pairs, cfg.definitions):
        definition = first_sense(pos, lemma).definition
        yield entry("definition", f'Define the {POS_NAMES[pos]} "{lemma}".', _sentence(definition))

    synonym_pairs = []
    for pos, lemma in pairs:
        others = [w for w in first_sense(pos, lemma).words if w != lemma and WORD.fullmatch(w)]
        if others:
            synonym_pairs.append((lemma, others[0]))
    for lemma, synonym in _sample(rng, synonym_pairs, cfg.synonyms):
        yield entry("synonym", f'Give a synonym for "{lemma}".', synonym)

    antonym_pairs = []
    for pos, lemma in pairs:
        for word, antonym in first_sense(pos, lemma).antonyms:
            if word == lemma and WORD.fullmatch(antonym):
                antonym_pairs.append((lemma, antonym))
                break
    for lemma, antonym in _sample(rng, antonym_pairs, cfg.antonyms):
        yield entry("antonym", f'What is the opposite of "{lemma}"?', antonym)

    example_pairs = []
    for pos, lemma in pairs:
        examples = [x for x in first_sense(pos, lemma).examples
                    if re.search(rf"\b{lemma}\b", x) and len(x.split()) >= 4]
        if examples:
            example_pairs.append((lemma, examples[0]))
    for lemma, example in _sample(rng, example_pairs, cfg.examples):
        yield entry("example", f'Use the word "{lemma}" in a sentence.', _sentence(example))

    noun_exc, verb_exc, adj_exc = (read_exceptions(directory, n) for n in ("noun", "verb", "adj"))
    plural_pairs = []
    for noun in common["n"]:
        irregular = [f for f in noun_exc.get(noun, []) if WORD.fullmatch(f)]
        plural = irregular[0] if irregular else regular_plural(noun)
        if plural and len(noun_exc.get(noun, [])) <= 1:
            plural_pairs.append((noun, plural))
    for noun, plural in _sample(rng, plural_pairs, cfg.plurals):
        yield entry("plural", f'What is the plural of "{noun}"?', plural)
    for noun, plural in _sample(rng, plural_pairs, cfg.singulars):
        yield entry("singular", f'What is the singular of "{plural}"?', noun)

    verb_pairs = []
    for verb in common["v"]:
        irregular = verb_exc.get(verb, [])
        past = [f for f in irregular if f.endswith("ed")]
        ing = [f for f in irregular if f.endswith("ing")]
        if not irregular:
            past, ing = [regular_past(verb)], [regular_ing(verb)]
        if len(past) == 1 and past[0]:
            verb_pairs.append(("past", verb, past[0]))
        if len(ing) == 1 and ing[0]:
            verb_pairs.append(("ing", verb, ing[0]))
    for kind, verb, form in _sample(rng, verb_pairs, cfg.verb_forms):
        question = (f'What is the past tense of "{verb}"?' if kind == "past"
                    else f'What is the -ing form of "{verb}"?')
        yield entry("verb form", question, form)

    comparison_pairs = []
    for adjective in common["a"]:
        for form in adj_exc.get(adjective, []):
            if form.endswith("est"):
                comparison_pairs.append((f'What is the superlative of "{adjective}"?', form))
            elif form.endswith("er"):
                comparison_pairs.append((f'What is the comparative of "{adjective}"?', form))
    for question, form in _sample(rng, comparison_pairs, cfg.comparisons):
        yield entry("comparison", question, form)

    words = [w for w in common["n"] + common["a"] if len(w) <= 8]
    yield from rewrite_entries(cfg, rng, words, [x for s in synsets.values() for x in s.examples])


def rewrite_entries(cfg: BuildConfig, rng: random.Random, words: list[str], sentences: list[str]) -> Iterator[Entry]:
    """Rewrites whose answer is computed exactly from the input."""
    sentences = [s for s in sentences if 4 <= len(s.split()) <= 12 and re.fullmatch(r"[A-Za-z ,']+", s)]
    for _ in range(cfg.rewrites):
        kind = rng.randrange(6)
        if kind == 0:
            chosen = rng.sample(words, rng.randint(3, 5))
            yield entry("rewrite", "Sort the following words alphabetically.", ", ".join(sorted(chosen)),
                        ", ".join(chosen))
        elif kind == 1:
            chosen = rng.sample(words, rng.randint(3, 5))
            yield entry("rewrite", "Reverse the order of the following words.", ", ".join(chosen[::-1]),
                        ", ".join(chosen))
        elif kind == 2:
            s = rng.choice(sentences)
            yield entry("rewrite", "Rewrite the following text in capital letters.", s.upper(), s)
        elif kind == 3:
            s = rng.choice(sentences)
            yield entry("rewrite", "What is the last word of the following text?", s.split()[-1].strip(",'"), s)
        elif kind == 4:
            s = rng.choice(sentences)
            yield entry("rewrite", "How many words are in the following text?", str(len(s.split())), s)
        else:
            word = rng.choice(words)
            yield entry("rewrite", f'Spell the word "{word}" backwards.', word[::-1])


# -- arithmetic and unit conversions, computed exactly ----------------------------------------------

UNITS = [  # (unit, plural, other unit, plural, how many of the other in one)
    ("kilometer", "kilometers", "meter", "meters", Fraction(1000)),
    ("meter", "meters", "centimeter", "centimeters", Fraction(100)),
    ("centimeter", "centimeters", "millimeter", "millimeters", Fraction(10)),
    ("kilogram", "kilograms", "gram", "grams", Fraction(1000)),
    ("liter", "liters", "milliliter", "milliliters", Fraction(1000)),
    ("hour", "hours", "minute", "minutes", Fraction(60)),
    ("minute", "minutes", "second", "seconds", Fraction(60)),
    ("day", "days", "hour", "hours", Fraction(24)),
    ("week", "weeks", "day", "days", Fraction(7)),
    ("foot", "feet", "inch", "inches", Fraction(12)),
    ("yard", "yards", "foot", "feet", Fraction(3)),
    ("mile", "miles", "yard", "yards", Fraction(1760)),
    ("pound", "pounds", "ounce", "ounces", Fraction(16)),
    ("inch", "inches", "centimeter", "centimeters", Fraction(254, 100)),  # exact by definition (1959)
    ("year", "years", "month", "months", Fraction(12)),
]


def format_number(x: Fraction) -> str | None:
    """A terminating decimal without trailing zeros, or None when it would not terminate."""
    denominator = x.denominator
    for p in (2, 5):
        while denominator % p == 0:
            denominator //= p
    if denominator != 1:
        return None
    if x.denominator == 1:
        return str(x.numerator)
    digits = 0
    while (x * 10 ** digits).denominator != 1:
        digits += 1
    return f"{float(x):.{digits}f}"


def arithmetic_entries(cfg: BuildConfig, rng: random.Random) -> Iterator[Entry]:
    for _ in range(cfg.arithmetic):
        kind = rng.randrange(4)
        if kind == 0:
            a, b = rng.randint(1, 999), rng.randint(1, 999)
            yield entry("arithmetic", f"What is {a} + {b}?", str(a + b))
        elif kind == 1:
            a, b = sorted((rng.randint(1, 999), rng.randint(1, 999)), reverse=True)
            yield entry("arithmetic", f"What is {a} - {b}?", str(a - b))
        elif kind == 2:
            a, b = rng.randint(2, 99), rng.randint(2, 12)
            yield entry("arithmetic", f"What is {a} times {b}?", str(a * b))
        else:
            b, q = rng.randint(2, 12), rng.randint(2, 99)
            yield entry("arithmetic", f"What is {b * q} divided by {b}?", str(q))
    for _ in range(cfg.conversions):
        one, ones, other, others, factor = rng.choice(UNITS)
        amount = Fraction(rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 50, 100]))
        if rng.random() < 0.5:
            result, src, dst = amount * factor, (one, ones), (other, others)
        else:
            result, src, dst = amount / factor, (other, others), (one, ones)
            if format_number(result) is None:
                result, src, dst = amount * factor, (one, ones), (other, others)
        shown = format_number(result)
        src_name = src[0] if amount == 1 else src[1]
        dst_name = dst[0] if result == 1 else dst[1]
        yield entry("conversion", f"Convert {amount} {src_name} to {dst[1]}.", f"{shown} {dst_name}")


# -- questions about the shipped corpora ---------------------------------------------------------

BIBLE_BOOKS = {
    "Ge": "Genesis", "Exo": "Exodus", "Lev": "Leviticus", "Num": "Numbers", "Deu": "Deuteronomy",
    "Josh": "Joshua", "Jdgs": "Judges", "Ruth": "Ruth", "1Sm": "1 Samuel", "2Sm": "2 Samuel", "1Ki": "1 Kings",
    "2Ki": "2 Kings", "1Chr": "1 Chronicles", "2Chr": "2 Chronicles", "Ezra": "Ezra", "Neh": "Nehemiah",
    "Est": "Esther", "Job": "Job", "Psa": "Psalms", "Prv": "Proverbs", "Eccl": "Ecclesiastes",
    "SSol": "Song of Solomon", "Isa": "Isaiah", "Jer": "Jeremiah", "Lam": "Lamentations", "Eze": "Ezekiel",
    "Dan": "Daniel", "Hos": "Hosea", "Joel": "Joel", "Amos": "Amos", "Obad": "Obadiah", "Jonah": "Jonah",
    "Mic": "Micah", "Nahum": "Nahum", "Hab": "Habakkuk", "Zep": "Zephaniah", "Hag": "Haggai", "Zec": "Zechariah",
    "Mal": "Malachi", "Mat": "Matthew", "Mark": "Mark", "Luke": "Luke", "John": "John", "Acts": "Acts",
    "Rom": "Romans", "1Cor": "1 Corinthians", "2Cor": "2 Corinthians", "Gal": "Galatians", "Eph": "Ephesians",
    "Phi": "Philippians", "Col": "Colossians", "1Th": "1 Thessalonians", "2Th": "2 Thessalonians",
    "1Tim": "1 Timothy", "2Tim": "2 Timothy", "Titus": "Titus", "Phmn": "Philemon", "Heb": "Hebrews",
    "Jas": "James", "1Pet": "1 Peter", "2Pet": "2 Peter", "1Jn": "1 John", "2Jn": "2 John", "3Jn": "3 John",
    "Jude": "Jude", "Rev": "Revelation",
}
NOVELS = {
    "emma": "Emma", "mansfieldpark": "Mansfield Park", "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion", "prideprejudice": "Pride and Prejudice", "sensesensibility": "Sense and Sensibility",
}
VERSE = re.compile(r"(\d?[A-Za-z]+)(\d+):(\d+) (.+)")


def bible_entries(cfg: BuildConfig, rng: random.Random, corpora: Path = CORPORA) -> Iterator[Entry]:
    verses = []
    with gzip.open(corpora / "kjv.txt.gz", "rt", encoding="utf-8") as f:
        for line in f:
            m = VERSE.fullmatch(line.strip())
            if m and m.group(1) in BIBLE_BOOKS and len(m.group(4).split()) <= 22:
                verses.append((BIBLE_BOOKS[m.group(1)], m.group(2), m.group(3), m.group(4)))
    for book, chapter, verse, text in _sample(rng, verses, cfg.bible // 2):
        yield entry("bible book", "Which book of the King James Bible is this verse from?", book, text)
    for book, chapter, verse, text in _sample(rng, verses, cfg.bible - cfg.bible // 2):
        yield entry("bible quote", f"Quote {book} {chapter}:{verse} from the King James Bible.", text)


def austen_sentences(path: Path) -> list[str]:
    """Plain narrative sentences of 8 to 24 words (no dialogue, no chapter headings)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        text = re.sub(r"\s+", " ", f.read())
    # Split after . ! ? but not after a title: "Mrs. Ferrars" is one sentence.
    sentences = re.split(r"(?<!Mr\.)(?<!Mrs\.)(?<!Dr\.)(?<!St\.)(?<=[.!?])\s+(?=[A-Z])", text)
    return [s for s in sentences if 8 <= len(s.split()) <= 24 and re.fullmatch(r"[A-Z][A-Za-z ,;'-]+[.!?]", s)
            and not s.isupper()]


def austen_entries(cfg: BuildConfig, rng: random.Random, corpora: Path = CORPORA) -> Iterator[Entry]:
    pool = [(NOVELS[p.name[len("austen-"):-len(".txt.gz")]], s)
            for p in sorted(corpora.glob("austen-*.txt.gz")) for s in austen_sentences(p)]
    for novel, sentence in _sample(rng, pool, cfg.austen):
        yield entry("austen novel", "Which Jane Austen novel is this sentence from?", novel, sentence)
    for key, novel in NOVELS.items():
        yield entry("austen novel", f"Who wrote {novel}?", "Jane Austen")


def build_dataset(cfg: BuildConfig = PRESETS["shipped"], wordnet: Path = WORDNET_DIR,
                  corpora: Path = CORPORA) -> list[Entry]:
    """Every source, deduplicated, in a seeded random order."""
    if not (wordnet / "data.noun").is_file():
        raise FileNotFoundError(f"WordNet not found in {wordnet} (Debian: apt-get install wordnet-base)")
    if not (corpora / "kjv.txt.gz").is_file():
        raise FileNotFoundError(f"corpora not found in {corpora}")
    rng = random.Random(cfg.seed)
    entries = [*wordnet_entries(cfg, rng, wordnet), *arithmetic_entries(cfg, rng),
               *bible_entries(cfg, rng, corpora), *austen_entries(cfg, rng, corpora)]
    entries = deduplicate(entries)
    random.Random(cfg.seed).shuffle(entries)
    return entries


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shipped")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--wordnet", type=Path, default=WORDNET_DIR)
    parser.add_argument("--out", type=Path, default=SHIPPED_DATA)


def run(args: argparse.Namespace) -> None:
    from dataclasses import replace

    entries = build_dataset(replace(PRESETS[args.preset], seed=args.seed), args.wordnet)
    path = save_entries(entries, args.out)
    train, test, val = split_entries(entries, args.seed)
    print(f"{len(entries)} entries ({len(train)} train / {len(test)} test / {len(val)} validation) -> "
          f"{path} ({path.stat().st_size / 1e6:.2f} MB)")
    for task, n in sorted(Counter(e["task"] for e in entries).items()):
        print(f"  {task}: {n}")
