"""Instruction data: entries in the book's shape, read, checked, saved, deduplicated and split.

Every entry is `{"instruction", "input", "output"}`, optionally with a `task` tag so that the
evaluation can report scores per kind of question, and a `fact` naming what the answer states (e.g.
"plural:mouse"), so that it can tell held-out questions whose fact training asked in other words.
Two datasets are known by name: `shipped`, the project's offline dataset in `assets/instruct/`
(built by `python -m tools.build_instruct_data`), and `book`, the book's 1,100-entry
instruction-data.json, downloaded once (pinned to a commit and its sha256) and then read from the cache.
"""

from __future__ import annotations

import gzip
import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from gpt.data.corpus import read_text
from gpt.data.download import DownloadError, RemoteFile, fetch_cached
from gpt.data.splits import PARTS, Split, seeded_split
from gpt.files import ASSETS, write_bytes_atomic

SHIPPED_DATA = ASSETS / "instruct" / "instruction-data.json.gz"
BOOK_COMMIT = "28c65cdfbc3338e2e040016eea4b7fdf556e4d57"  # rasbt/LLMs-from-scratch, pinned: each file with its hash


def book_file(path: str, sha256: str) -> RemoteFile:
    """A file of the book's repository at the pinned commit, and the sha256 it must have."""
    url = f"https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/{BOOK_COMMIT}/{path}"
    return RemoteFile(url=url, filename=path.rpartition("/")[2], sha256=sha256)


BOOK_DATA = book_file("ch07/01_main-chapter-code/instruction-data.json",
                      "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944")
FIELDS = ("instruction", "input", "output")
# The book's order and sizes (train, then test, then validation), so that the shipped instruct model
# is always measured on the same test entries.
SPLIT_FRACTIONS = {"train": 0.85, "test": 0.10, "val": 0.05}
SPLIT_SEED = 123

Entry = dict[str, str]


class InstructDataUnavailableError(DownloadError):
    """The book's dataset is neither cached nor downloadable (offline, or the file changed)."""


OPTIONAL_TEXT = ("input", "task", "fact", "split")  # strings when present; a missing input is an empty one
JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
              bool: "true or false", type(None): "null"}
EXAMPLE_ENTRY = '{"instruction": "...", "input": "... (optional)", "output": "..."}'


def _json_type(value: object) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def validate_entries(entries: object, source: str | Path) -> list[Entry]:
    """Check the book's shape: a non-empty list of objects with string instruction and output, and an
    optional string input (missing: empty). Returns the entries with `input` filled in; the given
    objects are not changed. Each message names the entry and the field that is wrong."""
    if not isinstance(entries, list) or not entries:
        got = "an empty list" if isinstance(entries, list) else _json_type(entries)
        raise ValueError(f"{source}: expected a non-empty JSON list of instruction entries like {EXAMPLE_ENTRY}, "
                         f"got {got}")
    checked = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{source}: entry {i} is {_json_type(entry)}, not an object like {EXAMPLE_ENTRY}")
        for key in ("instruction", "output"):
            if key not in entry:
                raise ValueError(f"{source}: entry {i} has no {key!r} field (each entry needs 'instruction' and "
                                 f"'output'; 'input' is optional)")
        for key in ("instruction", "output", *OPTIONAL_TEXT):
            if key in entry and not isinstance(entry[key], str):
                raise ValueError(f"{source}: entry {i}: {key!r} must be a string, got {_json_type(entry[key])}")
        if not entry["instruction"].strip():
            raise ValueError(f"{source}: entry {i}: 'instruction' is empty")
        checked.append(entry if "input" in entry else {**entry, "input": ""})
    return checked


