"""Command-line flags made from config dataclasses."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import pytest
import torch

from gpt.cli import main
from gpt.cli.options import add_config_arguments, add_threads_argument, config_overrides, set_threads
from gpt.config import option


@dataclass(frozen=True)
class Demo:
    """A config to build flags from."""

    steps: int = option(10, "how many steps")
    rate: float = option(0.5, "a rate")
    blocks: int | None = option(1, "blocks, or none for all")
    masked: bool = option(False, "mask the prompt")
    betas: tuple[float, float] = option((0.9, 0.95), "two decays")
    mode: str = option("fast", "how", choices=("fast", "slow"))
    width: int = option(8, "a width", low=1, high=64)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Demo)
    return parser.parse_args(argv)


def test_only_the_flags_given_override_and_types_come_from_the_annotations():
    assert config_overrides(parse(), Demo) == {}
    args = parse("--steps", "3", "--blocks", "none", "--masked", "--betas", "0.8", "0.9", "--mode", "slow")
    overrides = config_overrides(args, Demo)
    assert overrides == {"steps": 3, "blocks": None, "masked": True, "betas": (0.8, 0.9), "mode": "slow"}
    assert replace(Demo(), **overrides) == Demo(steps=3, blocks=None, masked=True, betas=(0.8, 0.9), mode="slow")
    assert config_overrides(parse("--no-masked", "--blocks", "2"), Demo) == {"masked": False, "blocks": 2}


def test_help_comes_from_the_fields_and_bad_values_are_refused(capsys):
    with pytest.raises(SystemExit):
        parse("--help")
    out = capsys.readouterr().out
    assert "how many steps (default: 10)" in out and "--rate" in out
    with pytest.raises(SystemExit):
        parse("--steps", "many")
    with pytest.raises(SystemExit):
        parse("--mode", "medium")


def test_a_value_out_of_the_fields_bounds_is_a_usage_error_and_the_help_shows_them(capsys) -> None:
    assert config_overrides(parse("--width", "64"), Demo) == {"width": 64}
    for bad in ("0", "65"):
        with pytest.raises(SystemExit) as exit_info:
            parse("--width", bad)
        assert exit_info.value.code == 2
        assert f"argument --width: value must be between 1 and 64, got {bad}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--help")
    assert "a width [1..64] (default: 8)" in " ".join(capsys.readouterr().out.split())


def test_the_commands_refuse_out_of_range_flags_before_any_work(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--text", str(tmp_path / "absent.txt"), "--out", str(tmp_path), "--n-layers", "129"])
    assert exit_info.value.code == 2
    assert "argument --n-layers: value must be between 1 and 128, got 129" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["finetune-classifier", "--lr", "2", "--out", str(tmp_path)])
    assert "argument --lr: value must be between 1e-06 and 1, got 2" in capsys.readouterr().err


def test_threads_default_to_one_and_refuse_zero() -> None:
    parser = argparse.ArgumentParser()
    add_threads_argument(parser)
    assert parser.parse_args([]).threads == 1
    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        set_threads(parser.parse_args(["--threads", "0"]).threads)
    assert torch.get_num_threads() == before  # a refused value changes nothing
