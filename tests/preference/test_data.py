"""Preference data: reading and checking pairs, the book's download, the split, and pairs built from instructions."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from gpt.data.download import RemoteFile
from gpt.instruct.data import SHIPPED_DATA, load_entries, save_entries, split_entries
from gpt.preference.data import (
    BOOK_PAIRS,
    MODEL_WRONG,
    SHIPPED_PAIRS,
    PreferenceDataUnavailableError,
    build_pairs,
    download_preference_data,
    how_counts,
    is_wrong,
    load_pairs,
    resolve_pairs,
    rewrite,
    split_pairs,
)
from tests.helpers import LocalServer

BAD_FILES = [
    ('{"chosen": "a"}', "expected a non-empty JSON list of preference pairs"),
    ("[]", "got an empty list"),
    ('["text"]', "pair 0 is a string, not an object"),
    ('[{"instruction": "q", "chosen": "a"}]', "pair 0 has no 'rejected' field"),
    ('[{"instruction": "q", "chosen": "a", "rejected": 3}]', "pair 0: 'rejected' must be a string, got a number"),
    ('[{"instruction": " ", "chosen": "a", "rejected": "b"}]', "pair 0: 'instruction' is empty"),
    ('[{"instruction": "q", "chosen": "a", "rejected": "b", "split": "dev"}]', "'split' must be one of train, val"),
    ("[{", "not readable as JSON"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_a_bad_file_gets_a_clear_error(text, message, tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_pairs(path)


def test_pairs_round_trip_with_input_and_how_filled_in(pairs, tmp_path):
    bare = [{"instruction": "q", "chosen": "a", "rejected": "b"}]
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(bare))
    assert load_pairs(path) == [{"instruction": "q", "input": "", "chosen": "a", "rejected": "b",
                                 "how": "unspecified"}]
    assert resolve_pairs(str(save_entries(pairs, tmp_path / "pairs.json.gz"))) == pairs
    with pytest.raises(FileNotFoundError, match="preference data not found"):
        resolve_pairs(str(tmp_path / "missing.json"))


def test_the_book_pairs_are_pinned_and_downloaded_once(tmp_path):
    assert "/main/" not in BOOK_PAIRS.url and len(BOOK_PAIRS.url.split("/")[5]) == 40 and len(BOOK_PAIRS.sha256) == 64
    body = json.dumps([{"instruction": "q", "input": "", "output": "a", "chosen": "a", "rejected": "b"}]).encode()
    with LocalServer(body) as server:
        remote = RemoteFile(server.url + "/p.json", "p.json", hashlib.sha256(body).hexdigest())
        path = download_preference_data(remote, tmp_path)
        assert download_preference_data(remote, tmp_path) == path and server.requests == 1
        assert load_pairs(path, how="book")[0]["how"] == "book"
        with pytest.raises(PreferenceDataUnavailableError, match="hash.*need no download"):
            download_preference_data(RemoteFile(remote.url, "changed.json", "0" * 64), tmp_path)


def test_tagged_pairs_keep_their_split_and_untagged_ones_are_cut_like_instructions(pairs):
    tagged = [{**p, "split": "test" if i < 5 else "train"} for i, p in enumerate(pairs)]
    split = split_pairs(tagged)
    assert len(split.test) == 5 and len(split.train) == 25 and not split.val
    assert split_pairs(pairs) == split_entries(pairs)  # 85 % / 10 % / 5 %, seeded
    with pytest.raises(ValueError, match="5 of 30 pairs have a 'split'"):
        split_pairs(tagged[:5] + pairs[5:])


def test_a_wrong_answer_is_one_that_does_not_match_or_shares_little():
    assert not is_wrong("Quick.", "quick") and is_wrong("slow", "quick") and is_wrong("", "quick")
    reference = "A large domesticated animal used for riding."
    assert not is_wrong("A large animal used for riding.", reference)
    assert is_wrong("A small bird.", reference)


def test_rewrites_bury_refuse_or_insult_the_answer_and_never_evade_a_refusal():
    rng = random.Random(0)
    rewrites = [rewrite({"instruction": "q", "input": "", "output": "179."}, rng) for _ in range(50)]
    assert {how for how, _ in rewrites} == {"rambling", "impolite", "evasive"}
    assert all(("179" in text) == (how != "evasive") for how, text in rewrites)
    refusal = {"instruction": "q", "input": "", "output": "I cannot know that.", "task": "refusal"}
    assert all(rewrite(refusal, rng)[0] != "evasive" for _ in range(50))


def test_built_pairs_record_how_and_train_only_on_the_training_split(entries):
    split = split_entries(entries * 4, seed=1)

    def respond(batch):  # right on even sums, wrong elsewhere
        return [e["output"] if e["output"].isdigit() and int(e["output"]) % 2 == 0 else "no idea" for e in batch]

    pairs = build_pairs(split, respond, n_train=40, n_val=3, seed=1)
    assert build_pairs(split, respond, n_train=40, n_val=3, seed=1) == pairs  # deterministic
    by_split = split_pairs(pairs)
    assert len(by_split.train) == 40 and len(by_split.val) == 3 and len(by_split.test) == len(split.test)
    train_prompts = {e["instruction"] for e in split.train}
    assert all(p["instruction"] in train_prompts for p in by_split.train)
    assert [p["instruction"] for p in by_split.test] == [e["instruction"] for e in split.test]
    for p in pairs:
        answered = p["chosen"].isdigit() and int(p["chosen"]) % 2 == 0
        assert (p["how"] == MODEL_WRONG) == (p["rejected"] == "no idea") == (not answered)
        assert p["chosen"] != p["rejected"] and p["task"]
    assert set(how_counts(pairs)) <= {MODEL_WRONG, "rambling", "impolite", "evasive"}


@pytest.mark.skipif(not SHIPPED_PAIRS.is_file(), reason="the shipped pairs are not built")
def test_the_shipped_pairs_train_on_no_held_out_question():
    pairs = split_pairs(load_pairs(SHIPPED_PAIRS))
    instruct = split_entries(load_entries(SHIPPED_DATA))
    def prompts(items):
        return {(item["instruction"], item["input"]) for item in items}

    assert not prompts(pairs.train) & prompts(instruct.test + instruct.val)
    assert prompts(pairs.test) == prompts(instruct.test[: len(pairs.test)])  # the first test questions, in order
    assert len(pairs.test) == 1000
    assert SHIPPED_PAIRS.stat().st_size < 2**20 and MODEL_WRONG in how_counts(pairs.train)
