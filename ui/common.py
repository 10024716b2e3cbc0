"""What every tab shares: input checks, and turning any failure into a message instead of a traceback.

`SafeBlocks` does the same for what reaches an event before its function runs (Gradio's own
checks of each component's value), for every event at once, the ones `gr.ChatInterface` makes
included; `user_errors` wraps our event functions. Neither lets a server path reach the page.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import re
import typing
from collections.abc import Callable
from typing import Any

import gradio as gr
from gradio.exceptions import ComponentProcessingError, InvalidPathError

log = logging.getLogger("gpt.app")

def public_mode() -> bool:
    """Whether strangers share this server: `GPT_APP_MODE=public`, or by default a server bound to an address other
    than this machine's (a Space sets GRADIO_SERVER_NAME=0.0.0.0). `GPT_APP_MODE=local` (or a server on 127.0.0.1,
    Gradio's default) is a laptop's: every run is everyone's, as before."""
    import os

    mode = os.environ.get("GPT_APP_MODE", "").strip().lower()
    if mode in ("public", "local"):
        return mode == "public"
    return os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1").strip() not in ("127.0.0.1", "localhost", "::1", "")


MAX_CHARS = 100_000  # longer text is cut before tokenizing: nothing shown needs more


def require_text(text: str | None, what: str = "text") -> str:
    if text is None or not text.strip():
        raise ValueError(f"The {what} is empty: type something first.")
    return text


def clip_chars(text: str, limit: int = MAX_CHARS) -> tuple[str, str]:
    """The first `limit` characters, and a notice when anything was cut."""
    if len(text) <= limit:
        return text, ""
    return text[:limit], f"Only the first {limit:,} of {len(text):,} characters are used."


def as_real(value: Any) -> float | None:
    """`value` as a finite float, or None where it is no number (text, None, true, NaN, inf) or one no float holds (a
    401-digit integer: `math.isnan` of it raises OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        real = float(value)
    except OverflowError:
        return None
    return real if math.isfinite(real) else None


def shown_number(value: Any) -> str:
    """A number for a message: `:g`, or its count of digits where no float holds it."""
    if isinstance(value, int) and not isinstance(value, bool) and as_real(value) is None:
        return f"a {len(str(abs(value))):,}-digit integer" if abs(value) < 10 ** 4000 else "a huge integer"
    return f"{value:g}" if isinstance(value, (int, float)) else repr(value)[:40]


def check_number(value: Any, name: str, low: float, high: float, integer: bool = False) -> float | int:
    """A number within [low, high]: API callers can send anything, the sliders' limits do not bind them."""
    real = as_real(value)
    if real is None and isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        # inf, or an integer too large for a float: out of range
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {shown_number(value)}.")
    if real is None:
        raise ValueError(f"{name} must be a number, got {shown_number(value)}.")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value:g}.")
    if integer:
        if value != int(value):
            raise ValueError(f"{name} must be a whole number, got {value:g}.")
        return int(value)
    return float(value)


def fit_context(ids: list[int], context_length: int) -> tuple[list[int], str]:
    """The last `context_length` tokens (what the model can see), and a notice when text was dropped."""
    if len(ids) <= context_length:
        return ids, ""
    return ids[-context_length:], (f"The text has {len(ids):,} tokens; the model sees at most {context_length:,}, "
                                   f"so only the last {context_length:,} are used.")


def join_notices(*notices: str) -> str:
    return "\n\n".join(f"⚠️ {n}" for n in notices if n)


def with_notices(text: str, *notices: str) -> str:
    """An explanation, after the notices of anything that was cut."""
    return "\n\n".join(filter(None, [join_notices(*notices), text]))


# An absolute path (/a/b/c or ~/a/b) that is not part of a URL or of a relative path: cut to its last part.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])~?/(?:[^\s/'\"`:;,()<>\[\]{}]+/)+[^\s/'\"`:;,()<>\[\]{}]*")


# A relative path of three parts or more (a/b/c, archive/../../x, assets/models/base), not inside a URL: cut the same
# way. Two parts stay ("top-k/top-p", a Hub id "openai-community/gpt2").
_RELATIVE_PATH = re.compile(r"(?<![\w.:/~-])(?=[^\s/]*[A-Za-z.])(?:[^\s/'\"`:;,()<>\[\]{}]+/){2,}"
                            r"[^\s/'\"`:;,()<>\[\]{}]*")
