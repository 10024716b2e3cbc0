"""What the views inside the model share: where their code is, a cut text, a second model, a chat model's prompt
(token labels: `ui.labels`).

Each view (`ui/*_view.py`) is built from inside the tab it belongs to and calls one library
function; `where` names that function and its file, so a student can open it beside the picture.
A chat model reads text inside its chat prompt: the views that send it text (and the Generate tab)
offer to wrap it (`chat_prompt_option`) and say when it reads the text bare (`model_text`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from gpt.checkpoint import Checkpoint, read_config
from gpt.generate import encode_prompt, prompt_pieces
from gpt.hub_tokenizer import TOKENIZER_JSON
from gpt.instruct.prompt import is_chat_model, is_chat_prompt, reads_special_tokens, wrap_in_chat_prompt
from gpt.tokenizer import Tokenizer, TokenPiece
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


def window_pieces(pieces: list[TokenPiece], limit: int) -> tuple[list[TokenPiece], str]:
    """A text's first `limit` tokens (as the model reads them: `ModelText.pieces`), and a notice of what was cut."""
    if len(pieces) > limit:
        return pieces[:limit], f"The text has {len(pieces):,} tokens; only the first {limit:,} are used."
    return pieces, ""


def other_choices(registry: ModelRegistry, none: str | None = None) -> list[tuple[str, str]]:
    """The models a view can set beside the picked one, as (label, name) (with `none` first, where one model is
    enough)."""
    return ([(none, none)] if none else []) + registry.choices()


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
    return present[1] if len(present) > 1 else other_choices(registry, none)[0][1]


def load_two(registry: ModelRegistry, first: str, second: str) -> tuple[Checkpoint, Checkpoint]:
    """Two models for one comparison; never two GPT-2 sizes, which would hold gigabytes twice."""
    if registry.resolve(first).kind == registry.resolve(second).kind == "gpt2" and first.strip() != second.strip():
        raise ValueError("Two GPT-2 sizes at once would hold gigabytes of weights twice: compare a GPT-2 size "
                         "with a shipped or trained model instead.")
    return registry.load(first), registry.load(second)


def same_tokenizer(a: Tokenizer, b: Tokenizer) -> bool:
    """The same vocabulary: token ids mean the same pieces, so the two models can be compared token by token."""
    return a.same_as(b)


# -- a chat model's prompt ---------------------------------------------------------------------------

WRAP_LABEL = "Wrap in the chat prompt"


@dataclass(frozen=True)
class ModelText:
    """A text as one model reads it, and a notice where a chat model reads it bare."""

    text: str
    wrapped: bool
    notice: str
    special: bool = False  # a prompt in the model's chat template: its special tokens are read as such

    def ids(self, tokenizer: Tokenizer) -> list[int]:
        """The ids the model reads (its BOS first where it has one): what every view of this text reads."""
        return encode_prompt(tokenizer, self.text, self.special)

    def pieces(self, tokenizer: Tokenizer) -> list[TokenPiece]:
        """Those ids as tokens with their bytes and spans, the BOS one of them."""
        return prompt_pieces(tokenizer, self.text, self.special)


def model_text(ckpt: Checkpoint, name: str, text: str, wrap: bool) -> ModelText:
    """The text inside the model's chat prompt (Alpaca, or its chat template) where it is a chat model and `wrap` is
    on; else as it is, said plainly for a chat model (bare text gets gibberish from it)."""
    meta, tokenizer = ckpt.meta, ckpt.tokenizer
    read = wrap_in_chat_prompt(meta, text, wrap, tokenizer)
    bare = is_chat_model(meta, tokenizer) and read == text and not is_chat_prompt(text, tokenizer)
    notice = (f"{name} is a chat model, tuned to answer text inside its chat prompt; here it reads the text "
              f"bare, which it was not trained on (tick *{WRAP_LABEL}*).") if bare else ""
    return ModelText(read, read != text, notice, wrap and reads_special_tokens(meta, tokenizer, read))


