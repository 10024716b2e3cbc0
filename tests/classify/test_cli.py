"""`python -m gpt finetune-classifier`: its flags, the re-measure mode, errors, and the card's command."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest

from gpt.classify.classifier import CLASSIFIER_CONFIG, METRICS_FILE, parse_test_metrics
from gpt.classify.data import SMS_TEST
from gpt.classify.finetune import CARD_FILE, ClassifierConfig, measure_classifier
from gpt.cli import classify as command
from gpt.cli import main
from gpt.cli.options import config_overrides


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    return p


def test_flags_come_from_the_config_over_a_preset():
    args = parser().parse_args(["--preset", "shipped", "--trainable-blocks", "all", "--weight-decay", "0"])
    cfg = ClassifierConfig.preset(args.preset, **config_overrides(args, ClassifierConfig))
    assert cfg == ClassifierConfig(trainable_blocks=None, epochs=8, lr=1e-4, weight_decay=0.0)
    assert config_overrides(parser().parse_args([]), ClassifierConfig) == {}
    with pytest.raises(SystemExit):
        parser().parse_args(["--trainable-blocks", "last"])
    assert parser().parse_args([]).mix == "sms"  # what every classifier before the mix was trained on
    assert parser().parse_args(["--mix", "mixed"]).mix == "mixed"
    with pytest.raises(SystemExit):
        parser().parse_args(["--mix", "everything"])


def test_reload_measures_the_stored_figures(trained_dir, capsys):
    stored = parse_test_metrics((trained_dir / METRICS_FILE).read_text())
    assert measure_classifier(trained_dir) == stored
    assert main(["finetune-classifier", "--evaluate", str(trained_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    sms = stored[SMS_TEST]
    assert f"test accuracy: {sms.accuracy:.2%} on 258 messages" in out and sms.data_source in out
    assert "SMS test split" in out


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert main(["finetune-classifier", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert main(["finetune-classifier", "--quiet"]) == 2
    assert main(["finetune-classifier", "--evaluate", str(tmp_path), "--device", "cpu"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and "--out is required" in errors[1] and "no classifier" in errors[2]


@pytest.mark.parametrize("run, mix", [("trained_dir", "sms"), ("mixed_dir", "mixed")])
def test_the_cards_reproduce_command_parses_back_to_the_same_run(request, base_dir, run, mix):
    trained_dir = request.getfixturevalue(run)
    card = (trained_dir / CARD_FILE).read_text()
    argv = shlex.split(re.search(r"Reproduce the classifier: `(.+)`", card)[1])
    assert argv[:4] == ["python", "-m", "gpt", "finetune-classifier"]
    args = parser().parse_args(argv[4:])
    config = json.loads((trained_dir / CLASSIFIER_CONFIG).read_text())
    assert asdict(ClassifierConfig.preset(args.preset, **config_overrides(args, ClassifierConfig))) == \
        config["meta"]["finetune"]
    assert Path(args.model).resolve() == base_dir.resolve() and Path(args.out) == trained_dir
    assert (args.data, args.mix, args.dtype, args.device) == ("offline", mix, "bfloat16", "cpu")
    assert f"--evaluate {trained_dir}`" in card
