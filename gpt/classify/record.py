"""What a classifier's folder records about how it was made and how it did: one row of the book's chapter-6
table of experiments, read from `classifier.json`, the stored tensors and `test_metrics.json`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from gpt.classify.classifier import CLASSIFIER_WEIGHTS, METRICS_FILE, parse_test_metrics, read_classifier_config
from gpt.classify.finetune import EpochStats


@dataclass(frozen=True)
class ClassifierRecord:
    config: dict[str, Any]  # classifier.json: labels, base, head, and in `meta` the finetuning's settings
    trainable_params: int
    seconds: float | None  # training time over its epochs
    peak_memory_mb: float | None
    val_accuracy: float | None  # of the epoch it kept
    test_set: str | None  # the first test set it was measured on (the SMS one for every spam classifier)
    test_accuracy: float | None


def stored_parameters(path: str | Path) -> int:
    """How many numbers a classifier stores: exactly the ones finetuning trained."""
    with safe_open(str(path), framework="pt") as f:
        return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())  # noqa: SIM118 - not iterable


def read_record(folder: str | Path) -> ClassifierRecord:
    """A classifier folder's record; older folders without a history or figures leave those None."""
    folder = Path(folder)
    config = read_classifier_config(folder)
    meta = config["meta"]
    history = [EpochStats(**h) for h in meta.get("history", [])]
    kept = max(history, key=lambda h: h.rank_key) if history else None
    metrics = folder / METRICS_FILE
    tests = list(parse_test_metrics(metrics.read_text(encoding="utf-8")).items()) if metrics.is_file() else []
    test_set, test = tests[0] if tests else (None, None)
    return ClassifierRecord(
        config=config,
        trainable_params=meta.get("trainable_params") or stored_parameters(folder / CLASSIFIER_WEIGHTS),
        seconds=sum(h.seconds for h in history) if history else None,
        peak_memory_mb=meta.get("peak_memory_mb"),
        val_accuracy=kept.val_accuracy if kept else None,
        test_set=test_set,
        test_accuracy=test.accuracy if test else None,
    )
