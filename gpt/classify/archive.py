"""A classifier folder as one zip: what a user downloads from the app and uploads again, maybe elsewhere.

The zip holds the four files of a classifier folder under fixed names: `classifier.json`,
`classifier.safetensors` (only the trained tensors), `test_metrics.json` and `MODEL_CARD.md`. Never
the base model: the classifier names its base (the app's name, e.g. `base`, `run:…` or `gpt2-small`)
and its sha256, and reading the zip finds that base here and checks it. Reading is reading a file
from a stranger (`gpt.archive`): it is moved into place only once the classifier has loaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from gpt.archive import ArchiveError, ArchiveLayout, read_archive, write_archive
from gpt.checkpoint import CARD_FILE
from gpt.classify.classifier import (
    CLASSIFIER_CONFIG,
    CLASSIFIER_WEIGHTS,
    METRICS_FILE,
    ClassifierError,
    load_classifier,
    read_classifier_config,
)
from gpt.files import write_text_atomic

CLASSIFIER_ARCHIVE = ArchiveLayout(
    "classifier archive",
    members=(CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS, METRICS_FILE, CARD_FILE),
    required=(CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS),
)
MEMBERS = CLASSIFIER_ARCHIVE.members

# base ref (the `base` of classifier.json) -> the base here: a checkpoint folder or a GPT-2 name
BaseFinder = Callable[[dict], "str | Path"]


def write_classifier_archive(directory: str | Path, dest: str | Path) -> Path:
    """Zip a classifier folder's files into `dest`."""
    return write_archive(directory, dest, CLASSIFIER_ARCHIVE)


def read_classifier_archive(archive: str | Path, dest_dir: str | Path, find_base: BaseFinder,
                            max_bytes: int = 64 * 2**20) -> Path:
    """Unpack a classifier zip into `dest_dir` (new or empty), its base found by `find_base` and checked.

    `find_base` gets the recorded base (a dict with `name`, `pretrained` or `checkpoint`, and a sha256)
    and returns where that base is on this machine, or raises ValueError saying it is not. The stored
    pointer to the base is rewritten to that place; the sha256 checks of `load_classifier` are kept, and its
    stored tensors must carry theirs.
    Raises `ArchiveError` (one line) for anything else than such a zip of a classifier that loads.
    """
    dest_dir = Path(dest_dir)
    return read_archive(archive, dest_dir, CLASSIFIER_ARCHIVE,
                        lambda folder: _point_at_base(folder, dest_dir, find_base), max_bytes)


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
        load_classifier(folder, require_checksums=True)
    except (ClassifierError, FileNotFoundError, ValueError) as err:
        said = str(err).replace(str(folder), "the archive").replace(f"{folder.name}/", "the archive/")  # no tmp names
        raise ArchiveError(f"the classifier does not load here: {said}") from err
