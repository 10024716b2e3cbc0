"""The measurement of the Spam tab's defaults: one run through the tab's job function, scored on every test set,
and LoRA timed beside the defaults on the same batches."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from gpt.classify import app_defaults, data
from gpt.classify.finetune import CLASSIFIER_PRESETS, ClassifierConfig


def test_the_presets_measured_are_the_tabs_and_differ_only_in_what_trains():
    defaults, lora = CLASSIFIER_PRESETS[app_defaults.DEFAULTS], CLASSIFIER_PRESETS[app_defaults.LORA]
    assert (defaults.lora_rank, lora.trainable_blocks) == (0, 0) and lora.lora_rank > 0
    same = ("epochs", "batch_size", "lr", "seed", "head_token")
    assert [getattr(defaults, f) for f in same] == [getattr(lora, f) for f in same]


@pytest.mark.slow
def test_a_measurement_scores_every_test_set_and_times_both_ways(base_dir, tmp_path):
    defaults = ClassifierConfig(trainable_blocks=1, epochs=1, lr=2e-3, batch_size=32)
    lora = ClassifierConfig(trainable_blocks=0, lora_rank=2, epochs=1, lr=2e-3, batch_size=32)
    measured = app_defaults.measure(base_dir, threads=1, steps=4, defaults=defaults, lora=lora)
    assert list(measured.accuracy) == [data.SMS_TEST, data.SPAMASSASSIN_TEST, data.MODERN_TEST]
    assert all(0 <= value <= 1 for value in measured.accuracy.values())
    assert measured.matches(defaults, lora) and not measured.matches(lora, defaults)
    assert measured.seconds > 0 and measured.seconds_per_step > 0 and measured.lora_seconds_per_step > 0
    assert measured.lora_slowdown == measured.lora_seconds_per_step / measured.seconds_per_step
    path = tmp_path / "measured.json"
    path.write_text(json.dumps(asdict(measured)))
    assert app_defaults.read_measurement(path) == measured
    assert app_defaults.read_measurement(tmp_path / "none.json") is None