MAX_MESSAGE_CHARS = 300  # a message that echoes what was sent (5 MB of it) is cut: a message, not a dump


def public_message(text: str) -> str:
    """`text` with every absolute path, and every relative one of three parts or more, cut to its last folder or file
    name, and at most `MAX_MESSAGE_CHARS` long.

    The page should name a model or a file, never where the server keeps it (the repository, the
    Hub cache, the runs folder).
    """
    def last(match: re.Match) -> str:
        return ([p for p in match.group(0).split("/") if p] or ["…"])[-1]

    text = _RELATIVE_PATH.sub(last, _ABSOLUTE_PATH.sub(last, text))
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 1] + "…"


def _as_user_error(err: Exception, said: tuple[type[Exception], ...] = (ValueError, FileNotFoundError)) -> gr.Error:
    """`err` as a message for the page; only the kinds in `said` (bad input, a missing model) say what they are."""
    if isinstance(err, gr.Error):
        err.message = public_message(str(err.message))
        return err
    if isinstance(err, said):  # not the server's fault: no traceback in its log
        return gr.Error(public_message(str(err)), print_exception=False)
    log.exception("unexpected error in an app event")  # the details go to the server log, not the page
    return gr.Error(f"Something went wrong ({type(err).__name__}); the app is still running. "
                    "Details are in the server log.", print_exception=False)


