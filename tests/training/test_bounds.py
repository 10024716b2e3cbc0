"""Every config's bounds, written once in its fields: the presets lie within them, and a value outside is refused."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from gpt.classify.finetune import CLASSIFIER_PRESETS, ClassifierConfig
from gpt.config import PRESETS, GPTConfig, bounds, choices
from gpt.instruct.finetune import INSTRUCT_PRESETS, InstructConfig
from gpt.preference.dpo import PREFERENCE_PRESETS, PreferenceConfig
from gpt.pretrain.trainer import PretrainConfig

PRESETS_OF = {
    GPTConfig: list(PRESETS.values()),
    PretrainConfig: [PretrainConfig(model=model) for model in PRESETS.values()],
    ClassifierConfig: list(CLASSIFIER_PRESETS.values()),
    InstructConfig: list(INSTRUCT_PRESETS.values()),
    PreferenceConfig: list(PREFERENCE_PRESETS.values()),
}


def outside(config_cls: type, name: str) -> list[object]:
    """Values just below and well above a field's bounds, and one not among its choices."""
    low, high = bounds(config_cls, name)
    values: list[object] = []
    if low is not None:
        values.append(low - 1)
    if high is not None:
        values.append(high * 2 + 1)
    if choices(config_cls, name):
        values.append("none of them")
    return values


@pytest.mark.parametrize("config_cls", list(PRESETS_OF), ids=lambda c: c.__name__)
def test_every_preset_lies_within_the_bounds(config_cls: type) -> None:
    for preset in PRESETS_OF[config_cls]:
        assert replace(preset) == preset  # __post_init__ checks every bound again


@pytest.mark.parametrize("config_cls", list(PRESETS_OF), ids=lambda c: c.__name__)
def test_a_value_out_of_bounds_is_refused_naming_the_field(config_cls: type) -> None:
    preset = PRESETS_OF[config_cls][0]
    checked = 0
    for f in fields(config_cls):
        for value in outside(config_cls, f.name):
            with pytest.raises(ValueError, match=rf"^{config_cls.__name__}\.{f.name} must be"):
                replace(preset, **{f.name: value})
            checked += 1
    assert checked >= 4


def test_bounds_admit_the_largest_gpt2_and_the_relations_stay_checked() -> None:
    xl = PRESETS["gpt2-xl"]
    assert (xl.n_layers, xl.n_heads, xl.emb_dim) == (48, 25, 1600)
    with pytest.raises(ValueError, match="divisible"):
        replace(xl, n_heads=24)
    with pytest.raises(ValueError, match="warmup_steps"):
        PretrainConfig(model=xl, max_steps=10, warmup_steps=11)
    with pytest.raises(ValueError, match="min_lr"):
        PretrainConfig(model=xl, lr=1e-4, min_lr=1e-3)
    assert ClassifierConfig(trainable_blocks=None).trainable_blocks is None  # 'all' stays allowed
    assert PreferenceConfig(max_pairs=None).max_pairs is None
