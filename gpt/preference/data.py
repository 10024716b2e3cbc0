"""Preference data: an Alpaca prompt with a chosen and a rejected response, and how the pair was made.

Every pair is `{"instruction", "input", "chosen", "rejected", "how"}`, optionally with the `task`
family of its question and the `split` it belongs to. Two datasets are known by name: `shipped`,
built offline from the project's instruction data (`python -m tools.build_preference_data`), and
`book`, the book's 1,100 pairs of a polite and an impolite answer, downloaded once (pinned to a
commit and its sha256) and then read from the cache.

The shipped pairs are made so that the held-out figures are honest: the training pairs come from
the instruction data's training split only, the held-out ones from its test and validation
splits. The chosen response is the reference answer; the rejected one is the shipped chat model's
own wrong greedy answer where it has one, else a rewrite of the reference the task does not want
(the answer buried in filler, said rudely, or not given at all).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from gpt.data.download import DownloadError, RemoteFile
from gpt.data.splits import Split
from gpt.files import ASSETS
from gpt.instruct.data import (
    SPLIT_SEED,
    Entry,
    _json_type,
    book_file,
    fetch_book_file,
    named_file,
    read_json,
    split_entries,
)
from gpt.instruct.evaluate import is_short, normalize, rouge_l

SHIPPED_PAIRS = ASSETS / "preference" / "pairs.json.gz"
BOOK_PAIRS = book_file("ch07/04_preference-tuning-with-dpo/instruction-data-with-preference.json",
                       "305315abf14f65fa42c01a0877572f832606571c2a7d49f152ac1d758b16756e")
SPLITS = ("train", "val", "test")
EXAMPLE_PAIR = '{"instruction": "...", "input": "... (optional)", "chosen": "...", "rejected": "..."}'
OPTIONAL_TEXT = ("input", "how", "task", "split")
UNTAGGED = "unspecified"  # the `how` of a pair whose file does not say

Pair = dict[str, str]


class PreferenceDataUnavailableError(DownloadError):
    """The book's preference data is neither cached nor downloadable (offline, or the file changed)."""


def validate_pairs(pairs: object, source: str | Path, how: str = UNTAGGED) -> list[Pair]:
    """Check the shape: a non-empty list of objects with string instruction, chosen and rejected, and
    optional strings input (missing: empty), how (missing: `how`), task and split (one of train, val,
    test). Returns the pairs with `input` and `how` filled in; the given objects are not changed."""
    if not isinstance(pairs, list) or not pairs:
        got = "an empty list" if isinstance(pairs, list) else _json_type(pairs)
        raise ValueError(f"{source}: expected a non-empty JSON list of preference pairs like {EXAMPLE_PAIR}, got {got}")
    checked = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, dict):
            raise ValueError(f"{source}: pair {i} is {_json_type(pair)}, not an object like {EXAMPLE_PAIR}")
        for key in ("instruction", "chosen", "rejected"):
            if key not in pair:
                raise ValueError(f"{source}: pair {i} has no {key!r} field (each pair needs 'instruction', "
                                 f"'chosen' and 'rejected'; 'input' is optional)")
        for key in ("instruction", "chosen", "rejected", *OPTIONAL_TEXT):
            if key in pair and not isinstance(pair[key], str):
                raise ValueError(f"{source}: pair {i}: {key!r} must be a string, got {_json_type(pair[key])}")
        if not pair["instruction"].strip():
            raise ValueError(f"{source}: pair {i}: 'instruction' is empty")
        if pair.get("split", "train") not in SPLITS:
            raise ValueError(f"{source}: pair {i}: 'split' must be one of {', '.join(SPLITS)}, got {pair['split']!r}")
        checked.append({"input": "", "how": how, **pair})
    return checked


def load_pairs(path: str | Path, how: str = UNTAGGED) -> list[Pair]:
    """Read a JSON list of pairs, gzip-compressed if the name ends in .gz."""
    return validate_pairs(read_json(Path(path), "preference data"), Path(path), how)


def download_preference_data(remote: RemoteFile = BOOK_PAIRS, cache: str | Path | None = None,
                             timeout: float = 30) -> Path:
    """The book's instruction-data-with-preference.json: downloaded once (hash-checked), then read from the cache."""
    return fetch_book_file(remote, cache, timeout, load_pairs, PreferenceDataUnavailableError,
                           "the shipped pairs (--data shipped) need no download")


def resolve_pairs(name_or_path: str) -> list[Pair]:
    """`shipped` (built offline), `book` (downloaded, cached) or a path to a .json / .json.gz file."""
    path = named_file(name_or_path, SHIPPED_PAIRS, download_preference_data)
    return load_pairs(path, how="book" if name_or_path == "book" else UNTAGGED)


