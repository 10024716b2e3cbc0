"""What several UI test files share (no tests of its own; the `runner` fixture is in tests/ui/conftest.py):
a request from a named session, a dropdown's choices, a topics CSV for the Spam tab's finetune and
Alpaca-format entries for the Chat tab's."""

from __future__ import annotations

import types
from pathlib import Path


def session(name: str) -> types.SimpleNamespace:
    """A request from session `name` (session names are at least 8 characters, like Gradio's)."""
    return types.SimpleNamespace(session_hash=name)


def choices(dropdown) -> list[str]:
    return [value for value, _ in dropdown.choices]


# -- the Spam tab's finetune: a table of three topics --------------------------------------------------

TOPICS = {
    "cooking": ["Simmer the {} sauce for ten minutes", "Chop the {} and fry it in butter", "Bake the {} bread at 200"],
    "sport": ["The {} team won the match", "She ran the {} race in record time", "A late goal for the {} side"],
    "travel": ["Our {} flight leaves at noon", "Book a hotel near the {} station", "The {} train was delayed again"],
}
WORDS = ("red", "old", "north", "big")


def write_table(path: Path, header: bool = True) -> Path:
    """A CSV of three topics, 12 messages each: enough for a 70/10/20 split within each class."""
    rows = [(t.format(w), label) for label, templates in TOPICS.items() for t in templates for w in WORDS]
    lines = (["text,label"] if header else []) + [f'"{text}",{label}' for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the Chat tab's finetune -------------------------------------------------------------------------

# 60 entries in two kinds: 51 train, 6 held out, 3 validation; a random tiny model answers them fast.
ENTRIES = [{"instruction": f"What is {a} + {b}?", "output": str(a + b), "task": "addition"} for a in range(5)
           for b in range(10)] + [{"instruction": "Name a colour.", "input": "", "output": c, "task": "colour"}
                                  for c in ("red", "blue", "green", "white", "black", "pink", "grey", "gold",
                                            "teal", "navy")]
