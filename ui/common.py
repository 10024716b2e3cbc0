"""What every tab shares: input checks, and turning any failure into a message instead of a traceback."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import typing
from collections.abc import Callable
from typing import Any

import gradio as gr

log = logging.getLogger("gpt.app")

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


def check_number(value: Any, name: str, low: float, high: float, integer: bool = False) -> float | int:
    """A number within [low, high]: API callers can send anything, the sliders' limits do not bind them."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}.")
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


def _as_user_error(err: Exception) -> gr.Error:
    if isinstance(err, gr.Error):
        return err
    if isinstance(err, (ValueError, FileNotFoundError)):  # bad input or a missing model: say what it is
        return gr.Error(str(err))
    log.exception("unexpected error in an app event")  # the details go to the server log, not the page
    return gr.Error(f"Something went wrong ({type(err).__name__}); the app is still running. "
                    "Details are in the server log.")


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
