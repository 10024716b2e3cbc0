"""Inputs made from the configs' own bounds, and events that read one form instead of many values.

A limit is written once, on its config field (`gpt.config.option(low=, high=, choices=)`): the
slider here and the server's check of what an API caller sends both read it. Where the app allows
less (`TrainLimits`, the depth of a base model), that cap narrows the range, never widens it.

A training panel's settings are one frozen dataclass. Its event takes the components by field name
(Gradio's `inputs_kwargs`, whose order is also the API's), and the handler gets the dataclass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from gpt.config import bounds, choices, field_of
from ui.common import check_number

Form = TypeVar("Form")
OPTION_CLASS = "option:"  # an input's CSS class naming the config field it is made from (tests compare ranges)


def field_range(config: type, name: str, low: float | None = None, high: float | None = None
                ) -> tuple[float, float]:
    """The field's bounds, narrowed to [low, high] where the app allows less."""
    field_low, field_high = bounds(config, name)
    if field_low is None or field_high is None:
        raise ValueError(f"{config.__name__}.{name} has no bounds to make an input from")
    return (field_low if low is None else max(field_low, low), field_high if high is None else min(field_high, high))


def is_whole(config: type, name: str) -> bool:
    """Whether the field holds whole numbers (its annotation is `int`, or `int | None`)."""
    return str(field_of(config, name).type).split(" |")[0] in ("int", "<class 'int'>")


def _option_class(config: type, name: str) -> list[str]:
    return [f"{OPTION_CLASS}{config.__name__}.{name}"]


def slider(config: type, name: str, label: str, value: float, step: float | None = None, low: float | None = None,
           high: float | None = None, **kwargs: Any) -> gr.Slider:
    """A slider over the config field's range (narrowed to [low, high] where the app allows less)."""
    minimum, maximum = field_range(config, name, low, high)
    return gr.Slider(minimum, maximum, value=value, step=step or (1 if is_whole(config, name) else None),
                     label=label, elem_classes=_option_class(config, name), **kwargs)


def number(config: type, name: str, label: str, value: float, low: float | None = None, high: float | None = None,
           **kwargs: Any) -> gr.Number:
    """A number box limited to the config field's range (narrowed where the app allows less)."""
    minimum, maximum = field_range(config, name, low, high)
    return gr.Number(value, minimum=minimum, maximum=maximum, precision=0 if is_whole(config, name) else None,
                     label=label, elem_classes=_option_class(config, name), **kwargs)


def help_of(config: type, name: str) -> str:
    """The field's help text, as its `option(...)` wrote it: what the setting does, shown beside its input."""
    return field_of(config, name).metadata["help"]


def radio(config: type, name: str, label: str, value: Any, **kwargs: Any) -> gr.Radio:
    """A radio over the field's choices, with its help text."""
    return gr.Radio(list(choices(config, name)), value=value, label=label, info=help_of(config, name), **kwargs)


def checkbox(config: type, name: str, label: str, value: bool, **kwargs: Any) -> gr.Checkbox:
    """A checkbox for a true/false field, with its help text."""
    return gr.Checkbox(value, label=label, info=help_of(config, name), **kwargs)


def check_field(config: type, name: str, value: Any, label: str, low: float | None = None,
                high: float | None = None) -> Any:
    """`value` for the config field: a number (whole where the field is), within the field's bounds narrowed
    to [low, high]; a ValueError naming `label` otherwise. API callers can send anything."""
    minimum, maximum = field_range(config, name, low, high)
    return check_number(value, label, minimum, maximum, integer=is_whole(config, name))


def check_flag(value: Any, label: str) -> bool:
    """A checkbox's value: true or false, nothing else (API callers can send anything)."""
    if not isinstance(value, bool):
        raise ValueError(f"{label} must be true or false, got {value!r}.")
    return value


def check_optional_field(config: type, name: str, value: Any, label: str) -> Any:
    """`check_field` for a field that may be left unset (`int | None`), typed in a text box: empty is None (the
    field's default), else a number."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{label} must be a number, or empty for the default; got {value.strip()[:20]!r}."
                             ) from None
    return None if value is None else check_field(config, name, value, label)


def reads_form(form: type[Form], handler: Callable[..., Any]) -> Callable[..., Any]:
    """The event function of an action that reads the form: Gradio passes the other inputs, then the form's values
    by field name, and `handler(form, *inputs)` gets them."""

    def event(*inputs: Any, **values: Any) -> Any:
        return handler(form(**values), *inputs)

    return event


def on_form(form: type[Form], handler: Callable[..., Any]) -> Callable[..., Any]:
    """The event function of a panel: Gradio passes the owner's token and the form's values by field name,
    and `handler(token, form, request)` gets them as one `form` dataclass."""

    def event(token: str | None, request: gr.Request, **values: Any) -> Any:
        return handler(token, form(**values), request)

    return event