def split_pairs(pairs: Sequence[Pair], seed: int = SPLIT_SEED) -> Split[Pair]:
    """The pairs' own `split` tags when they all have one (the shipped pairs follow the instruction
    split); else the instruction data's seeded 85 % train / 10 % test / 5 % validation cut."""
    tagged = sum("split" in p for p in pairs)
    if tagged == len(pairs):
        return Split(*(tuple(p for p in pairs if p["split"] == name) for name in SPLITS))
    if tagged:
        raise ValueError(f"{tagged} of {len(pairs)} pairs have a 'split': give every pair one, or none")
    return split_entries(pairs, seed)


def how_counts(pairs: Sequence[Pair]) -> dict[str, int]:
    """How many pairs of each kind, most common first: what a run records of its data."""
    return dict(Counter(p["how"] for p in pairs).most_common())


# -- building pairs from instruction data ----------------------------------------------------------

RAMBLING = (
    "Well, that is an interesting question, and there is a lot one could say about it. After thinking about it "
    "for a while, I would say it is {answer}, although it really depends on how you look at it.",
    "Let me think. There are many things to consider here, and I want to be careful. To make a long story "
    "short, it is {answer}, more or less, if I remember it right.",
    "Good question! People ask me this all the time, and honestly it took me a while to learn it myself. As far "
    "as I know, it is {answer}. I hope that helps, and feel free to ask me anything else you like!",
)
IMPOLITE = (
    "{answer}. Obviously. Look it up yourself next time.",
    "Ugh, {answer}. Is that really so hard?",
    "{answer}, of course. Everybody knows that.",
    "Seriously? It's {answer}. Stop wasting my time.",
)
EVASIVE = (
    "I would rather not answer that.",
    "That is not something I can help with.",
    "I don't know. Ask someone else.",
    "Why do you want to know?",
)
REWRITES = {"rambling": RAMBLING, "impolite": IMPOLITE, "evasive": EVASIVE}
MODEL_WRONG = "model-wrong-greedy"
LONG_ANSWER_WRONG = 0.5  # ROUGE-L under this makes a sentence-long answer wrong (short ones: any mismatch)


def is_wrong(response: str, reference: str) -> bool:
    """Whether a model's answer is one to reject: not the reference (case and punctuation ignored) and,
    for a sentence-long reference, sharing less than half of its words in order."""
    if normalize(response) == normalize(reference):
        return False
    return is_short(reference) or rouge_l(response, reference) < LONG_ANSWER_WRONG


def rewrite(entry: Entry, rng: random.Random) -> tuple[str, str]:
    """(how, text): the reference rewritten into a response of a kind the task does not want.

    A refusal (the question is one it should decline) is never answered with an evasion, which is
    what the reference already does; it is rejected rambling or rude instead.
    """
    kinds = ["rambling", "impolite"] + ([] if entry.get("task") == "refusal" else ["evasive"])
    how = rng.choice(kinds)
    answer = entry["output"].strip().rstrip(".!")  # the templates punctuate around it
    return how, rng.choice(REWRITES[how]).format(answer=answer)


def make_pair(entry: Entry, response: str, split: str, rng: random.Random) -> Pair:
    """The reference chosen over the model's own answer when it is wrong, else over a rewrite."""
    how, rejected = (MODEL_WRONG, response) if is_wrong(response, entry["output"]) else rewrite(entry, rng)
    pair = {"instruction": entry["instruction"], "input": entry["input"], "chosen": entry["output"],
            "rejected": rejected, "how": how, "split": split}
    if "task" in entry:
        pair["task"] = entry["task"]
    return pair


def build_pairs(split: Split[Entry], respond: Callable[[Sequence[Entry]], list[str]], n_train: int,
                n_val: int, seed: int = SPLIT_SEED, n_test: int | None = None) -> list[Pair]:
    """Pairs for a seeded sample of `n_train` training entries, the first `n_val` validation entries and
    the first `n_test` test entries (None: every one); `respond` gives the model's greedy answers to a list
    of entries. Training pairs come from the training split only, so the held-out ones ask nothing
    training saw in those words."""
    rng = random.Random(seed)
    parts = {"train": rng.sample(list(split.train), min(n_train, len(split.train))),
             "val": list(split.val[:n_val]), "test": list(split.test[:n_test])}
    pairs = []
    for name, entries in parts.items():
        for entry, response in zip(entries, respond(entries), strict=True):
            pairs.append(make_pair(entry, response, name, rng))
    return pairs
