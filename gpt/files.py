"""Where the shipped files are; files written so that a crash never leaves half of one; file digests.

Every write goes to a temporary name beside the target and is moved over it with `os.replace`,
which is atomic on one file system: a reader (or a resumed run) sees the old file or the new one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"  # data and small models that ship with the app
SHIPPED_MODELS = ASSETS / "models"
SHIPPED_BASE = SHIPPED_MODELS / "base"  # the default base model of every finetuning


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write to; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def sha256_of(path: str | Path) -> str:
    """The file's sha256, read in chunks (weights files can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
