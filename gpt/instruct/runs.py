"""An instruction finetune end to end, as the app's Chat tab runs it: data in; a chat model with its
held-out scores beside its base model's out.

`finetune_run` loads the base (a checkpoint folder or a GPT-2 size), splits the data as
`python -m gpt finetune-instruct` does (so the held-out questions are the same), keeps only the task
`families` asked for (a few minutes on two cores teach a few kinds of question, not all sixteen),
trains on at most `max_train` entries, saves a full checkpoint to `OUT/` and scores it and its base
on a bounded sample of the test split, a few questions per task family, with the same evaluation as
the command line (64 questions by default, 4 of each of the shipped data's 16 families). The scores go to
`OUT/eval.json`, the base's beside them; each answer scored is a "score" event. Asked to stop, it
keeps what it has (the last finished epoch, or the weights so far) and still scores it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpt.checkpoint import WEIGHTS_FILE, Checkpoint, load_checkpoint
from gpt.files import sha256_of
from gpt.instruct.data import Entry, earlier_turns, resolve_data, split_entries
from gpt.instruct.evaluate import evaluate_instructions, save_model_eval
from gpt.instruct.finetune import InstructConfig, InstructResult, finetune_instruct
from gpt.pretrained import PRETRAINED, load_model
from gpt.training.events import TrainEvent, TrainingMonitor

EVAL_QUESTIONS = 64  # held-out questions scored per model, spread evenly over the task families (4 each of 16)
MAX_VAL = 64  # validation entries whose loss is measured, several times an epoch (the shipped split has 1,363)
PROMPT_FORMAT = "alpaca"  # recorded in the model's metadata: the Chat tab builds its prompts in this format


@dataclass(frozen=True)
class FinetuneRun:
    """What a finished (or stopped) run reports back; module level and plain values, so it crosses from the
    app's training process to the server."""

    steps: int
    epochs_done: int
    stopped: bool
    train_losses: list[float]
    val_losses: list[float]
    n_train: int
    trainable_params: int
    total_params: int
    peak_memory_mb: float
    memory_measure: str
    epoch_seconds: list[float]
    seconds: float
    method: str  # what trained, in words ("all layers", "LoRA rank 8 on ...")
    n_scored: int  # held-out questions each model answered
    base_model: str
    scores: dict[str, float]  # per task family and "all"
    base_scores: dict[str, float]


def base_sha256(base: str | Path, checkpoint: Checkpoint) -> str:
    """The sha256 of the base's weights file: a checkpoint folder's, or the GPT-2 file it was read from."""
    if str(base) in PRETRAINED:
        return sha256_of(checkpoint.meta["weights"])
    return sha256_of(Path(base) / WEIGHTS_FILE)


