"""Configs read from files: every value of its field's type, one line naming the field; Python callers unchanged."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from gpt.classify.finetune import CLASSIFIER_PRESETS, ClassifierConfig
from gpt.config import GPTConfig, config_from_dict
from gpt.instruct.finetune import INSTRUCT_PRESETS, InstructConfig
from gpt.lora import LoRAConfig
from gpt.preference.dpo import PREFERENCE_PRESETS, PreferenceConfig
from gpt.pretrain.trainer import PretrainConfig

TINY = GPTConfig.preset("tiny").to_dict()
PRETRAIN = PretrainConfig(model=GPTConfig.preset("tiny")).to_dict()


@pytest.mark.parametrize("change, message", [
    ({"n_layers": 5.0}, "GPTConfig.n_layers must be an integer, got 5.0"),
    ({"vocab_size": "512"}, "GPTConfig.vocab_size must be an integer, got '512'"),
    ({"emb_dim": True}, "GPTConfig.emb_dim must be an integer, got True"),
    ({"n_kv_heads": 2.0}, "GPTConfig.n_kv_heads must be an integer, got 2.0"),
    ({"qkv_bias": "yes"}, "GPTConfig.qkv_bias must be true or false, got 'yes'"),
    ({"tie_weights": 1}, "GPTConfig.tie_weights must be true or false, got 1"),
    ({"positions": 3}, "GPTConfig.positions must be a string, got 3"),
    ({"drop_rate": "0.1"}, "GPTConfig.drop_rate must be a number, got '0.1'"),
    ({"rope_base": False}, "GPTConfig.rope_base must be a number, got False"),
    ({"rope_base": 10**400}, "GPTConfig.rope_base must be a finite number, got an integer of 401 digits"),
    ({"drop_rate": float("nan")}, "GPTConfig.drop_rate must be a finite number, got nan"),
    ({"n_layers": 10**400}, "GPTConfig.n_layers must be between 1 and 128, got an integer"),
])
def test_a_model_config_from_a_file_is_typed_field_by_field(change: dict, message: str) -> None:
    data = json.loads(json.dumps(TINY | change))  # as a file holds it
    with pytest.raises(ValueError) as err:
        GPTConfig.from_dict(data)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_json_numbers_become_the_fields_types() -> None:
    """JSON writes 10000.0 as 10000 if a tool rounds it: a float field takes the integer as a float."""
    cfg = GPTConfig.from_dict(TINY | {"positions": "rotary", "rope_base": 500000, "n_kv_heads": None})
    assert isinstance(cfg.rope_base, float) and cfg.architecture() == "rotary positions (base 500,000)"
    assert GPTConfig.from_dict(json.loads(json.dumps(TINY))) == GPTConfig.preset("tiny")


def test_python_callers_keep_their_leeway_but_not_for_switches() -> None:
    """Forms build configs in Python and convert first; a bool is checked for everyone, in `check_options`."""
    assert GPTConfig.preset("tiny", drop_rate=0).drop_rate == 0
    with pytest.raises(ValueError, match=r"^GPTConfig.qkv_bias must be true or false, got 'yes'$"):
        GPTConfig.preset("tiny", qkv_bias="yes")
    with pytest.raises(ValueError, match=r"^InstructConfig.mask_prompt must be true or false, got 1$"):
        InstructConfig(mask_prompt=1)


@pytest.mark.parametrize("change, message", [
    ({"max_steps": 10.0}, "PretrainConfig.max_steps must be an integer, got 10.0"),
    ({"lr": "1e-3"}, "PretrainConfig.lr must be a number, got '1e-3'"),
    ({"betas": [0.9]}, "PretrainConfig.betas must be a list of 2, got [0.9]"),
    ({"betas": [0.9, "x"]}, "PretrainConfig.betas[1] must be a number, got 'x'"),
    ({"compile": "false"}, "PretrainConfig.compile must be true or false, got 'false'"),
    ({"model": TINY | {"n_heads": 4.0}}, "GPTConfig.n_heads must be an integer, got 4.0"),
    ({"model": [1, 2]}, "GPTConfig must be a JSON object, got [1, 2]"),
])
def test_a_training_record_is_typed_and_its_model_too(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        PretrainConfig.from_dict(PRETRAIN | change)
    assert str(err.value) == message


def test_a_training_record_round_trips_and_skips_what_a_later_version_added() -> None:
    cfg = PretrainConfig(model=GPTConfig.preset("tiny"), betas=(0.8, 0.9), compile=True)
    assert PretrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict() | {"later": 1}))) == cfg
    with pytest.raises(ValueError, match=r"^PretrainConfig.model is missing$"):
        PretrainConfig.from_dict({"max_steps": 3})


@pytest.mark.parametrize("config_cls, presets", [(ClassifierConfig, CLASSIFIER_PRESETS),
                                                 (InstructConfig, INSTRUCT_PRESETS),
                                                 (PreferenceConfig, PREFERENCE_PRESETS)])
def test_every_finetuning_config_round_trips_through_a_file(config_cls, presets) -> None:
    for cfg in presets.values():
        assert config_cls.from_dict(json.loads(json.dumps(asdict(cfg)))) == cfg


@pytest.mark.parametrize("config_cls, change, message", [
    (ClassifierConfig, {"epochs": 2.0}, "ClassifierConfig.epochs must be an integer, got 2.0"),
    (ClassifierConfig, {"trainable_blocks": "all"}, "ClassifierConfig.trainable_blocks must be an integer, got 'all'"),
    (InstructConfig, {"group_by_length": "yes"}, "InstructConfig.group_by_length must be true or false, got 'yes'"),
    (InstructConfig, {"pretokenizer": 1}, "InstructConfig.pretokenizer must be a string, got 1"),
    (PreferenceConfig, {"beta": [0.1]}, "PreferenceConfig.beta must be a number, got [0.1]"),
    (PreferenceConfig, {"max_pairs": 1.5}, "PreferenceConfig.max_pairs must be an integer, got 1.5"),
    (PreferenceConfig, {"wat": 1}, "unknown PreferenceConfig fields: ['wat']"),
    (LoRAConfig, {"targets": ["qkv", 2]}, "LoRAConfig.targets[1] must be a string, got 2"),
])
def test_a_finetuning_config_from_a_file_is_typed(config_cls, change: dict, message: str) -> None:
    from_dict = getattr(config_cls, "from_dict", lambda data: config_from_dict(config_cls, data))
    with pytest.raises(ValueError) as err:
        from_dict(asdict(config_cls()) | change)
    assert str(err.value) == message
