"""`python -m gpt finetune-classifier`: its flags (LoRA, head token, a data file too), the re-measure mode, errors,
and the card's command."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest

from gpt.checkpoint import CARD_FILE
from gpt.classify.classifier import CLASSIFIER_CONFIG, METRICS_FILE, parse_test_metrics
from gpt.classify.data import SMS_TEST
from gpt.classify.finetune import ClassifierConfig, measure_classifier
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
    assert cfg == ClassifierConfig(trainable_blocks=None, epochs=8, lr=2e-4, weight_decay=0.0, head_token="mean")
    assert config_overrides(parser().parse_args([]), ClassifierConfig) == {}
    with pytest.raises(SystemExit):
        parser().parse_args(["--trainable-blocks", "last"])
    assert parser().parse_args([]).mix == "sms"  # what every classifier before the mix was trained on
    assert parser().parse_args(["--mix", "mixed"]).mix == "mixed"
    lora = parser().parse_args(["--trainable-blocks", "0", "--lora-rank", "8", "--lora-alpha", "32", "--head-token",
                                "first", "--data-file", "mine.csv"])
    cfg = ClassifierConfig.preset("book", **config_overrides(lora, ClassifierConfig))
    assert (cfg.lora_rank, cfg.lora_alpha, cfg.head_token, lora.data_file) == (8, 32.0, "first", "mine.csv")
    with pytest.raises(SystemExit):
        parser().parse_args(["--head-token", "middle"])
    with pytest.raises(SystemExit):
        parser().parse_args(["--mix", "everything"])


@pytest.mark.slow
def test_reload_measures_the_stored_figures(trained_dir, capsys):
    stored = parse_test_metrics((trained_dir / METRICS_FILE).read_text())
    assert measure_classifier(trained_dir) == stored
    assert main(["finetune-classifier", "--evaluate", str(trained_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    sms = stored[SMS_TEST]
    assert f"test accuracy: {sms.accuracy:.2%} on 258 messages" in out and sms.data_source in out
    assert "SMS test split" in out


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, base_dir, capsys):
    assert main(["finetune-classifier", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert main(["finetune-classifier", "--quiet"]) == 2
    assert main(["finetune-classifier", "--evaluate", str(tmp_path), "--device", "cpu"]) == 2
    assert main(["finetune-classifier", "--lora-rank", "8", "--out", str(tmp_path / "x")]) == 2
    (tmp_path / "numbers.csv").write_text("text,label\n" + "hello,1\nbye,0\n" * 20)
    assert main(["finetune-classifier", "--model", str(base_dir), "--data-file", str(tmp_path / "numbers.csv"),
                 "--out", str(tmp_path / "y")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 5 and "--out is required" in errors[1] and "no classifier" in errors[2]
    assert "--trainable-blocks 0" in errors[3] and "the labels are numbers" in errors[4]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()  # refused before anything was written


@pytest.mark.slow  # reads the finetuned runs' fixtures by name (request.getfixturevalue)
@pytest.mark.parametrize("run, mix", [("trained_dir", "sms"), ("mixed_dir", "mixed"), ("lora_run", "file")])
def test_the_cards_reproduce_command_parses_back_to_the_same_run(request, base_dir, table_file, run, mix):
    trained_dir = request.getfixturevalue(run)
    trained_dir = trained_dir[0] if isinstance(trained_dir, tuple) else trained_dir  # lora_run: (folder, output)
    card = (trained_dir / CARD_FILE).read_text()
    argv = shlex.split(re.search(r"Reproduce the classifier: `(.+)`", card)[1])
    assert argv[:4] == ["python", "-m", "gpt", "finetune-classifier"]
    args = parser().parse_args(argv[4:])
    config = json.loads((trained_dir / CLASSIFIER_CONFIG).read_text())
    assert asdict(ClassifierConfig.preset(args.preset, **config_overrides(args, ClassifierConfig))) == \
        config["meta"]["finetune"]
    assert Path(args.model).resolve() == base_dir.resolve() and Path(args.out) == trained_dir
    if mix == "file":
        assert Path(args.data_file).resolve() == table_file.resolve() and "--data " not in argv
    else:
        assert (args.data, args.mix, args.data_file) == ("offline", mix, None)
    assert (args.dtype, args.device) == ("bfloat16", "cpu")
    assert f"--evaluate {trained_dir}`" in card
