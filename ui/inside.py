"""What the views inside the model share: where their code is, a cut text, a second model (token labels: `ui.labels`).

Each view (`ui/*_view.py`) is built from inside the tab it belongs to and calls one library
function; `where` names that function and its file, so a student can open it beside the picture.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from gpt.checkpoint import Checkpoint
from gpt.tokenizer import Tokenizer, TokenPiece
from ui.common import clip_chars, require_text
from ui.registry import SHIPPED_LANGUAGE_MODELS, ModelRegistry

REPO = Path(__file__).resolve().parent.parent


def where(*functions: Callable) -> str:
    """'Where the code is: `gpt.lens.logit_lens` (gpt/lens.py:66)': each function by module, name, file and line."""
    names = []
    for fn in functions:
        fn = inspect.unwrap(fn)
        file = Path(inspect.getsourcefile(fn)).resolve()
        path = file.relative_to(REPO) if file.is_relative_to(REPO) else file.name
        lines, first = inspect.getsourcelines(fn)  # from its first decorator: name the `def` line
        line = first + next(i for i, text in enumerate(lines) if text.lstrip().startswith(("def ", "class ")))
        names.append(f"`{fn.__module__}.{fn.__qualname__}` ({path}:{line})")
    return "Where the code is: " + ", ".join(names) + "."


def window_pieces(tokenizer: Tokenizer, text: str, limit: int) -> tuple[list[TokenPiece], str]:
    """The first `limit` tokens of the text (after the 100k-character cut), and a notice of what was cut."""
    text, cut = clip_chars(require_text(text))
    pieces = tokenizer.pieces(text)
    if len(pieces) > limit:
        cut = f"The text has {len(pieces):,} tokens; only the first {limit:,} are used."
    return pieces[:limit], cut


def other_choices(registry: ModelRegistry, none: str | None = None) -> list[str]:
    """The models a view can set beside the picked one (with `none` first, where one model is enough)."""
    return ([none] if none else []) + registry.names()


def other_dropdown(registry: ModelRegistry, accordion: gr.Accordion, label: str, elem_id: str,
                   none: str | None = None) -> gr.Dropdown:
    """The second model's dropdown; its choices are read anew when the view opens (runs trained since appear)."""
    dropdown = gr.Dropdown(other_choices(registry, none), value=default_other(registry, none), label=label,
                           allow_custom_value=True, scale=2, elem_id=elem_id)
    accordion.expand(lambda: gr.Dropdown(choices=other_choices(registry, none)), None, dropdown,
                     api_visibility="private")
    return dropdown


def default_other(registry: ModelRegistry, none: str | None = None) -> str:
    """The second shipped model (instruct beside base) when there is one, else the first choice."""
    present = [n for n in SHIPPED_LANGUAGE_MODELS if registry.has(n)]
    return present[1] if len(present) > 1 else other_choices(registry, none)[0]


def load_two(registry: ModelRegistry, first: str, second: str) -> tuple[Checkpoint, Checkpoint]:
    """Two models for one comparison; never two GPT-2 sizes, which would hold gigabytes twice."""
    if registry.resolve(first).kind == registry.resolve(second).kind == "gpt2" and first.strip() != second.strip():
        raise ValueError("Two GPT-2 sizes at once would hold gigabytes of weights twice: compare a GPT-2 size "
                         "with a shipped or trained model instead.")
    return registry.load(first), registry.load(second)


def same_tokenizer(a: Tokenizer, b: Tokenizer) -> bool:
    """The same vocabulary: token ids mean the same pieces, so the two models can be compared token by token."""
    return a is b or a.ranks == b.ranks
