"""`python -m gpt vote`: accuracy against N (majority vote, best-of-N) for a chat model on held-out problems.

Samples N replies to each held-out problem of the chosen kinds, and prints the share right with one
greedy reply and, for N = 1, 2, 4, ... up to --n, with the majority answer, with the answer of the
reply the model finds likeliest, and with at least one right reply (a perfect verifier's ceiling).
"""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from gpt.cli.options import add_config_arguments, add_threads_argument, config_overrides, set_threads
from gpt.files import SHIPPED_MODELS
from gpt.pretrained import MODEL_NAMES_HELP, load_model
from gpt.reasoning.grpo import TASKS
from gpt.reasoning.problems import MAX_PROBLEMS, make_problems
from gpt.reasoning.scaling import VoteConfig, scaling_table

HELP = "accuracy against N samples (majority vote, best-of-N) on held-out arithmetic"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(SHIPPED_MODELS / "instruct"),
                        help=f"the chat model: {MODEL_NAMES_HELP} (default: %(default)s)")
    parser.add_argument("--task", default="hard", choices=tuple(TASKS),
                        help="the problems asked: hard, easy, or one kind (default: %(default)s)")
    parser.add_argument("--problems", type=int, default=100,
                        help="held-out problems asked (default: %(default)s)")
    parser.add_argument("--problem-seed", type=int, default=0,
                        help="which held-out problems are drawn (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_argument(parser)
    add_config_arguments(parser, VoteConfig)


def run(args: argparse.Namespace) -> None:
    if not 1 <= args.problems <= MAX_PROBLEMS:
        raise ValueError(f"--problems must be between 1 and {MAX_PROBLEMS:,}, got {args.problems:,}")
    cfg = VoteConfig(**config_overrides(args, VoteConfig))
    set_threads(args.threads)
    problems = make_problems(TASKS[args.task], args.problems, "held_out", args.problem_seed)
    checkpoint = load_model(args.model)
    with tqdm(total=len(problems), desc="vote", unit="problem", disable=args.quiet) as bar:
        table = scaling_table(checkpoint.model, checkpoint.tokenizer, problems, cfg, on_problem=lambda _: bar.update())
    print(f"{args.model}: {table.n_problems} held-out problems of {args.task}, temperature {cfg.temperature}, "
          f"percent right")
    print(table.markdown())
