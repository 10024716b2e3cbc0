"""Instruction data: reading and saving, the shipped file, the book's download, deduplication and the split."""

from __future__ import annotations

import gzip
import hashlib
import json
import random

import pytest

from gpt.data.download import DownloadError, RemoteFile
from gpt.instruct.data import (
    BOOK_DATA,
    SHIPPED_DATA,
    InstructDataUnavailableError,
    deduplicate,
    download_instruction_data,
    load_entries,
    read_uploaded_entries,
    resolve_data,
    save_entries,
    split_entries,
)
from tests.helpers import LocalServer


def old_split(items: list, seed: int) -> tuple[list, list, list]:
    """The split every instruct model so far was measured on: shuffle, then 85 % train, 10 % test, the rest val."""
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    n_train, n_test = int(len(shuffled) * 0.85), int(len(shuffled) * 0.10)
    return shuffled[:n_train], shuffled[n_train:n_train + n_test], shuffled[n_train + n_test:]


@pytest.mark.parametrize("n", [200, 1100, 27251])
def test_split_is_the_old_85_10_5_cut_and_disjoint(n):
    entries = [{"instruction": f"q{i}", "input": "", "output": str(i)} for i in range(n)]
    split = split_entries(entries, seed=1)
    train, test, val = old_split(entries, seed=1)
    assert (split.train, split.test, split.val) == (tuple(train), tuple(test), tuple(val))
    assert len(split.train) == int(n * 0.85) and len(split.test) == int(n * 0.10)
    ids = [e["instruction"] for e in split.train + split.test + split.val]
    assert sorted(ids) == sorted(e["instruction"] for e in entries)  # every entry once: disjoint and complete
    assert split_entries(entries, seed=1) == split
    assert split_entries(entries, seed=2).train != split.train


def test_the_shipped_split_is_the_tagged_one():
    entries = load_entries(SHIPPED_DATA)
    split = split_entries(entries, seed=7)  # tags win over any seed
    assert (len(split.train), len(split.test), len(split.val)) == (46499, 5502, 2701)  # assets/instruct/README.md
    assert split.test == tuple(e for e in entries if e["split"] == "test")


def test_entries_without_a_split_tag_on_every_one_are_shuffled():
    entries = [{"instruction": f"q{i}", "input": "", "output": str(i), "split": "test"} for i in range(20)]
    assert len(split_entries(entries).test) == 20
    entries[3] = {k: v for k, v in entries[3].items() if k != "split"}
    assert len(split_entries(entries).test) == 2


def test_deduplicate_drops_prompts_with_conflicting_answers():
    entries = [{"instruction": "A?", "input": "", "output": "1"}, {"instruction": "a?", "input": "", "output": "1"},
               {"instruction": "B?", "input": "", "output": "1"}, {"instruction": "B?", "input": "", "output": "2"}]
    assert deduplicate(entries) == [entries[0]]


def test_shipped_dataset_is_valid_and_small():
    assert SHIPPED_DATA.stat().st_size < 3_000_000
    entries = resolve_data("shipped")
    assert len(entries) >= 3000
    assert len({(e["instruction"].lower(), e["input"].lower()) for e in entries}) == len(entries)
    assert all(e["output"].strip() and e["task"] and e["fact"] for e in entries)  # extra keys are kept


def test_save_and_load_entries_round_trip(entries, tmp_path):
    path = save_entries(entries, tmp_path / "d.json.gz")
    assert load_entries(path) == resolve_data(str(path)) == entries
    data = path.read_bytes()
    assert gzip.decompress(data).startswith(b"[\n{")
    assert save_entries(entries, tmp_path / "again.json.gz").read_bytes() == data  # no time or name in the file
    (tmp_path / "bad.json").write_text('[{"input": "no instruction"}]')
    with pytest.raises(ValueError, match="entry 0"):
        load_entries(tmp_path / "bad.json")
    (tmp_path / "cut.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not readable"):
        load_entries(tmp_path / "cut.json.gz")
    with pytest.raises(FileNotFoundError):
        load_entries(tmp_path / "missing.json")


def test_the_book_data_is_pinned_to_a_commit_and_a_hash():
    assert "/main/" not in BOOK_DATA.url and len(BOOK_DATA.url.split("/")[5]) == 40
    assert BOOK_DATA.sha256 == "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944"


