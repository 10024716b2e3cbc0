"""Atomic writes and file digests."""

from __future__ import annotations

import hashlib

import pytest

from gpt.files import atomic_path, sha256_of, write_bytes_atomic, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "config.json", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_writes_replace_and_create_folders(tmp_path):
    path = write_bytes_atomic(tmp_path / "deep" / "er" / "blob.bin", b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"new" and len(list(path.parent.iterdir())) == 1


def test_sha256_of_reads_in_chunks(tmp_path):
    data = bytes(range(256)) * 10_000  # more than one read
    path = write_bytes_atomic(tmp_path / "big.bin", data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()