def read_json(path: Path, what: str) -> object:
    """A JSON file, gzip-compressed if the name ends in .gz; `what` names the data when the file is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(read_text(path))
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not readable as JSON ({err})") from err


def load_entries(path: str | Path) -> list[Entry]:
    """Read a JSON list of entries, gzip-compressed if the name ends in .gz."""
    return validate_entries(read_json(Path(path), "instruction data"), Path(path))


def read_uploaded_entries(path: str | Path, max_bytes: int) -> list[Entry]:
    """Entries from a file someone uploaded: at most `max_bytes`, UTF-8 JSON in the Alpaca shape.

    Every refusal is a one-line ValueError that says what to fix; nothing is written.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path.name} is {size / 2**20:.1f} MB: the limit is {max_bytes / 2**20:.0f} MB.")
    try:
        entries = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text: save it as UTF-8 JSON.") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path.name} is not JSON: {err.msg} at line {err.lineno}, column {err.colno}. "
                         f"Expected a list of entries like {EXAMPLE_ENTRY}.") from None
    except RecursionError:
        raise ValueError(f"{path.name}: the JSON is nested too deeply to be a list of entries.") from None
    return validate_entries(entries, path.name)


def save_entries(entries: Sequence[Entry], path: str | Path) -> Path:
    """Write entries as gzip-compressed JSON, one entry a line (readable diffs), reproducibly (mtime 0)."""
    text = "[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries) + "\n]\n"
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as f:  # no name, no time: same bytes
        f.write(text.encode("utf-8"))
    return write_bytes_atomic(path, buffer.getvalue())


def fetch_book_file(remote: RemoteFile, cache: str | Path | None, timeout: float, check: Callable[[Path], object],
                    unavailable: type[DownloadError], offline: str) -> Path:
    """A file of the book's, downloaded once (hash-checked, then read by `check`) and then read from the cache;
    else `unavailable`, saying why and what works `offline`."""
    try:
        return fetch_cached(remote, cache, timeout, check=check)
    except DownloadError as err:
        raise unavailable(f"{err}; {offline}") from err


def named_file(name_or_path: str, shipped: Path, download: Callable[[], Path]) -> Path:
    """The file a dataset's name stands for: `shipped` (offline), `book` (`download`ed, cached) or a path."""
    if name_or_path == "shipped":
        return shipped
    return download() if name_or_path == "book" else Path(name_or_path)


def download_instruction_data(remote: RemoteFile = BOOK_DATA, cache: str | Path | None = None,
                              timeout: float = 30) -> Path:
    """The book's instruction-data.json: downloaded once (hash-checked), then read from the cache folder."""
    return fetch_book_file(remote, cache, timeout, load_entries, InstructDataUnavailableError,
                           "the shipped data (--data shipped) needs no download")


def resolve_data(name_or_path: str) -> list[Entry]:
    """`shipped` (the offline dataset), `book` (downloaded, cached) or a path to a .json / .json.gz file."""
    return load_entries(named_file(name_or_path, SHIPPED_DATA, download_instruction_data))


def split_entries(entries: Sequence[Entry], seed: int = SPLIT_SEED) -> Split[Entry]:
    """The instruction split: the entries' own `split` tags where every entry has one (the shipped data
    fixes its split, so that entries added to it never move an old test question into training), else
    a seeded shuffle, then 85 % train / 10 % test / 5 % validation (the book's cuts)."""
    tags = {e.get("split") for e in entries}
    if tags <= set(PARTS):
        return Split(**{part: tuple(e for e in entries if e["split"] == part) for part in PARTS})
    return seeded_split(entries, SPLIT_FRACTIONS, seed)


def earlier_turns(entry: Entry) -> int:
    """How many earlier user turns an entry's input holds, written as the Chat tab writes them."""
    return sum(line.startswith("User: ") for line in entry.get("input", "").splitlines())


def deduplicate(entries: Iterable[Entry]) -> list[Entry]:
    """One entry per prompt: exact repeats collapse; a prompt seen with two different answers is dropped."""
    by_prompt: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for e in entries:
        by_prompt[(e["instruction"].strip().lower(), e["input"].strip().lower())].append(e)
    return [group[0] for group in by_prompt.values() if len({e["output"].strip().lower() for e in group}) == 1]
