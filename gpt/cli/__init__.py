"""`python -m gpt COMMAND ...`: one subcommand per stage of the pipeline, one module each in this folder.

Each command module has `HELP`, `add_arguments(parser)` and `run(args)`; the modules parse their
flags and call the library, and hold no model math.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import warnings
from collections.abc import Callable
from typing import Any

from gpt.checkpoint import UnverifiedWarning

COMMANDS = {  # command -> module in gpt.cli
    "generate": "generate",
    "pretrain": "pretrain",
    "baselines": "baselines",
    "finetune-classifier": "classify",
    "finetune-instruct": "instruct",
    "finetune-preference": "preference",
    "finetune-rl": "rl",
    "vote": "vote",
    "quantize": "quantize",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"gpt.cli.{module_name}")
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        sub_parser.set_defaults(run=module.run)
        module.add_arguments(sub_parser)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(show_warning, warnings.showwarning)
        try:
            args.run(args)
        except (ValueError, FileNotFoundError) as err:  # bad input: one clear line, no traceback
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


def show_warning(python_way: Callable[..., None], message: Warning | str, category: type[Warning],
                 *args: Any, **kwargs: Any) -> None:
    """The library's warnings to a user (a model folder without checksums) as the errors are shown: one line,
    `warning: ...`, without Python's file and source line; other warnings as Python shows them."""
    if issubclass(category, UnverifiedWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        python_way(message, category, *args, **kwargs)