def test_download_is_hash_checked_and_cached(entries, tmp_path):
    body = json.dumps(entries).encode()
    with LocalServer(body) as server:
        remote = RemoteFile(server.url + "/data.json", "instruction-data.json", hashlib.sha256(body).hexdigest())
        path = download_instruction_data(remote, tmp_path)
        assert path == tmp_path / "instruction-data.json" and load_entries(path) == entries
        assert download_instruction_data(remote, tmp_path) == path
        assert server.requests == 1  # the second came from the cache
        wrong = RemoteFile(remote.url, "changed.json", "0" * 64)
        with pytest.raises(InstructDataUnavailableError, match="hash"):
            download_instruction_data(wrong, tmp_path)
        assert not (tmp_path / "changed.json").exists()
    gone = RemoteFile(remote.url, "other.json", remote.sha256)
    with pytest.raises(DownloadError, match="could not download .* needs no download"):
        download_instruction_data(gone, tmp_path, timeout=2)
    assert download_instruction_data(remote, tmp_path) == path  # cached: no server needed


def test_an_unpinned_download_that_is_not_instruction_data_is_not_kept(tmp_path):
    with LocalServer(b'{"not": "a list"}') as server, pytest.raises(DownloadError, match="non-empty JSON list"):
        download_instruction_data(RemoteFile(server.url + "/x.json", "x.json"), tmp_path)
    assert not (tmp_path / "x.json").exists()


UPLOADS = [
    ('[{"input": "no instruction", "output": "x"}]', "entry 0 has no 'instruction' field"),
    ('[{"instruction": "Hi", "output": "Hello"}, {"instruction": "No answer"}]', "entry 1 has no 'output' field"),
    ('[{"instruction": "Add.", "input": 3, "output": "4"}]', "entry 0: 'input' must be a string, got a number"),
    ('[{"instruction": ["a"], "output": "b"}]', "entry 0: 'instruction' must be a string, got a list"),
    ('[{"instruction": "Hi", "output": null}]', "'output' must be a string, got null"),
    ('[{"instruction": "Hi", "output": "x", "task": 5}]', "'task' must be a string"),
    ('[{"instruction": "  ", "output": "x"}]', "entry 0: 'instruction' is empty"),
    ('["just text"]', "entry 0 is a string, not an object"),
    ("[]", "got an empty list"),
    ('{"instruction": "Hi", "output": "x"}', "expected a non-empty JSON list .* got an object"),
    ('[{"instruction": "Hi", "output": "x"},]', "is not JSON: .* line 1, column"),
    ("instruction,output\nHi,Hello\n", "is not JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply|is not JSON"),
]


@pytest.mark.parametrize(("text", "message"), UPLOADS, ids=[m[:30] for _, m in UPLOADS])
def test_an_uploaded_file_that_is_not_alpaca_json_is_refused_clearly(tmp_path, text, message):
    (tmp_path / "data.json").write_text(text)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ValueError, match=message) as info:
        read_uploaded_entries(tmp_path / "data.json", max_bytes=2**20)
    assert "\n" not in str(info.value) and str(info.value).startswith("data.json")
    assert sorted(tmp_path.iterdir()) == before


def test_an_upload_must_be_small_and_utf8_and_its_input_is_optional(tmp_path):
    entries = [{"instruction": "Hi", "output": "Hello"}, {"instruction": "Sort.", "input": "b, a", "output": "a, b"}]
    (tmp_path / "ok.json").write_text(json.dumps(entries))
    assert read_uploaded_entries(tmp_path / "ok.json", 2**20) == [{**entries[0], "input": ""}, entries[1]]
    assert "input" not in entries[0]  # the caller's objects are not changed
    with pytest.raises(ValueError, match=r"ok.json is 0.0 MB: the limit is 0 MB"):
        read_uploaded_entries(tmp_path / "ok.json", 10)
    (tmp_path / "latin1.json").write_bytes('[{"instruction": "caf\xe9", "output": "x"}]'.encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_uploaded_entries(tmp_path / "latin1.json", 2**20)
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(entries).encode())
    assert len(read_uploaded_entries(tmp_path / "bom.json", 2**20)) == 2  # a byte-order mark is fine
