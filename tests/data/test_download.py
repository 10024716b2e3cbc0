"""Cached, hash-checked downloads (from a server on 127.0.0.1)."""

from __future__ import annotations

import hashlib

import pytest

from gpt.data.download import DownloadError, RemoteFile, cache_dir, fetch_cached
from tests.helpers import LocalServer

BODY = b"label\ttext\nham\tsee you soon\n"


def test_the_first_call_downloads_and_the_next_ones_read_the_cache(tmp_path):
    with LocalServer(BODY) as server:
        remote = RemoteFile(server.url + "/data.tsv", "data.tsv", hashlib.sha256(BODY).hexdigest())
        path = fetch_cached(remote, tmp_path)
        assert path == tmp_path / "data.tsv" and path.read_bytes() == BODY
        assert fetch_cached(remote, tmp_path) == path
        assert server.requests == 1


def test_a_wrong_hash_is_refused_and_nothing_is_cached(tmp_path):
    with LocalServer(BODY) as server:
        remote = RemoteFile(server.url + "/data.tsv", "data.tsv", "0" * 64)
        with pytest.raises(DownloadError, match="data.tsv"):
            fetch_cached(remote, tmp_path)
    assert not (tmp_path / "data.tsv").exists()


def test_an_unreachable_server_is_a_download_error(tmp_path):
    with LocalServer(BODY) as server:
        url = server.url
    with pytest.raises(DownloadError, match="could not download"):
        fetch_cached(RemoteFile(url + "/gone.tsv", "gone.tsv"), tmp_path, timeout=2)


def test_the_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
