"""`python -m gpt finetune-rl` and `python -m gpt vote`: bad flags refused before any work, and short runs."""

from __future__ import annotations

import json

import pytest

from gpt.checkpoint import save_checkpoint
from gpt.cli import main
from gpt.reasoning.state import STATE_FILE


@pytest.fixture
def chat_model(make_checkpoint, tmp_path):
    checkpoint = make_checkpoint()
    return str(save_checkpoint(checkpoint.model, tmp_path / "chat", checkpoint.tokenizer, {"prompt_format": "alpaca"}))


@pytest.mark.parametrize(("argv", "said"), [
    (["finetune-rl", "--group-size", "0"], "--group-size: value must be between 2 and 256, got 0"),
    (["finetune-rl", "--group-size", "5000"], "got 5000"),
    (["finetune-rl", "--steps", "0"], "--steps: value must be between 1 and"),
    (["finetune-rl", "--task", "cubes"], "invalid choice: 'cubes'"),
    (["vote", "--n", "0"], "--n: value must be between 1 and 256, got 0"),
    (["vote", "--n", "4096"], "got 4096"),
    (["vote", "--temperature", "9"], "--temperature: value must be between 0.05 and 2"),
])
def test_bad_flags_are_usage_errors_before_any_work(argv, said, capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--model", str(tmp_path / "never-read")])
    assert stop.value.code == 2 and said in capsys.readouterr().err


def test_vote_refuses_an_empty_problem_set_in_one_line(capsys, tmp_path):
    assert main(["vote", "--problems", "0", "--model", str(tmp_path / "never-read")]) == 2
    assert capsys.readouterr().err.strip() == "error: --problems must be between 1 and 100,000, got 0"


def test_vote_prints_the_accuracy_table(chat_model, capsys):
    assert main(["vote", "--model", chat_model, "--problems", "2", "--n", "4", "--max-new-tokens", "3",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 held-out problems of hard" in printed and "| greedy |" in printed
    rows = [line.split("|")[1].strip() for line in printed.splitlines() if line.startswith("| ")]
    assert rows[-3:] == ["1", "2", "4"]


@pytest.mark.slow
def test_finetune_rl_stops_in_one_line_when_no_reply_is_ever_right(chat_model, capsys, tmp_path):
    out = tmp_path / "rl"
    assert main(["finetune-rl", "--model", chat_model, "--task", "three_digit_sum", "--steps", "5",
                 "--problems-per-step", "1", "--group-size", "2", "--max-new-tokens", "2", "--give-up-after", "1",
                 "--eval-problems", "0", "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: no sampled reply was right in the first 1 steps (2 replies)")
    assert not (out / STATE_FILE).exists()


@pytest.mark.slow
def test_finetune_rl_trains_saves_and_resumes(chat_model, capsys, tmp_path):
    out = tmp_path / "rl"
    flags = ["finetune-rl", "--model", chat_model, "--task", "sum", "--problems-per-step", "1", "--group-size", "2",
             "--max-new-tokens", "2", "--give-up-after", "1000", "--eval-problems", "2", "--out", str(out), "--quiet"]
    assert main([*flags, "--steps", "1"]) == 0
    assert "tuned at step 1 of 1" in capsys.readouterr().out and (out / STATE_FILE).is_file()
    assert main([*flags, "--steps", "2", "--resume"]) == 0
    assert "tuned at step 2 of 2" in capsys.readouterr().out
    record = json.loads((out / "rl_result.json").read_text())
    assert record["resumed_from"] == 1 and record["steps"] == 2 and len(record["history"]) == 2
    assert json.loads((out / "config.json").read_text())["meta"]["prompt_format"] == "alpaca"
