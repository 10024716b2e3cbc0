"""A model folder as one zip, written for a user to keep and read back as a file from a stranger.

`write_archive` zips the files of a folder that an `ArchiveLayout` names. `read_archive` accepts
exactly those names: it refuses from the zip's listing alone what is unsafe (paths out of the
folder, links, encryption, duplicates, zip bombs), counts every byte it inflates, unpacks into a
temporary sibling folder, lets the caller check what came out (does the model load?) and only then
moves it into place: a refused archive leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpt.files import atomic_path

MAX_MEMBERS = 16  # a longer listing is refused before its names are looked at
MAX_RATIO = 200  # weights deflate about 1.3x and text about 2-3x; a zip bomb inflates thousands of times
CHUNK = 1 << 20


class ArchiveError(ValueError):
    """A file that is not an archive as `write_archive` makes them, or one unsafe to unpack."""


@dataclass(frozen=True)
class ArchiveLayout:
    """What one kind of archive holds: file names (relative, '/'-separated), the ones it must hold, a name."""

    what: str  # "run archive", "classifier archive": for the messages
    members: tuple[str, ...]
    required: tuple[str, ...]


def write_archive(folder: str | Path, dest: str | Path, layout: ArchiveLayout) -> Path:
    """Zip the layout's files present in `folder` into `dest`; the required ones must be there."""
    folder, dest = Path(folder), Path(dest)
    for name in layout.required:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder.name}/{name} missing: not a complete folder for a {layout.what}")
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in layout.members:
            if (folder / name).is_file():
                zf.write(folder / name, arcname=name)
    return dest


def read_archive(archive: str | Path, dest_dir: str | Path, layout: ArchiveLayout,
                 check: Callable[[Path], None], max_bytes: int = 64 * 2**20) -> Path:
    """Unpack `archive` into `dest_dir` (new or empty) once `check(unpacked_folder)` accepts it.

    `check` raises `ArchiveError` for contents that are not what the layout promises. Everything
    else that is wrong raises `ArchiveError` too, with one line saying what.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise ArchiveError(f"{dest_dir.name}: already exists and is not an empty folder")
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _check_listing(infos, layout, max_bytes)
            dest_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".tmp", dir=dest_dir.parent))
            try:
                _extract(zf, infos, tmp, max_bytes)
                check(tmp)
                if dest_dir.exists():
                    dest_dir.rmdir()  # empty, as checked: os.replace cannot replace a folder everywhere
                os.replace(tmp, dest_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ArchiveError(f"{archive.name}: not a zip file, or a damaged one ({err})") from err
    return dest_dir


def _unsafe_name(name: str) -> bool:
    """A name that could land outside the folder: absolute, with '..', a backslash or a drive letter."""
    return name.startswith("/") or "\\" in name or ".." in name.split("/") or re.match(r"[A-Za-z]:", name) is not None


def _check_listing(infos: list[zipfile.ZipInfo], layout: ArchiveLayout, max_bytes: int) -> None:
    """Refuse from the central directory alone, before a byte is written."""
    if len(infos) > MAX_MEMBERS:
        raise ArchiveError(f"{len(infos)} files in the archive, more than {MAX_MEMBERS}: not a {layout.what}")
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if _unsafe_name(name):
            raise ArchiveError(f"unsafe file name {name!r} in the archive (absolute, '..', '\\' or a drive)")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError(f"{name!r} in the archive is a symbolic link")
        if name not in layout.members:
            raise ArchiveError(f"unexpected file {name!r} in the archive; a {layout.what} holds "
                               f"{', '.join(layout.members)}")
        if name in seen:
            raise ArchiveError(f"{name!r} appears twice in the archive")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{name!r} in the archive is encrypted")
        if info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ArchiveError(f"{name!r} inflates {info.file_size / max(info.compress_size, 1):.0f} times "
                               f"(more than {MAX_RATIO}): a zip bomb?")
    missing = [name for name in layout.required if name not in seen]
    if missing:
        raise ArchiveError(f"{missing[0]} missing from the archive: not a {layout.what}")
    declared = sum(info.file_size for info in infos)
    if declared > max_bytes:
        raise ArchiveError(f"the archive unpacks to {declared:,} bytes, more than the {max_bytes:,} allowed")


def _extract(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], folder: Path, max_bytes: int) -> None:
    """Copy the members in chunks, counting the bytes as inflated: a forged listing can understate them."""
    left = max_bytes
    for info in infos:
        target = folder / info.filename
        target.parent.mkdir(exist_ok=True)
        with zf.open(info) as src, target.open("xb") as out:
            while chunk := src.read(CHUNK):
                left -= len(chunk)
                if left < 0:
                    raise ArchiveError(f"the archive unpacks to more than the {max_bytes:,} bytes allowed")
                out.write(chunk)