def held_out_sample(entries: Sequence[Entry], total: int = EVAL_QUESTIONS) -> list[Entry]:
    """About `total` entries, the first of each task family in turn, as many of each (entries without a
    `task` are one family): a bounded sample that still shows every kind of question."""
    families = {entry.get("task", "all") for entry in entries}
    per_family = max(1, total // max(len(families), 1))
    taken: dict[str, int] = defaultdict(int)
    sample = []
    for entry in entries:
        task = entry.get("task", "all")
        if taken[task] < per_family:
            taken[task] += 1
            sample.append(entry)
    return sample


def of_families(entries: Sequence[Entry], families: Sequence[str]) -> list[Entry]:
    """The entries of the named task families; all of them when none is named."""
    if not families:
        return list(entries)
    kept = [e for e in entries if e.get("task") in families]
    if not kept:
        known = sorted({str(e.get("task")) for e in entries if e.get("task")})
        raise ValueError(f"no entries of the families {', '.join(map(repr, families))}; the data has "
                         f"{', '.join(known) or 'no task families'}")
    return kept


def scores_by_task(report: dict[str, Any]) -> dict[str, float]:
    """A report's score per task family and overall ("all"): what the app shows beside the base's."""
    return {**{task: t["score"] for task, t in report["tasks"].items()}, "all": report["score"]}


def finetune_run(base: str, data: str | Sequence[Entry], cfg: InstructConfig, out_dir: str | Path,
                 data_name: str = "", max_train: int | None = None, families: Sequence[str] = (),
                 max_val: int = MAX_VAL, eval_questions: int = EVAL_QUESTIONS, max_new_tokens: int = 64,
                 base_name: str | None = None, device: torch.device | str = "cpu",
                 monitor: TrainingMonitor | None = None) -> FinetuneRun | None:
    """Train a chat model on `data` (a name for `resolve_data`, or entries), its task `families` only when
    some are named, and score it beside its base on held-out questions of the same families.

    Returns what the app shows (steps, losses, trainable parameters, memory, seconds per epoch, the
    scores per task family of both models), or None when it was stopped before its first step.
    """
    monitor = monitor or TrainingMonitor()
    out_dir = Path(out_dir)
    entries = of_families(resolve_data(data) if isinstance(data, str) else data, families)
    split = split_entries(entries, cfg.seed)
    train = split.train[:max_train] if max_train else split.train
    val = split.val[:max_val]
    sample = held_out_sample(split.test, eval_questions)
    seen_facts = {e["fact"] for e in train if "fact" in e}
    base_name = base_name or str(base)
    checkpoint = load_model(base, device=str(device))
    data_name = data_name or str(data)
    if families:
        data_name += f" ({', '.join(families)})"
    meta = {"base_model": base_name, "data": data_name, "split_seed": cfg.seed, "n_train": len(train),
            "n_val": len(val), "prompt_format": PROMPT_FORMAT,
            "chat_turns": max(map(earlier_turns, train), default=0)}  # the chat reads no more earlier turns
    digest = base_sha256(base, checkpoint) if cfg.lora_rank else None
    result = finetune_instruct(checkpoint, train, val, cfg, out_dir, meta, device=device, monitor=monitor,
                               base_sha256=digest)
    if result.steps == 0:
        return None
    del checkpoint

    def score(model: Checkpoint, is_base: bool) -> dict[str, Any]:
        done = []

        def progress(response: str) -> None:  # a "score" event per question answered: the app counts them
            done.append(response)
            monitor.emit(TrainEvent("score", result.steps, result.steps, result.tokens_seen, text=response,
                                    metrics={"scored": len(done), "to_score": len(sample), "base": float(is_base)}))

        return evaluate_instructions(model, sample, max_new_tokens, on_response=progress, seen_facts=seen_facts)

    report = score(load_checkpoint(out_dir, device=str(device)), False)  # what was saved, after its cast
    base_report = score(load_model(base, device=str(device)), True)
    sampled = f"{len(sample)} questions of the test split, the first of each task family in turn"
    save_model_eval(out_dir, report, data=meta["data"], split_seed=cfg.seed, n_train=len(train),
                    max_new_tokens=max_new_tokens, sample=sampled, base={"model": base_name, **base_report})
    return run_summary(result, cfg, report, base_report, base_name, len(train))


def run_summary(result: InstructResult, cfg: InstructConfig, report: dict[str, Any], base_report: dict[str, Any],
                base_name: str, n_train: int) -> FinetuneRun:
    """The training's result and both models' reports, as the run reports them back."""
    return FinetuneRun(steps=result.steps, epochs_done=len(result.train_losses), stopped=result.stopped,
                       train_losses=result.train_losses, val_losses=result.val_losses, n_train=n_train,
                       trainable_params=result.trainable_params, total_params=result.total_params,
                       peak_memory_mb=result.peak_memory_mb, memory_measure=result.memory_measure,
                       epoch_seconds=result.epoch_seconds, seconds=result.seconds, method=cfg.method,
                       n_scored=report["n"], base_model=base_name, scores=scores_by_task(report),
                       base_scores=scores_by_task(base_report))
