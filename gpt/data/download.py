"""Data files fetched once and cached: pooch downloads them, checks their sha256 and keeps them.

One cache root for every dataset: `GPT_CACHE_DIR`, or the user cache (`~/.cache/gpt-playground` on
Linux). A file is only ever cached whole and after its hash matched, so a broken transfer is
never mistaken for data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests

CACHE_ENV = "GPT_CACHE_DIR"


class DownloadError(FileNotFoundError):
    """The file is not cached and could not be downloaded (offline, a server error, a wrong hash)."""


@dataclass(frozen=True)
class RemoteFile:
    """A data file on the web: where it is, what it must hash to, and its name in the cache."""

    url: str
    filename: str
    sha256: str | None = None  # None: not pinned (the server's file is taken as it is)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("gpt-playground"))


def fetch_cached(remote: RemoteFile, cache: str | Path | None = None, timeout: float = 30.0,
                 processor: Callable | None = None) -> Path:
    """The local path of `remote`: from the cache, or downloaded into it (hash-checked).

    `processor` is a pooch post-processor (e.g. `pooch.Unzip`); its result's first path is returned.
    """
    known_hash = f"sha256:{remote.sha256}" if remote.sha256 else None
    try:
        result = pooch.retrieve(remote.url, known_hash=known_hash, fname=remote.filename,
                                path=Path(cache) if cache is not None else cache_dir(), processor=processor,
                                downloader=pooch.HTTPDownloader(timeout=timeout, progressbar=False))
    except (requests.RequestException, OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:300]
        raise DownloadError(f"could not download {remote.url} ({type(err).__name__}: {reason})") from err
    return Path(result[0] if isinstance(result, list) else result)
