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
from zipfile import BadZipFile

import pooch
import requests

CACHE_ENV = "GPT_CACHE_DIR"
pooch.get_logger().setLevel("WARNING")  # its "Downloading ..." and "known_hash" lines are not for our users


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
                 processor: Callable | None = None, check: Callable[[Path], object] | None = None) -> Path:
    """The local path of `remote`: from the cache, or downloaded into it (hash-checked).

    `processor` is a pooch post-processor (e.g. `pooch.Unzip`); its result's first path is returned.
    `check(path)` raises ValueError for a file that is not what it should be. A download that fails
    the hash, the processor or the check is deleted, so the next call downloads again instead of
    failing on a bad cached copy forever.
    """
    root = Path(cache) if cache is not None else cache_dir()
    known_hash = f"sha256:{remote.sha256}" if remote.sha256 else None
    try:
        downloader = pooch.HTTPDownloader(timeout=timeout, progressbar=False)
        result = pooch.retrieve(remote.url, known_hash=known_hash, fname=remote.filename, path=root,
                                processor=processor, downloader=downloader)
        path = Path(result[0] if isinstance(result, list) else result)  # an Unzip that found nothing: IndexError
        if check is not None:
            check(path)
    except (requests.RequestException, OSError, ValueError, IndexError, BadZipFile) as err:
        (root / remote.filename).unlink(missing_ok=True)
        reason = " ".join(str(err).split())[:300] or "the file is not what was expected"
        raise DownloadError(f"could not download {remote.url} ({type(err).__name__}: {reason})") from err
    return path