def model_meta(registry: ModelRegistry, name: str | None) -> dict[str, Any]:
    """A model's recorded metadata, from its config alone: switching the picker never loads weights for this.
    GPT-2 sizes have none; a name that is no model has none either (the view that loads it says why)."""
    try:
        entry = registry.resolve(name)
        meta = read_config(entry.path).get("meta", {}) if entry.path is not None else {}
    except (ValueError, OSError):
        return {}
    return meta if isinstance(meta, dict) else {}


def model_reader(registry: ModelRegistry, name: str | None) -> tuple[dict[str, Any], Tokenizer | None]:
    """What decides the prompt a model reads (`gpt.instruct.prompt.chat_format`), without its weights: its
    metadata, and its tokenizer where that may bring a chat template (a Hub tokenizer on disk); None elsewhere."""
    meta = model_meta(registry, name)
    if meta.get("prompt_format"):
        return meta, None  # the recorded format decides
    try:
        entry = registry.resolve(name)
        if entry.path is None or not (entry.path / TOKENIZER_JSON).is_file():
            return meta, None  # ours, GPT-2, or an open model not on disk: no template to read yet
        return meta, registry.tokenizer(name)
    except (ValueError, OSError):
        return meta, None


def chat_prompt_shown(registry: ModelRegistry, names: Sequence[str | None], text: str | None, wrap: bool) -> str:
    """The chat prompt the view's first chat model reads, or "" when none of `names` is a chat model, `wrap` is off
    or there is no text."""
    chat = next((reader for reader in map(functools.partial(model_reader, registry), names)
                 if is_chat_model(*reader)), None)
    if not wrap or chat is None or not text or not text.strip():
        return ""
    meta, tokenizer = chat
    return wrap_in_chat_prompt(meta, text, tokenizer=tokenizer)


def chat_prompt_option(registry: ModelRegistry, models: Sequence[gr.components.Component], text: gr.Textbox,
                       elem_id: str, on_when_any: bool = True) -> gr.Checkbox:
    """The "Wrap in the chat prompt" checkbox and the exact prompt it makes, shown while one of `models` is a
    chat model. A new model puts the box back to its default: ticked when any of them is a chat model, or (with
    `on_when_any` off, where wrapping changes what every model reads) only when the first is.

    The prompt beside it follows every keystroke, outside the queue: formatting it takes no model.
    """

    def state(names: Sequence[str | None]) -> tuple[bool, bool]:  # (shown, ticked)
        chat = [is_chat_model(*model_reader(registry, name)) for name in names]
        return any(chat), any(chat) if on_when_any else chat[0]

    shown, ticked = state([m.value for m in models])
    with gr.Group(visible=shown) as group:
        wrap = gr.Checkbox(ticked, label=WRAP_LABEL, elem_id=f"{elem_id}-wrap",
                           info="A chat model was finetuned to answer an instruction inside this prompt; "
                                "bare text gets gibberish from it.")
        prompt = gr.Textbox(chat_prompt_shown(registry, [m.value for m in models], text.value, ticked), lines=4,
                            max_lines=12, interactive=False, elem_id=f"{elem_id}-chat-prompt",
                            label="The exact text the chat model reads: yours, inside its chat prompt")

    def on_model(*values: Any) -> tuple[gr.Group, bool, str]:
        *names, typed = values
        visible, default = state(names)
        return gr.Group(visible=visible), default, chat_prompt_shown(registry, names, typed, default)

    def on_text(*values: Any) -> str:
        *names, typed, wrapped = values
        return chat_prompt_shown(registry, names, typed, wrapped)

    gr.on([m.change for m in models], on_model, [*models, text], [group, wrap, prompt], queue=False,
          api_visibility="private")
    gr.on([text.change, wrap.change], on_text, [*models, text, wrap], prompt, queue=False, api_visibility="private")
    return wrap