def on_first_open(fn: Callable, n_outputs: int) -> Callable:
    """A view's event run once as the page opens, on its example input: a failure (the picked model cannot read
    the example, say) leaves the view empty instead of greeting the visitor with an error; pressing the view's
    button gives the message."""

    @functools.wraps(fn)
    def quiet(*args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - a page that opens never shows an error it was not asked for
            logging.getLogger(__name__).info("a view left empty at page load", exc_info=True)
            return tuple(gr.skip() for _ in range(n_outputs))

    return quiet


def user_errors(fn: Callable) -> Callable:
    """Run an event function so that every failure reaches the page as a `gr.Error` message.

    Generator functions stay generators (Gradio streams them), and the signature and the resolved
    annotations are kept so Gradio still sees `gr.Progress` and `gr.Request` parameters.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - the point is that nothing escapes as a traceback
                raise _as_user_error(err) from err

        stream_wrapper.__annotations__ = _type_hints(fn)
        return stream_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001
            raise _as_user_error(err) from err

    wrapper.__annotations__ = _type_hints(fn)
    return wrapper


def _type_hints(fn: Callable) -> dict[str, Any]:
    """The annotations of `fn` (or of the function a partial wraps), resolved to types."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    try:
        return typing.get_type_hints(target)
    except (NameError, TypeError):
        return {}


# -- what reaches an event before its function runs ------------------------------------------------

class InputError(gr.Error):
    """A value an event cannot take (the wrong type, too few values): a message, not a logged traceback."""

    def __init__(self, message: str):
        super().__init__(public_message(message), print_exception=False)


def clean_text(value: Any) -> Any:
    """`value` with lone surrogates (which no UTF-8 encoder takes) made `?`, in strings at any depth."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if _has_surrogate(value) else value
    if isinstance(value, list):
        return [clean_text(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(k): clean_text(v) for k, v in value.items()}
    return value


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shown(value: Any) -> str:
    """What was sent, for a message: short text quoted, anything else by its kind."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a text of {len(value):,} characters"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return shown_number(value)
    return f"a {type(value).__name__}"


def field_name(block: Any) -> str:
    """How a message names an input: its label, else what kind of field it is."""
    label = getattr(block, "label", None)
    if isinstance(label, str) and label.strip():
        return label.split(" (")[0]  # "Model (Tokenizer, Attention ...)" -> "Model"
    return {"textbox": "The text", "slider": "A slider", "number": "A number"}.get(
        type(block).__name__.lower(), "A value")


def _is_file(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("path"), str)


def check_input(block: Any, value: Any) -> Any:
    """The value an input component may pass on to Gradio's own preprocessing; `InputError` otherwise.

    API callers can send anything JSON holds; the page sends only these. A textbox's missing value
    is empty text (the page never sends one).
    """
    name = field_name(block)
    if isinstance(block, (gr.Slider, gr.Number)):
        low, high = getattr(block, "minimum", None), getattr(block, "maximum", None)
        huge = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and \
            as_real(value) is None  # inf, or an integer no float holds
        if as_real(value) is None and not huge:
            raise InputError(f"{name}: expected a number, got {_shown(value)}.")
        if huge or (low is not None and value < low) or (high is not None and value > high):
            raise InputError(f"{name} must be between {_bound(low)} and {_bound(high)}, got {_shown(value)}.")
    elif isinstance(block, gr.Textbox):
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InputError(f"{name}: expected text, got {_shown(value)}.")
    elif isinstance(block, gr.Checkbox):
        if not isinstance(value, bool):
            raise InputError(f"{name}: expected true or false (ticked or not), got {_shown(value)}.")
    elif isinstance(block, (gr.Radio, gr.Dropdown, gr.CheckboxGroup)):
        _check_choices(block, value, name)
    elif isinstance(block, gr.File) and value is not None:
        many = isinstance(value, list)
        wanted = block.file_count != "single"
        if many != wanted or not all(map(_is_file, value if many else [value])):
            what = "uploaded files" if wanted else "an uploaded file"
            raise InputError(f"{name}: expected {what}, got {_shown(value)}.")
    return value


def _bound(value: float | None) -> str:
    return "any" if value is None else f"{value:g}"


def _check_choices(block: Any, value: Any, name: str) -> None:
    many = isinstance(block, gr.CheckboxGroup) or bool(getattr(block, "multiselect", False))
    if many and value is None and isinstance(block, gr.Dropdown):
        return
    if many != isinstance(value, list):
        raise InputError(f"{name}: expected {'a list of choices' if many else 'one choice'}, got {_shown(value)}.")
    choices = [v for _, v in block.choices]
    for v in value if many else [value]:
        if v is None and not many:
            continue
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise InputError(f"{name}: expected a choice (text), got {_shown(v)}.")
        if not getattr(block, "allow_custom_value", False) and v not in choices:
            raise InputError(f"{name}: {_shown(v)} is not one of the choices.")


class SafeBlocks(gr.Blocks):
    """`gr.Blocks` whose events answer any value they cannot take with a short message naming the field.

    Gradio itself turns a non-number in a slider, too few values, or a textbox holding a list into
    an exception with internal details, which the page shows as an unexplained error. Here every
    input is checked by kind first (`check_input`), lone surrogates are cleaned out of all text
    (the reply could not be encoded otherwise), and whatever still fails, inside Gradio or our
    functions, reaches the page as a `gr.Error` without server paths.
    """

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        if not isinstance(inputs, list) or len(inputs) < len(block_fn.inputs):
            got = len(inputs) if isinstance(inputs, list) else 0
            wanted = len(block_fn.inputs)
            raise InputError(f"This action takes {wanted} value{'s' * (wanted != 1)}, one per input; it got {got}.")

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False
                              ) -> list[Any]:
        self.validate_inputs(block_fn, inputs)
        inputs = clean_text(list(inputs))
        for i, block in enumerate(block_fn.inputs):
            if isinstance(block, gr.components.Component) and not block.stateful and \
                    i not in block_fn.component_prop_inputs:
                current = state[block._id] if state is not None and block._id in state else block  # its choices now
                inputs[i] = check_input(current, inputs[i])
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error as err:  # Gradio's range checks: already a message, and no fault of the server's
            err.print_exception = False
            raise _as_user_error(err) from err
        except ComponentProcessingError as err:
            index = re.search(r"at index (\d+)", str(err))
            block = block_fn.inputs[int(index.group(1))] if index else None
            what = field_name(block) if block is not None else "A value"
            raise InputError(f"{what}: this value cannot be used ({type(err.__cause__ or err).__name__}).") from err
        except InvalidPathError as err:
            raise InputError("A file sent here was not uploaded to this app: upload it first.") from err
        except Exception as err:  # noqa: BLE001 - a value Gradio could not read (a malformed file record...)
            raise InputError(f"A value sent here cannot be read ({type(err).__name__}).") from err

    async def process_api(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return await super().process_api(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - the page gets a message, the log the details
            raise _as_user_error(err, said=()) from err  # ours are messages already: the rest is Gradio's
