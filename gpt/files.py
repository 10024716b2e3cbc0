"""Where the shipped files are; files written so that a crash never leaves half of one; file digests.

Every write goes to a temporary name beside the target and is moved over it with `os.replace`,
which is atomic on one file system: a reader (or a resumed run) sees the old file or the new one.
A process killed mid-write (kill -9) leaves its temporary behind: `remove_stale_temporaries` clears
those whose writer is gone.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"  # data and small models that ship with the app
SHIPPED_MODELS = ASSETS / "models"
SHIPPED_BASE = SHIPPED_MODELS / "base"  # the default base model of every finetuning
TEMPORARY = re.compile(r"\.(.+)\.(\d+)\.tmp")  # `atomic_path`'s name: .NAME.<pid of the writer>.tmp


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write to; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # the pid: `remove_stale_temporaries` reads it
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


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this machine (signal 0 checks without sending anything)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except (OverflowError, ValueError):  # no pid is that large
        return False
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files `atomic_path` left in `folder` when their writer died (kill -9); the paths removed.

    A live process's temporary is kept: several processes of a data-parallel run write into one folder.
    """
    folder = Path(folder)
    removed = []
    for path in sorted(folder.glob(".*.tmp")) if folder.is_dir() else []:
        match = TEMPORARY.fullmatch(path.name)
        if match and path.is_file() and not process_alive(int(match[2])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
