"""Build the modern pretraining corpora in `assets/corpora/` from `offline-corpora.sh`'s output.

`python -m tools.build_corpora SRC` reads the folder that `../shared/tools/offline-corpora.sh SRC`
wrote and writes one `<source>.jsonl.xz` per source: one JSON object `{"name", "text"}` per line, a
document each, in a fixed order, so the same input gives the same bytes. What it keeps of each
source (and why) is in `assets/corpora/README.md`; `gpt/data/corpus.py` reads the files.
"""

from __future__ import annotations

import argparse
import csv
import json
import lzma
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from gpt.data.corpus import CORPORA

SOTU_FIRST_YEAR = 1946  # the post-war addresses: modern English, a quarter of the collection's bytes
FORTUNES_PER_DOCUMENT = 40
GLOSSES_PER_DOCUMENT = 100
PAIRS_PER_DOCUMENT = 20
HEADWORD = re.compile(r"[a-z]+")


def wiki(src: Path) -> Iterator[tuple[str, str]]:
    """One document per article: its title line, a blank line, the lead paragraph."""
    blocks = src.joinpath("wiki_vital.txt").read_text("utf-8").strip().split("\n\n")
    for title, extract in zip(blocks[0::2], blocks[1::2], strict=True):
        yield f"wiki-{title}", f"{title}\n\n{extract}"


def recipes(src: Path) -> Iterator[tuple[str, str]]:
    for block in src.joinpath("recipes.txt").read_text("utf-8").strip().split("\n\n"):
        yield f"recipes-{block.split(chr(10), 1)[0]}", block.strip()


def sotu(src: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(src.joinpath("sotu").glob("*.txt")):
        if int(path.stem.split("-")[0]) >= SOTU_FIRST_YEAR:
            yield f"sotu-{path.stem}", path.read_text("utf-8").strip()


def brown(src: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(src.joinpath("brown").glob("*.txt")):
        yield f"brown-{path.stem}", path.read_text("utf-8").strip()


def chunks(items: list[str], size: int, prefix: str, sep: str) -> Iterator[tuple[str, str]]:
    for start in range(0, len(items), size):
        yield f"{prefix}-{start // size:04d}", sep.join(items[start:start + size])


def glosses(src: Path) -> Iterator[tuple[str, str]]:
    """The first gloss of every single-word headword (44,556 of 117,659 synsets), 100 lines a document."""
    seen: set[str] = set()
    lines = []
    for line in src.joinpath("wordnet_glosses.txt").read_text("utf-8").splitlines():
        head = line.split(":", 1)[0].split(", ")[0]
        if HEADWORD.fullmatch(head) and head not in seen:
            seen.add(head)
            lines.append(line)
    yield from chunks(lines, GLOSSES_PER_DOCUMENT, "glosses", "\n")


def fortunes(src: Path) -> Iterator[tuple[str, str]]:
    """Cookies with their indentation stripped, 40 to a document, separated by blank lines."""
    entries = []
    for entry in src.joinpath("fortunes.txt").read_text("utf-8").split("\n%\n"):
        lines = [" ".join(line.split()) for line in entry.strip("%\n").splitlines()]
        text = "\n".join(line for line in lines if line)
        if text:
            entries.append(text)
    yield from chunks(entries, FORTUNES_PER_DOCUMENT, "fortunes", "\n\n")


def chatterbot(src: Path) -> Iterator[tuple[str, str]]:
    """Each prompt and its response as two lines of dialogue, 20 exchanges to a document."""
    with src.joinpath("chatterbot.tsv").open(encoding="utf-8", newline="") as f:
        pairs = [f"{unescape(q)}\n{unescape(a)}" for q, a in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    yield from chunks(pairs, PAIRS_PER_DOCUMENT, "chatterbot", "\n\n")


def unescape(cell: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], cell)


SOURCES = {"wiki": wiki, "recipes": recipes, "sotu": sotu, "brown": brown, "glosses": glosses,
           "fortunes": fortunes, "chatterbot": chatterbot}


def write_jsonl_xz(path: Path, docs: Iterable[tuple[str, str]]) -> tuple[int, int]:
    lines = [json.dumps({"name": name, "text": text}, ensure_ascii=False) for name, text in docs]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    return len(lines), sum(len(json.loads(line)["text"].encode("utf-8")) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("src", type=Path, help="the folder offline-corpora.sh wrote")
    parser.add_argument("--out", type=Path, default=CORPORA)
    parser.add_argument("sources", nargs="*", choices=[[], *SOURCES], help="which sources (default: all)")
    args = parser.parse_args()
    for name in args.sources or SOURCES:
        path = args.out / f"{name}.jsonl.xz"
        n_docs, n_bytes = write_jsonl_xz(path, SOURCES[name](args.src))
        size = path.stat().st_size / 1e6
        print(f"{path}: {n_docs:,} documents, {n_bytes / 1e6:.2f} MB of text, {size:.2f} MB on disk")


if __name__ == "__main__":
    main()
