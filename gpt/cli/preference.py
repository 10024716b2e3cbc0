"""`python -m gpt finetune-preference`: DPO on preference pairs, with what it gained and what it kept.

Tunes a chat model (the shipped one by default) on the shipped preference pairs, the book's, or a
file, against a frozen copy of itself. Before and after, it measures the held-out pairs (reward
accuracy and margin, and how often the model itself finds the chosen response more likely) and
the instruction scores per task family on the instruction test split, so that a gain in
preference is seen beside anything it forgot. The tuned model's scores go to `OUT/eval.json`
(which the Chat tab shows, beside the untuned model's), the reward figures to
`OUT/preference_eval.json`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gpt.checkpoint import Checkpoint, load_checkpoint
from gpt.cli.instruct import add_finetune_arguments, finetune_setup
from gpt.cli.progress import TqdmListener
from gpt.files import SHIPPED_MODELS, write_text_atomic
from gpt.instruct.data import SPLIT_SEED, resolve_data, split_entries
from gpt.instruct.evaluate import evaluate_instructions, format_report, format_task_report, save_model_eval
from gpt.instruct.runs import PROMPT_FORMAT, base_sha256, held_out_sample
from gpt.preference.data import how_counts, resolve_pairs, split_pairs
from gpt.preference.dpo import (
    PREFERENCE_PRESETS,
    PreferenceConfig,
    evaluate_preferences,
    finetune_preference,
    reward_table,
)
from gpt.pretrained import MODEL_NAMES_HELP, load_model
from gpt.training.events import TrainingMonitor

HELP = "preference tuning with DPO, scored on held-out pairs and the instruction test split"
EVAL_FILE = "preference_eval.json"
EVAL_QUESTIONS = 800  # instruction test questions scored per model by default: 50 of each of the 16 families


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(SHIPPED_MODELS / "instruct"),
                        help=f"the chat model to tune: {MODEL_NAMES_HELP} (default: %(default)s)")
    parser.add_argument("--data", default="shipped",
                        help="preference pairs: shipped | book (downloaded, cached) | a .json(.gz) file")
    parser.add_argument("--instruct-data", default="shipped",
                        help="instruction data whose test split is scored before and after: shipped | book | a file")
    parser.add_argument("--preset", choices=sorted(PREFERENCE_PRESETS),
                        help="default: gpt2 for GPT-2 models, else shipped")
    parser.add_argument("--out", type=Path, default=Path("runs/preference"),
                        help=f"the tuned checkpoint, its eval.json and {EVAL_FILE} (default: %(default)s)")
    parser.add_argument("--eval-limit", type=int, default=EVAL_QUESTIONS,
                        help="instruction test questions scored, the first of each task family in turn; "
                             "0: the whole test split (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="the longest response generated for scoring (default: %(default)s)")
    add_finetune_arguments(parser, PreferenceConfig)


def run(args: argparse.Namespace) -> None:
    if args.eval_limit < 0:
        raise ValueError(f"--eval-limit must be >= 0 (0: the whole test split), got {args.eval_limit}")
    device, cfg = finetune_setup(args, PREFERENCE_PRESETS, PreferenceConfig)
    pairs = split_pairs(resolve_pairs(args.data), cfg.seed)
    train = pairs.train[: cfg.max_pairs] if cfg.max_pairs else pairs.train
    print(f"pairs {args.data}: {len(train)} train / {len(pairs.test)} held-out / {len(pairs.val)} validation; "
          f"training pairs by how: {how_counts(train)}")
    instruct = split_entries(resolve_data(args.instruct_data), SPLIT_SEED)  # the split the chat model was scored on
    questions = held_out_sample(instruct.test, args.eval_limit) if args.eval_limit else list(instruct.test)
    seen_facts = {e["fact"] for e in instruct.train if "fact" in e}

    def instruction_scores(checkpoint: Checkpoint, desc: str) -> dict[str, Any]:
        with tqdm(total=len(questions), desc=desc, unit="question", disable=args.quiet) as bar:
            return evaluate_instructions(checkpoint, questions, args.max_new_tokens, on_response=lambda _: bar.update(),
                                         seen_facts=seen_facts)

    def preference_scores(checkpoint: Checkpoint, reference: Checkpoint) -> dict[str, Any]:
        return evaluate_preferences(checkpoint.model, reference.model, checkpoint.tokenizer, pairs.test, cfg.beta,
                                    cfg.batch_size, cfg.autocast)

    checkpoint = load_model(args.model, device=str(device))
    before = preference_scores(checkpoint, checkpoint)
    before_scores = instruction_scores(checkpoint, "untuned")
    meta = {"base_model": str(args.model), "reference_sha256": base_sha256(args.model, checkpoint),
            "data": args.data, "split_seed": cfg.seed, "n_train_pairs": len(train), "n_val_pairs": len(pairs.val),
            "n_test_pairs": len(pairs.test), "prompt_format": PROMPT_FORMAT}
    bar = TqdmListener("dpo", enabled=not args.quiet)
    try:
        result = finetune_preference(checkpoint, train, pairs.val, cfg, args.out, meta, TrainingMonitor(bar),
                                     device=device)
    finally:
        bar.close()
    print(f"tuned in {result.seconds:.0f} s: {result.steps} steps, {result.pairs_seen:,} pairs, "
          f"{result.tokens_seen:,} tokens; checkpoint: {args.out}")
    del checkpoint
    tuned = load_checkpoint(args.out, device=str(device))  # what was saved, after its cast
    after = preference_scores(tuned, load_model(args.model, device=str(device)))
    after_scores = instruction_scores(tuned, "tuned")

    print(f"held-out pairs (beta {cfg.beta}; reward = beta * (log p_tuned - log p_untuned)):")
    print(reward_table(before, after))
    print(format_report({f"{args.model} (untuned)": before_scores, f"{args.out} (tuned)": after_scores}))
    print(format_task_report(after_scores))
    sampled = (f"{len(questions)} questions of the test split, the first of each task family in turn"
               if args.eval_limit else "the whole test split")
    save_model_eval(args.out, after_scores, data=args.instruct_data, split_seed=SPLIT_SEED,
                    n_train=len(instruct.train), max_new_tokens=args.max_new_tokens, sample=sampled,
                    base={"model": str(args.model), **before_scores})
    record = {"model": str(args.model), "data": args.data, "preference": asdict(cfg), "steps": result.steps,
              "seconds": result.seconds, "train_pairs": how_counts(train), "held_out_pairs": how_counts(pairs.test),
              "before": before, "after": after}
    path = write_text_atomic(Path(args.out) / EVAL_FILE, json.dumps(record, indent=1) + "\n")
    print(f"reward figures: {path}; the tuned model's instruction scores (the Chat tab shows them): "
          f"{Path(args.out) / 'eval.json'}")
