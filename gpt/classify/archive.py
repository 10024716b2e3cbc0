"""A classifier folder as one zip: what a user downloads from the app and uploads again, maybe elsewhere.

The zip holds the four files of a classifier folder under fixed names: `classifier.json`,
`classifier.safetensors` (only the trained tensors), `test_metrics.json` and `MODEL_CARD.md`. Never
the base model: the classifier names its base (the app's name, e.g. `base`, `run:…` or `gpt2-small`)
and its sha256, and reading the zip finds that base here and checks it. Reading is as careful as
`gpt.pretrain.archive`'s: those names only, every inflated byte counted, unpacked into a temporary
sibling folder that is moved into place only once the classifier has loaded; a refused zip leaves
nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from gpt.classify.classifier import (
    CLASSIFIER_CONFIG,
    CLASSIFIER_WEIGHTS,
    METRICS_FILE,
    ClassifierError,
    load_classifier,
    read_classifier_config,
)
from gpt.classify.finetune import CARD_FILE
from gpt.files import atomic_path, write_text_atomic
from gpt.pretrain.archive import MAX_RATIO, ArchiveError, _extract, _unsafe_name

REQUIRED = (CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS)
MEMBERS = (*REQUIRED, METRICS_FILE, CARD_FILE)

# base ref (the `base` of classifier.json) -> the base here: a checkpoint folder or a GPT-2 name
BaseFinder = Callable[[dict], "str | Path"]


def write_classifier_archive(directory: str | Path, dest: str | Path) -> Path:
    """Zip a classifier folder's files (those present of MEMBERS) into `dest`."""
    directory, dest = Path(directory), Path(dest)
    for name in REQUIRED:
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} missing: not a classifier folder")
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in MEMBERS:
            if (directory / name).is_file():
                zf.write(directory / name, arcname=name)
    return dest


def read_classifier_archive(archive: str | Path, dest_dir: str | Path, find_base: BaseFinder,
                            max_bytes: int = 64 * 2**20) -> Path:
    """Unpack a classifier zip into `dest_dir` (new or empty), its base found by `find_base` and checked.

    `find_base` gets the recorded base (a dict with `name`, `pretrained` or `checkpoint`, and a sha256)
    and returns where that base is on this machine, or raises ValueError saying it is not. The stored
    pointer to the base is rewritten to that place; the sha256 check of `load_classifier` is kept.
    Raises `ArchiveError` (one line) for anything else than such a zip of a classifier that loads.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise ArchiveError(f"{dest_dir}: already exists and is not an empty folder")
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _check_listing(infos, max_bytes)
            dest_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".tmp", dir=dest_dir.parent))
            try:
                _extract(zf, infos, tmp, max_bytes)
                _point_at_base(tmp, dest_dir, find_base)
                if dest_dir.exists():
                    dest_dir.rmdir()  # empty, as checked
                os.replace(tmp, dest_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ArchiveError(f"{archive.name}: not a zip file, or a damaged one ({err})") from err
    return dest_dir


def _check_listing(infos: list[zipfile.ZipInfo], max_bytes: int) -> None:
    """Refuse from the central directory alone, before a byte is written."""
    if len(infos) > len(MEMBERS):
        raise ArchiveError(f"{len(infos)} files in the archive, more than a classifier has ({len(MEMBERS)})")
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if _unsafe_name(name) or stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError(f"unsafe entry {name!r} in the archive (a path outside it, or a link)")
        if name not in MEMBERS:
            raise ArchiveError(f"unexpected file {name!r} in the archive; a classifier archive holds "
                               f"{', '.join(MEMBERS)}")
        if name in seen or info.flag_bits & 0x1:
            raise ArchiveError(f"{name!r} appears twice in the archive, or is encrypted")
        seen.add(name)
        if info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ArchiveError(f"{name!r} inflates {info.file_size / max(info.compress_size, 1):.0f} times "
                               f"(more than {MAX_RATIO}): a zip bomb?")
    missing = [name for name in REQUIRED if name not in seen]
    if missing:
        raise ArchiveError(f"{missing[0]} missing from the archive: not a classifier archive")
    declared = sum(info.file_size for info in infos)
    if declared > max_bytes:
        raise ArchiveError(f"the archive unpacks to {declared:,} bytes, more than the {max_bytes:,} allowed")


def _point_at_base(folder: Path, final: Path, find_base: BaseFinder) -> None:
    """Find the recorded base here, record where it is (as seen from `final`), and load the classifier."""
    try:
        config = read_classifier_config(folder)
        base = find_base(config["base"])
    except ClassifierError as err:
        raise ArchiveError(str(err).replace(str(folder), "the archive")) from err
    except ValueError as err:  # the base is not on this server: the finder says which and why
        raise ArchiveError(str(err)) from err
    raw = json.loads((folder / CLASSIFIER_CONFIG).read_text(encoding="utf-8"))
    if not raw["base"].get("pretrained"):
        raw["base"]["checkpoint"] = os.path.relpath(Path(base).resolve(), final.resolve())
    write_text_atomic(folder / CLASSIFIER_CONFIG, json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
    try:
        load_classifier(folder)
    except (ClassifierError, FileNotFoundError, ValueError) as err:
        raise ArchiveError(f"the classifier does not load here: {err}".replace(str(folder), "the archive")) from err
