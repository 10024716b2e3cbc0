"""Build the shipped preference pairs, `assets/preference/pairs.json.gz`, from the instruction data and the chat model.

`python -m tools.build_preference_data` splits the instruction data as every finetuning does (seed
123), asks the shipped chat model for its greedy answer to a seeded sample of training entries, the
first validation entries and the first (or every) test entry, and pairs each reference answer (chosen) with the
model's own answer where it is wrong, else with a rewrite of the reference the task does not want
(`gpt.preference.data.build_pairs`). The same seed, data and model give the same pairs.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gpt.checkpoint import load_checkpoint
from gpt.files import SHIPPED_MODELS
from gpt.instruct.data import SHIPPED_DATA, SPLIT_SEED, Entry, load_entries, save_entries, split_entries
from gpt.instruct.evaluate import generate_responses
from gpt.preference.data import SHIPPED_PAIRS, build_pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.build_preference_data", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODELS / "instruct",
                        help="the chat model whose wrong answers are rejected (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=SHIPPED_DATA, help="instruction data (default: %(default)s)")
    parser.add_argument("--n-train", type=int, default=4000, help="training entries sampled (default: %(default)s)")
    parser.add_argument("--n-val", type=int, default=400, help="validation entries paired (default: %(default)s)")
    parser.add_argument("--n-test", type=int, help="test entries paired, the first N (default: every one)")
    parser.add_argument("--seed", type=int, default=SPLIT_SEED, help="seeds the split, the sample and the rewrites")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="the longest answer generated")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=SHIPPED_PAIRS, help="where to write (default: the shipped file)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.model)
    split = split_entries(load_entries(args.data), args.seed)

    def respond(entries: Sequence[Entry]) -> list[str]:
        with tqdm(total=len(entries), desc="greedy answers", unit="entry") as bar:
            return generate_responses(checkpoint, entries, args.max_new_tokens, on_response=lambda _: bar.update())

    pairs = build_pairs(split, respond, args.n_train, args.n_val, args.seed, args.n_test)
    path = save_entries(pairs, args.out)
    print(f"{len(pairs)} pairs, {path.stat().st_size / 2**20:.2f} MB: {path}")
    for (part, how), n in sorted(Counter((p["split"], p["how"]) for p in pairs).items()):
        print(f"{part:5} {how:20} {n:5}")


if __name__ == "__main__":
    main()
