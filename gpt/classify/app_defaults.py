"""What the Spam tab's default finetuning reaches and costs, and how much slower LoRA trains per step.

    python -m gpt.classify.app_defaults [--threads 1] [--steps 40] [--out assets/models/spam/app_defaults.json]

One run of the tab's defaults (`CLASSIFIER_PRESETS["app"]`, the shipped base, the SMS data) through
`finetune_job`, the function the tab's job runs: its wall time and its accuracy on every test set. Then the
same data, batches and number of steps trained with the defaults and with the tab's LoRA choice
(`app-lora`): seconds per step of each. The tab shows these figures before a user starts, and only while its
defaults are the ones measured: the figures depend on the machine, so they are measured, never typed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from gpt.classify import data
from gpt.classify.classifier import SHIPPED_DIR
from gpt.classify.finetune import (
    CLASSIFIER_PRESETS,
    ClassifierConfig,
    finetune_job,
    prepare_training,
    train_classifier,
)
from gpt.files import SHIPPED_BASE, write_text_atomic
from gpt.training.events import TrainEvent, TrainingMonitor

MEASURED_FILE = SHIPPED_DIR / "app_defaults.json"
DEFAULTS, LORA = "app", "app-lora"  # the presets measured
BASE_NAME = "base"  # the app's name for the shipped base, the tab's default base
MIX = "sms"  # the tab's default data: the shipped SMS collection
WARMUP_STEPS = 3  # the first steps are not timed: allocation and caches


@dataclass(frozen=True)
class DefaultsMeasurement:
    """The tab's default finetuning, run once on one machine, and the per-step cost of LoRA beside it."""

    finetune: dict[str, Any]  # asdict of the ClassifierConfig run: the tab shows the figures only for these
    lora: dict[str, Any]  # asdict of the LoRA config timed beside it
    base: str  # the app's name for the base
    mix: str
    threads: int
    seconds: float  # the whole job: loading, training every epoch, saving, measuring every test set
    accuracy: dict[str, float]  # by test set name (`gpt.classify.data.SET_TITLES`)
    timed_steps: int  # steps timed of each, after WARMUP_STEPS, on the same batches
    seconds_per_step: float  # the defaults' median
    lora_seconds_per_step: float
    machine: str
    date: str

    @property
    def lora_slowdown(self) -> float:
        return self.lora_seconds_per_step / self.seconds_per_step

    def matches(self, defaults: ClassifierConfig, lora: ClassifierConfig) -> bool:
        """Whether these figures are of `defaults` and `lora`: figures of other settings would mislead.

        A setting added after the figures were measured counts as its default, which is what they ran with.
        """
        try:
            measured = ClassifierConfig.from_dict(self.finetune), ClassifierConfig.from_dict(self.lora)
            return measured == (defaults, lora)
        except ValueError:
            return False


def read_measurement(path: str | Path = MEASURED_FILE) -> DefaultsMeasurement | None:
    """The stored measurement; None when there is none."""
    path = Path(path)
    return DefaultsMeasurement(**json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def machine() -> str:
    """The CPU's model name and its core count, as the figures' context."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    return f"{names[0] if names else platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def seconds_per_step(base: str | Path, cfg: ClassifierConfig, data_mix: data.DataMix, steps: int) -> float:
    """The median seconds of `steps` optimizer steps of `cfg` on `data_mix`, after a warm-up; no quick checks."""
    setup = prepare_training(base, cfg, data_mix)
    stamps: list[float] = []

    def on_event(event: TrainEvent) -> None:
        if event.kind == "step":
            stamps.append(time.perf_counter())
            if len(stamps) == WARMUP_STEPS + steps:
                monitor.request_stop()

    monitor = TrainingMonitor(on_event)
    train_classifier(setup.model, setup.train_loader, setup.val_loader, replace(cfg, eval_every=0), setup.pad_id,
                     monitor=monitor)
    timed = stamps[WARMUP_STEPS - 1:]
    return statistics.median(after - before for before, after in zip(timed, timed[1:], strict=False))


def measure(base: str | Path = SHIPPED_BASE, threads: int = 1, steps: int = 40,
            defaults: ClassifierConfig | None = None, lora: ClassifierConfig | None = None) -> DefaultsMeasurement:
    """Run the tab's defaults once as its job does, then time them and LoRA step by step."""
    defaults = defaults or CLASSIFIER_PRESETS[DEFAULTS]
    lora = lora or CLASSIFIER_PRESETS[LORA]
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="app-defaults-") as tmp:
        start = time.perf_counter()
        job = finetune_job(base=base, cfg=defaults, out=Path(tmp) / "classifier", data_source="offline", mix=MIX,
                           base_name=BASE_NAME, data_file=None)
        seconds = time.perf_counter() - start
    data_mix = data.load_mix(MIX, "offline")
    return DefaultsMeasurement(
        finetune=asdict(defaults), lora=asdict(lora), base=BASE_NAME, mix=MIX, threads=threads, seconds=seconds,
        accuracy=job.test_accuracy, timed_steps=steps,
        seconds_per_step=seconds_per_step(base, defaults, data_mix, steps),
        lora_seconds_per_step=seconds_per_step(base, lora, data_mix, steps),
        machine=machine(), date=time.strftime("%Y-%m-%d"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=40, help="steps timed of each (default: %(default)s)")
    parser.add_argument("--out", default=str(MEASURED_FILE), help="where to write the figures (default: %(default)s)")
    args = parser.parse_args(argv)
    measured = measure(threads=args.threads, steps=args.steps)
    write_text_atomic(Path(args.out), json.dumps(asdict(measured), indent=2) + "\n")
    print(json.dumps(asdict(measured), indent=2))
    print(f"LoRA is {measured.lora_slowdown:.1f}x slower per step")


if __name__ == "__main__":
    main()
