"""Build the project's offline instruction dataset, `assets/instruct/instruction-data.json.gz`.

`python -m tools.build_instruct_data` writes it from sources this machine has; the same seed and
sources give the same bytes. Every entry is the book's shape, `{"instruction", "input", "output"}`,
plus a `task` tag so that the evaluation can report scores per kind of question. The sources:
WordNet 3.0 (Debian `wordnet-base`: definitions, synonyms, antonyms, example sentences, irregular
forms), exact arithmetic and unit conversions, word-level rewrites, and the corpora shipped in
`assets/corpora/` (which novel a sentence is from, which book of the Bible a verse is from, quoting
a verse). All answers are short, because the shipped model reads 256 tokens at most.
"""

from __future__ import annotations

import argparse
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from gpt.data.corpus import AUSTEN_NOVELS, CORPORA, VERSE_REF, read_text
from gpt.instruct.data import SHIPPED_DATA, SPLIT_SEED, Entry, deduplicate, save_entries, split_entries

WORDNET_DIR = Path("/usr/share/wordnet")


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


@lru_cache(maxsize=2)  # parsing is slow, and the result is only read
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


def bible_entries(cfg: BuildConfig, rng: random.Random, corpora: Path = CORPORA) -> Iterator[Entry]:
    verses = []
    for line in read_text(corpora / "kjv.txt.gz").splitlines():
        line = line.strip()
        m = VERSE_REF.match(line)
        text = line[m.end():] if m else ""
        if text and m["book"] in BIBLE_BOOKS and len(text.split()) <= 22:
            verses.append((BIBLE_BOOKS[m["book"]], m["chapter"], m["verse"], text))
    for book, _, _, text in _sample(rng, verses, cfg.bible // 2):
        yield entry("bible book", "Which book of the King James Bible is this verse from?", book, text)
    for book, chapter, verse, text in _sample(rng, verses, cfg.bible - cfg.bible // 2):
        yield entry("bible quote", f"Quote {book} {chapter}:{verse} from the King James Bible.", text)


def austen_sentences(path: Path) -> list[str]:
    """Plain narrative sentences of 8 to 24 words (no dialogue, no chapter headings)."""
    text = re.sub(r"\s+", " ", read_text(path))
    # Split after . ! ? but not after a title: "Mrs. Ferrars" is one sentence.
    sentences = re.split(r"(?<!Mr\.)(?<!Mrs\.)(?<!Dr\.)(?<!St\.)(?<=[.!?])\s+(?=[A-Z])", text)
    return [s for s in sentences if 8 <= len(s.split()) <= 24 and re.fullmatch(r"[A-Z][A-Za-z ,;'-]+[.!?]", s)
            and not s.isupper()]


def austen_entries(cfg: BuildConfig, rng: random.Random, corpora: Path = CORPORA) -> Iterator[Entry]:
    pool = [(NOVELS[name], s) for name in sorted(AUSTEN_NOVELS)  # the seeded draw depends on this order
            for s in austen_sentences(corpora / f"austen-{name}.txt.gz")]
    for novel, sentence in _sample(rng, pool, cfg.austen):
        yield entry("austen novel", "Which Jane Austen novel is this sentence from?", novel, sentence)
    for novel in NOVELS.values():
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
    print(f"{len(entries)} entries ({len(split.train)} train / {len(split.test)} test / {len(split.val)} validation) "
          f"-> {path} ({path.stat().st_size / 1e6:.2f} MB)")
    for task, n in sorted(Counter(e["task"] for e in entries).items()):
        print(f"  {task}: {n}")


if __name__ == "__main__":
    main()
