"""Command-line flags made from the config dataclasses, so each option is declared once, with its help.

`add_config_arguments(parser, Config)` adds `--field-name` for each field (help, bounds and choices
from the field's `option(...)` metadata, so a value out of bounds is argparse's own usage error);
a flag left out is absent from the parsed namespace, so `config_overrides` returns only what the
user typed, to lay over a preset or the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterable
from typing import Any

import torch

from gpt.config import bounds, check_option, shown


def _parser_for(kind: Any) -> tuple[Callable[[str], Any] | None, dict[str, Any]]:
    """(argparse type, extra add_argument keywords) for a field's annotation."""
    args = typing.get_args(kind)
    if kind is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(kind) is tuple:
        return args[0], {"nargs": len(args)}
    if type(None) in args:  # `int | None`: the number, or "none"
        inner = next(a for a in args if a is not type(None))

        def optional(text: str) -> Any:
            return None if text.lower() == "none" else inner(text)

        optional.__name__ = inner.__name__
        return optional, {}
    return kind, {}


def _bounded(parse: Callable[[str], Any], config_cls: type, name: str) -> Callable[[str], Any]:
    """`parse`, then the field's bounds: argparse turns the `ArgumentTypeError` into a usage error."""
    def parse_and_check(text: str) -> Any:
        value = parse(text)
        try:
            return check_option(config_cls, name, value, "value")
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse_and_check.__name__ = parse.__name__
    return parse_and_check


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type, skip: Iterable[str] = (),
                         defaults: Any | None = None, default_note: str | None = None) -> None:
    """One `--flag` per field of `config_cls` (except `skip` and nested configs).

    The help shows the range and the default: the field's, `defaults`' (a preset), or `default_note` in words.
    """
    hints = typing.get_type_hints(config_cls)
    group = parser.add_argument_group(config_cls.__name__, (config_cls.__doc__ or "").strip().splitlines()[0])
    for f in dataclasses.fields(config_cls):
        kind = hints[f.name]
        if f.name in skip or dataclasses.is_dataclass(kind):
            continue
        default = getattr(defaults, f.name) if defaults is not None else f.default
        flag = f"--{f.name.replace('_', '-')}"
        parse, extra = _parser_for(kind)
        parse = f.metadata.get("parse", parse)
        low, high = bounds(config_cls, f.name)
        help_text = f.metadata.get("help", "")
        if low is not None or high is not None:
            parse = _bounded(parse, config_cls, f.name)
            help_text += f" [{'' if low is None else shown(low)}..{'' if high is None else shown(high)}]"
        if parse is not None:
            extra["type"] = parse
        if "choices" in f.metadata:
            extra["choices"] = f.metadata["choices"]
        if default_note is not None:
            help_text += f" (default: {default_note})"
        elif default is not dataclasses.MISSING:
            help_text += f" (default: {default})"
        group.add_argument(flag, dest=f.name, default=argparse.SUPPRESS,
                           help=help_text, **extra)


def config_overrides(args: argparse.Namespace, config_cls: type) -> dict[str, Any]:
    """The fields of `config_cls` given on the command line."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if hasattr(args, f.name)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}


def available_devices() -> list[str]:
    accelerators = [("cuda", torch.cuda.is_available()), ("mps", torch.backends.mps.is_available())]
    return ["cpu"] + [name for name, present in accelerators if present]


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """`--device`: the best one present by default (cuda, then mps, then cpu)."""
    devices = available_devices()
    parser.add_argument("--device", default=devices[-1],
                        help=f"where to compute: {', '.join(devices)} on this machine (default: %(default)s)")


def check_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in available_devices():
        raise ValueError(f"--device {name}: not available here; choose one of {', '.join(available_devices())}")
    return device


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """`--threads`: torch's CPU threads, 1 by default, which suits the small shipped models."""
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 suits the small shipped models: on a shared CPU, "
                             "threads that wait on each other are several times slower)")


def set_threads(threads: int) -> None:
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
