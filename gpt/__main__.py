"""`python -m gpt COMMAND ...`: one subcommand per stage of the pipeline."""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, help). Each module has add_arguments(parser) and run(args).
COMMANDS = {
    "bench": ("gpt.bench", "inference speed beside transformers"),
    "generate": ("gpt.cli_generate", "stream text from OpenAI's GPT-2 or a checkpoint folder"),
    "pretrain": ("gpt.train", "pretrain a GPT on the shipped corpora (or text files)"),
    "build-instruct-data": ("gpt.instruct_data", "build the offline instruction dataset in assets/instruct/"),
    "finetune-instruct": ("gpt.instruct", "instruction finetuning (Alpaca format) and its evaluation"),
    "finetune-classifier": ("gpt.classify", "finetune a GPT into the SMS spam classifier"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        sub_parser.set_defaults(module=module)
        importlib.import_module(module).add_arguments(sub_parser)
    args = parser.parse_args(argv)
    try:
        importlib.import_module(args.module).run(args)
    except (ValueError, FileNotFoundError) as err:  # bad input: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
