"""`python -m gpt finetune-preference` and `python -m tools.build_preference_data`, end to end on a tiny model."""

from __future__ import annotations

import json

import pytest

from gpt.checkpoint import load_checkpoint, save_checkpoint
from gpt.cli import main
from gpt.instruct.data import save_entries
from gpt.instruct.evaluate import load_model_eval
from gpt.preference.data import load_pairs, split_pairs
from gpt.preference.dpo import PREFERENCE_PRESETS
from tools import build_preference_data


@pytest.fixture
def base(make_checkpoint, tmp_path):
    checkpoint = make_checkpoint()
    return str(save_checkpoint(checkpoint.model, tmp_path / "base", checkpoint.tokenizer))


@pytest.fixture
def instruct_data(entries, tmp_path):
    """60 entries: 51 train / 6 test / 3 validation."""
    return str(save_entries(entries * 2, tmp_path / "instruct.json.gz"))


@pytest.mark.slow
def test_cli_tunes_and_reports_before_and_after(base, pairs, instruct_data, tmp_path, capsys):
    tagged = [{**p, "split": "test" if i < 4 else "val" if i < 6 else "train"} for i, p in enumerate(pairs)]
    data = str(save_entries(tagged, tmp_path / "pairs.json.gz"))
    out = tmp_path / "out"
    assert main(["finetune-preference", "--model", base, "--data", data, "--instruct-data", instruct_data,
                 "--epochs", "1", "--batch-size", "4", "--max-pairs", "8", "--lr", "1e-3", "--eval-limit", "0",
                 "--max-new-tokens", "4", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"pairs {data}: 8 train / 4 held-out / 2 validation" in printed and "tuned in" in printed
    assert "| pairs | n | reward accuracy before |" in printed and "| score (EM short / ROUGE-L long) |" in printed
    meta = load_checkpoint(out).meta
    assert meta["base_model"] == base and meta["preference"]["lr"] == 1e-3
    assert meta["preference"]["beta"] == PREFERENCE_PRESETS["shipped"].beta
    assert meta["steps"] == 2 and meta["n_test_pairs"] == 4 and len(meta["reference_sha256"]) == 64
    own = load_model_eval(out)  # the Chat tab's report, with the untuned model's beside it
    assert own["n"] == 6 and own["base"]["model"] == base and own["sample"] == "the whole test split"
    record = json.loads((out / "preference_eval.json").read_text())
    assert record["before"]["n"] == record["after"]["n"] == 4 and record["before"]["reward_accuracy"] == 0
    assert record["train_pairs"] == {"rambling": 4, "impolite": 4} and record["preference"]["max_pairs"] == 8


def test_cli_refuses_bad_input(base, instruct_data, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": "q", "chosen": "a"}]')
    assert main(["finetune-preference", "--model", base, "--data", str(bad), "--instruct-data", instruct_data]) == 2
    assert "pair 0 has no 'rejected' field" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # out of the field's bounds: argparse's usage error
        main(["finetune-preference", "--model", base, "--beta", "0", "--instruct-data", instruct_data])


def test_the_builder_writes_tagged_pairs(base, instruct_data, tmp_path, capsys):
    out = tmp_path / "pairs.json.gz"
    build_preference_data.main(["--model", base, "--data", instruct_data, "--n-train", "5", "--n-val", "2",
                                "--max-new-tokens", "3", "--out", str(out)])
    split = split_pairs(load_pairs(out))
    assert (len(split.train), len(split.val), len(split.test)) == (5, 2, 6)
    assert all(p["how"] in {"model-wrong-greedy", "rambling", "impolite", "evasive"} for p in split.train)
    assert "13 pairs" in capsys.readouterr().out
