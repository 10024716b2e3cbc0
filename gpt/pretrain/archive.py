"""A pretraining run as one zip: what a user downloads from the app and uploads again later.

The zip holds the exported model folder (with a chat model's held-out scores, `eval.json`), the log
and the loss figure's data, under fixed names;
never the training state or the token files (large, and only a resume needs them). Reading one is
reading a file from a stranger, so `read_run_archive` accepts exactly those names, counts every
byte it inflates, unpacks into a temporary sibling folder and moves it into place only once the
checkpoint has loaded: a refused archive leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path

from gpt.checkpoint import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, CheckpointError, load_checkpoint, read_config
from gpt.files import atomic_path
from gpt.pretrain.runs import CARD_FILE
from gpt.pretrain.state import LOG_FILE

MODEL_DIR = "model"
REQUIRED = (f"{MODEL_DIR}/{CONFIG_FILE}", f"{MODEL_DIR}/{WEIGHTS_FILE}")
MODEL_EVAL = f"{MODEL_DIR}/eval.json"  # a chat model's held-out scores (gpt.instruct.evaluate.MODEL_EVAL_FILE)
MEMBERS = (*REQUIRED, f"{MODEL_DIR}/{TOKENIZER_FILE}", f"{MODEL_DIR}/metrics.json", MODEL_EVAL, LOG_FILE,
           "loss.json", CARD_FILE)
MAX_MEMBERS = 16  # a longer listing is refused before its names are looked at
MAX_RATIO = 200  # weights deflate about 1.3x and text about 2-3x; a zip bomb inflates thousands of times
CHUNK = 1 << 20


class ArchiveError(ValueError):
    """A file that is not a run archive as `write_run_archive` makes them, or one unsafe to unpack."""


def write_run_archive(run_dir: str | Path, dest: str | Path) -> Path:
    """Zip the run's model folder, log, loss figure data, model card and scores (when present) into `dest`."""
    run_dir, dest = Path(run_dir), Path(dest)
    for name in REQUIRED:
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name} missing: export the model before archiving the run")
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in MEMBERS:
            if (run_dir / name).is_file():
                zf.write(run_dir / name, arcname=name)
    return dest


def read_run_archive(archive: str | Path, dest_dir: str | Path, max_bytes: int = 64 * 2**20) -> Path:
    """Unpack a run archive into `dest_dir` (new or empty) and return its checkpoint folder, `dest_dir/model`.

    Raises `ArchiveError` (one line) for anything but an archive of a loadable checkpoint within `max_bytes`.
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
                _check_checkpoint(tmp / MODEL_DIR, max_bytes)
                if dest_dir.exists():
                    dest_dir.rmdir()  # empty, as checked: os.replace cannot replace a folder everywhere
                os.replace(tmp, dest_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ArchiveError(f"{archive.name}: not a zip file, or a damaged one ({err})") from err
    return dest_dir / MODEL_DIR


def _unsafe_name(name: str) -> bool:
    """A name that could land outside the folder: absolute, with '..', a backslash or a drive letter."""
    return name.startswith("/") or "\\" in name or ".." in name.split("/") or re.match(r"[A-Za-z]:", name) is not None


def _check_listing(infos: list[zipfile.ZipInfo], max_bytes: int) -> None:
    """Refuse from the central directory alone, before a byte is written."""
    if len(infos) > MAX_MEMBERS:
        raise ArchiveError(f"{len(infos)} files in the archive, more than {MAX_MEMBERS}: not a run archive")
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if _unsafe_name(name):
            raise ArchiveError(f"unsafe file name {name!r} in the archive (absolute, '..', '\\' or a drive)")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError(f"{name!r} in the archive is a symbolic link")
        if name not in MEMBERS:
            raise ArchiveError(f"unexpected file {name!r} in the archive; a run archive holds {', '.join(MEMBERS)}")
        if name in seen:
            raise ArchiveError(f"{name!r} appears twice in the archive")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{name!r} in the archive is encrypted")
        if info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ArchiveError(f"{name!r} inflates {info.file_size / max(info.compress_size, 1):.0f} times "
                               f"(more than {MAX_RATIO}): a zip bomb?")
    missing = [name for name in REQUIRED if name not in seen]
    if missing:
        raise ArchiveError(f"{missing[0]} missing from the archive")
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


def _check_checkpoint(model_dir: Path, max_bytes: int) -> None:
    """Load the checkpoint, refusing first a config whose model would dwarf the archive (memory to build it)."""
    try:
        cfg = read_config(model_dir)["model"]
        if cfg.n_elements() > max_bytes:
            raise ArchiveError(f"{MODEL_DIR}/{CONFIG_FILE} describes a model of {cfg.n_elements():,} numbers, "
                               f"more than an archive of {max_bytes:,} bytes can hold")
        load_checkpoint(model_dir)
    except CheckpointError as err:
        raise ArchiveError(f"the archive's model does not load: {err}".replace(str(model_dir), MODEL_DIR)) from err
