"""Calling the app's named endpoints from `view_api` and judging how a call ended: what the hostile-input sweep
and the load test share (no tests of its own)."""

from __future__ import annotations

import re
from typing import Any

from gradio_client import Client
from gradio_client.exceptions import AppError

KINDS = {"slider": "number", "number": "number", "textbox": "text", "dropdown": "choice", "radio": "choice",
         "checkboxgroup": "choices", "checkbox": "check", "file": "file"}
SHORT = 400  # characters: a message, not a dump
NOT_A_MESSAGE = ("Traceback", 'File "', "upstream Gradio app", "Something went wrong", "Could not preprocess",
                 "didn't receive enough input values", "surrogates not allowed")
# A path of two or more parts that starts at the root (or at ~), outside a URL.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])~?/[\w.@+-]+/[\w.@+-]+")
CALL_TIMEOUT_S = 120  # a bound on a hung call, not a speed target


def kind(param: dict) -> str:
    return KINDS.get(param["component"].lower(), "other")


def base_values(endpoint: dict) -> list[Any]:
    """The endpoint's example values, but no files (the examples are URLs on the internet) and no corpora
    ticked (the example ticks a novel, which each call would then read and tokenize)."""
    empty = {"file": None, "choices": []}
    return [empty.get(kind(p), p.get("example_input")) for p in endpoint["parameters"]]


def problem(outcome: tuple, server_paths: list[str]) -> str | None:
    """What is wrong with how a call ended, or None: a value, or a short clean message, is right."""
    how, detail = outcome
    if how == "value":
        return None
    if how == "http" and detail[0] in (413, 422):  # refused at the door: FastAPI's or our short reply
        detail = detail[1]
    elif how != "error":
        return f"{how}: {str(detail)[:300]}"
    if not isinstance(detail, str) or not detail.strip():
        return f"no message: {detail!r}"
    if len(detail) > SHORT:
        return f"a message of {len(detail):,} characters: {detail[:120]!r}..."
    bad = [s for s in NOT_A_MESSAGE if s in detail] + [p for p in server_paths if p in detail]
    if bad or ABSOLUTE_PATH.search(detail):
        return f"{bad or ABSOLUTE_PATH.search(detail).group(0)} in {detail!r}"
    return None


def client_call(client: Client, endpoint: str, data: list[Any]) -> tuple:
    try:
        return "value", client.submit(*data, api_name=endpoint).result(timeout=CALL_TIMEOUT_S)
    except AppError as err:
        return "error", err.message
    except Exception as err:  # noqa: BLE001 - any other failure is what the sweep is looking for
        return "client", f"{type(err).__name__}: {err}"
