"""`python -m gpt finetune-instruct`: instruction finetuning (Alpaca format) and its evaluation.

Finetunes a checkpoint (the shipped base model by default, or `--model gpt2-small`) on the shipped
instruction dataset or the book's, then scores the untuned and the tuned model on the same
held-out split. `--lora-rank N` trains LoRA adapters instead of the weights, `--trainable-blocks N`
only the last N blocks; the trainable parameters, the peak memory and the seconds per epoch are
printed and kept in the checkpoint's metadata. `--evaluate A B ...` only scores. The scores of every model go to
`OUT/instruct_eval.json`; the model saved in OUT (the finetuned one, or one evaluated in its own
folder) also gets its own report there as `eval.json`, which the Chat tab shows.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from gpt.checkpoint import Checkpoint
from gpt.cli.options import (
    add_config_arguments,
    add_device_argument,
    add_threads_argument,
    check_device,
    config_overrides,
    set_threads,
)
from gpt.cli.progress import TqdmListener
from gpt.config import GPT2_SIZES
from gpt.files import SHIPPED_BASE, write_text_atomic
from gpt.instruct.data import earlier_turns, resolve_data, split_entries
from gpt.instruct.evaluate import (
    MODEL_EVAL_FILE,
    evaluate_instructions,
    format_report,
    format_task_report,
    save_model_eval,
)
from gpt.instruct.finetune import INSTRUCT_PRESETS, InstructConfig, InstructResult, finetune_instruct
from gpt.instruct.runs import PROMPT_FORMAT, base_sha256
from gpt.pretrained import MODEL_NAMES_HELP, load_model
from gpt.training.events import TrainingMonitor

HELP = "instruction finetuning (Alpaca format) and its evaluation"
EVAL_FILE = "instruct_eval.json"

Config = TypeVar("Config")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(SHIPPED_BASE),
                        help=f"{MODEL_NAMES_HELP} (default: %(default)s)")
    parser.add_argument("--data", default="shipped", help="shipped | book (downloaded, cached) | a .json(.gz) file")
    parser.add_argument("--preset", choices=sorted(INSTRUCT_PRESETS),
                        help="default: gpt2 for GPT-2 models, else shipped")
    parser.add_argument("--max-train", type=int, help="use only the first N training entries")
    parser.add_argument("--out", type=Path, default=Path("runs/instruct"),
                        help=f"the finetuned checkpoint, {EVAL_FILE} (every model's scores) and {MODEL_EVAL_FILE} "
                             "(the scores of the model in this folder) (default: %(default)s)")
    parser.add_argument("--evaluate", nargs="+", metavar="MODEL", help="only score these models on the test split")
    parser.add_argument("--eval-limit", type=int, help="score only the first N test entries")
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="the longest response generated for scoring (default: %(default)s)")
    parser.add_argument("--conversation-turns", type=int, default=6,
                        help="also ask the test questions one after another in chats of this many earlier turns "
                             "plus one, the model's own replies in the history; 0: one per chat only "
                             "(default: %(default)s)")
    parser.add_argument("--judge", metavar="OLLAMA_MODEL", help="also score with an LLM judge on a local Ollama")
    parser.add_argument("--no-eval", action="store_true", help="train only")
    add_finetune_arguments(parser, InstructConfig)


def add_finetune_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """The flags every chat finetune (instruction, preference) ends with: threads, device, --quiet, and one
    per field of `config_cls`, laid over the `--preset`."""
    add_threads_argument(parser)
    add_device_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_arguments(parser, config_cls, default_note="the preset's")


def finetune_setup(args: argparse.Namespace, presets: dict[str, Config], config_cls: type[Config]
                   ) -> tuple[torch.device, Config]:
    """The checked device (threads set) and the config: `--preset` (by default gpt2 for a GPT-2 model, else
    shipped) with the flags the user typed laid over it."""
    device = check_device(args.device)
    set_threads(args.threads)
    preset = args.preset or ("gpt2" if args.model in GPT2_SIZES else "shipped")
    return device, replace(presets[preset], **config_overrides(args, config_cls))


def run(args: argparse.Namespace) -> None:
    device, cfg = finetune_setup(args, INSTRUCT_PRESETS, InstructConfig)
    split = split_entries(resolve_data(args.data), cfg.seed)  # --seed seeds the split and the training
    train = split.train[: args.max_train] if args.max_train else split.train
    test = split.test[: args.eval_limit] if args.eval_limit else split.test
    print(f"data {args.data}: {len(train)} train / {len(test)} test / {len(split.val)} validation")

    seen_facts = {e["fact"] for e in train if "fact" in e}  # what training asked, in any phrasing

    n_asked = len(test) + (sum(not e["input"] for e in test) if args.conversation_turns else 0)

    def evaluate(checkpoint: Checkpoint, desc: str) -> dict[str, Any]:
        with tqdm(total=n_asked, desc=desc, unit="entry", disable=args.quiet) as bar:
            return evaluate_instructions(checkpoint, test, args.max_new_tokens, args.judge,
                                         on_response=lambda _: bar.update(), seen_facts=seen_facts,
                                         conversation_turns=args.conversation_turns)

    reports: dict[str, dict[str, Any]] = {}
    own: dict[str, Any] | None = None  # the report of the model saved in --out
    if args.evaluate:
        for name in args.evaluate:
            reports[name] = evaluate(load_model(name, device=str(device)), name)
            if Path(name).resolve() == Path(args.out).resolve():
                own = reports[name]
    else:
        checkpoint = load_model(args.model, device=str(device))
        if not args.no_eval:  # evaluation only reads the weights: the same model is then finetuned
            reports[f"{args.model} (untuned)"] = evaluate(checkpoint, "untuned")
        earlier, source = finetune_stages(checkpoint.meta), model_ref(args.model)
        meta = {"base_model": earlier[0]["from"] if earlier else source, "data": args.data,
                "split_seed": cfg.seed, "n_train": len(train), "n_test": len(test), "n_val": len(split.val),
                "prompt_format": PROMPT_FORMAT, "chat_turns": max(map(earlier_turns, train), default=0),
                "stages": [*earlier, {"from": source, "epochs": cfg.epochs, "lr": cfg.lr}]}
        digest = base_sha256(args.model, checkpoint) if cfg.lora_rank else None
        bar = TqdmListener("finetune", enabled=not args.quiet)
        try:
            result = finetune_instruct(checkpoint, train, split.val, cfg, args.out, meta, device=device,
                                       monitor=TrainingMonitor(bar), base_sha256=digest)
        finally:
            bar.close()
        print(f"finetuned in {result.seconds:.0f} s, {result.tokens_seen:,} tokens; checkpoint: {args.out}")
        print(describe_cost(result, cfg))
        if not args.no_eval:
            own = reports[f"{args.out} (finetuned)"] = evaluate(checkpoint, "finetuned")
    if reports:
        print(format_report(reports))
        path = write_text_atomic(Path(args.out) / EVAL_FILE, json.dumps(reports, indent=1) + "\n")
        print(f"scores and example responses: {path}")
    if own is not None:
        print(format_task_report(own))
        path = save_model_eval(args.out, own, data=args.data, split_seed=cfg.seed, n_train=len(train),
                               max_new_tokens=args.max_new_tokens)
        print(f"the model's own held-out report (the Chat tab shows it): {path}")


def model_ref(model: str) -> str:
    """How the metadata names a base: a folder under the working directory relative to it (the shipped
    default is an absolute path, which would put this machine's layout into a shipped config)."""
    path = Path(model).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_dir() and path.is_relative_to(Path.cwd()) else str(model)


def finetune_stages(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The instruction finetunes a checkpoint already went through (from what, epochs, lr), so that a
    run that goes on from one records where the whole chain started."""
    if "stages" in meta:
        return list(meta["stages"])
    if "finetune" in meta:  # a finetune from before stages were recorded: its own run only
        return [{"from": meta.get("base_model", "?"), "epochs": meta.get("epochs_done"), "lr": meta["finetune"]["lr"]}]
    return []


def describe_cost(result: InstructResult, cfg: InstructConfig) -> str:
    """What the run trained and what it cost: trainable parameters, seconds per epoch, peak memory."""
    per_epoch = ", ".join(f"{s:.1f}" for s in result.epoch_seconds) or "no epoch finished"
    return (f"trained {cfg.method}: {result.trainable_params:,} of {result.total_params:,} parameters "
            f"({100 * result.trainable_params / max(result.total_params, 1):.2f}%); seconds per epoch: {per_epoch}; "
            f"peak memory {result.peak_memory_mb:,.0f} MB ({result.memory_measure})")
