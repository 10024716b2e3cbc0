"""Build the compact SpamAssassin copy, `assets/spam/spamassassin.tsv.xz`, from `offline-corpora.sh`'s output.

`python -m tools.build_spam_data SRC` reads `SRC/spamassassin.tsv` (`label<TAB>group<TAB>subject<TAB>body`,
cells escaped) and writes one `label<TAB>group<TAB>text` line per mail, in the same order, where the text
is `Subject: ...`, a newline, then the body with its whitespace collapsed, cut at a word boundary to at
most 600 characters: the classifier reads 256 tokens at most, about 600 characters of mail. Mails that
become identical once cut are kept once, so no text is in two splits. Same input, same bytes (xz -9).
Provenance and licence: `assets/spam/README.md`; `gpt/classify/data.py` reads the file.
"""

from __future__ import annotations

import argparse
import lzma
from collections.abc import Iterator
from pathlib import Path

from gpt.classify.data import LABELS, SPAMASSASSIN_COPY, escape_cell, unescape_cell

MAX_CHARS = 600


def compact(subject: str, body: str, max_chars: int = MAX_CHARS) -> str:
    text = f"Subject: {' '.join(subject.split())}\n{' '.join(body.split())}".strip()
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1].rsplit(" ", 1)[0]  # the +1: a word that ends exactly at the limit stays whole
    return cut if len(cut) > max_chars // 2 else text[:max_chars]  # one huge "word" (a URL) is cut anyway


def compact_mails(lines: list[str], origin: str) -> Iterator[tuple[str, str, str]]:
    """(label, group, text) per mail of the source TSV's lines, the first mail of each text only."""
    seen: set[str] = set()
    for line_no, line in enumerate(lines, 1):
        cells = line.split("\t")
        if len(cells) != 4 or cells[0] not in LABELS:
            raise ValueError(f"{origin}: line {line_no} is not '<ham|spam><TAB><group><TAB><subject><TAB><body>'")
        label, group, subject, body = cells
        text = compact(unescape_cell(subject), unescape_cell(body))
        if text not in seen:
            seen.add(text)
            yield label, group, text


def build(src: Path, out: Path = SPAMASSASSIN_COPY) -> tuple[int, int]:
    """Write the compact copy; returns how many mails were read and how many were kept."""
    source = src / "spamassassin.tsv"
    lines = source.read_text(encoding="utf-8").rstrip("\n").split("\n")
    kept = list(compact_mails(lines, str(source)))
    data = "".join(f"{label}\t{group}\t{escape_cell(text)}\n" for label, group, text in kept).encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(lzma.compress(data, preset=9))
    return len(lines), len(kept)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.build_spam_data", description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="the folder offline-corpora.sh wrote (it holds spamassassin.tsv)")
    parser.add_argument("--out", type=Path, default=SPAMASSASSIN_COPY, help="default: the shipped file")
    args = parser.parse_args(argv)
    read, kept = build(args.src, args.out)
    print(f"{args.out}: {kept:,} of {read:,} mails ({read - kept} identical once cut), "
          f"{args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
