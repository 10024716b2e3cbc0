"""`python -m gpt finetune-instruct`: finetune and score, score only, GPT-2 bases, flags from the config."""

from __future__ import annotations

import json

import pytest

import gpt.pretrained
from gpt.checkpoint import load_checkpoint, save_checkpoint
from gpt.cli import main
from gpt.cli.instruct import model_ref
from gpt.instruct.data import load_entries, save_entries, split_entries
from gpt.instruct.evaluate import load_model_eval


@pytest.fixture
def data(entries, tmp_path):
    """60 entries: 51 train / 6 test / 3 validation, each with the fact it asks."""
    return str(save_entries([{**e, "fact": e["instruction"]} for e in entries * 2], tmp_path / "data.json.gz"))


@pytest.mark.slow
def test_cli_finetunes_and_evaluates(make_checkpoint, data, tmp_path, capsys):
    base = make_checkpoint(context_length=128)
    save_checkpoint(base.model, tmp_path / "base", base.tokenizer)
    out = tmp_path / "out"
    assert main(["finetune-instruct", "--model", str(tmp_path / "base"), "--data", data,
                 "--epochs", "1", "--batch-size", "4", "--out", str(out), "--max-new-tokens", "8"]) == 0
    report = json.loads((out / "instruct_eval.json").read_text())
    assert list(report) == [f"{tmp_path / 'base'} (untuned)", f"{out} (finetuned)"]
    assert all(r["n"] == 6 for r in report.values())
    own = load_model_eval(out)  # the finetuned model's own report, beside its weights, for the Chat tab
    assert own["tasks"] == report[f"{out} (finetuned)"]["tasks"] and own["n_train"] == 51
    split = split_entries(load_entries(data))
    trained = {e["fact"] for e in split.train}
    assert own["seen"] == round(100 * sum(e["fact"] in trained for e in split.test) / len(split.test), 1)
    meta = load_checkpoint(out).meta
    assert meta["n_train"] == 51 and meta["split_seed"] == 123 and meta["finetune"]["lr"] == 1e-3  # shipped preset
    printed = capsys.readouterr().out
    assert "data " + data + ": 51 train / 6 test / 3 validation" in printed
    assert "| score (EM short / ROUGE-L long) |" in printed and "finetuned in" in printed
    assert main(["finetune-instruct", "--evaluate", str(out), "--eval-limit", "2", "--data", data,
                 "--out", str(tmp_path / "scores"), "--quiet"]) == 0
    assert json.loads((tmp_path / "scores" / "instruct_eval.json").read_text())[str(out)]["n"] == 2
    assert not (tmp_path / "scores" / "eval.json").exists()  # no model in that folder
    (out / "eval.json").unlink()
    assert main(["finetune-instruct", "--evaluate", str(out), "--eval-limit", "3", "--data", data,
                 "--out", str(out), "--quiet"]) == 0
    assert load_model_eval(out)["n"] == 3 and "| task | held-out entries |" in capsys.readouterr().out
    assert main(["finetune-instruct", "--evaluate", str(out), "--data", str(tmp_path / "missing.json"),
                 "--out", str(out)]) == 2


@pytest.mark.slow
def test_config_flags_and_the_seed_reach_the_run(make_checkpoint, data, tmp_path):
    base = make_checkpoint(context_length=128)
    save_checkpoint(base.model, tmp_path / "base", base.tokenizer)
    out = tmp_path / "out"
    assert main(["finetune-instruct", "--model", str(tmp_path / "base"), "--data", data, "--no-eval", "--quiet",
                 "--epochs", "1", "--batch-size", "4", "--lr", "1e-4", "--no-mask-prompt", "--autocast", "float32",
                 "--weight-decay", "0", "--seed", "7", "--max-train", "8", "--pretokenizer", "digits",
                 "--device", "cpu", "--out", str(out)]) == 0
    meta = load_checkpoint(out).meta
    assert load_checkpoint(out).tokenizer.pretokenizer == "digits"
    assert meta["finetune"] == {"epochs": 1, "batch_size": 4, "lr": 1e-4, "weight_decay": 0.0, "mask_prompt": False,
                                "group_by_length": True, "seed": 7, "autocast": "float32", "lora_rank": 0,
                                "lora_alpha": 16.0, "trainable_blocks": None, "eval_every": 0, "pretokenizer": "digits",
                                "optimizer": "adamw"}
    assert meta["split_seed"] == 7 and meta["n_train"] == 8 and meta["steps"] == 2
    assert not (out / "instruct_eval.json").exists()
    with pytest.raises(SystemExit, match="2"):  # out of the field's bounds: argparse's usage error
        main(["finetune-instruct", "--model", str(tmp_path / "base"), "--data", data, "--epochs", "0"])
    # A second stage from the first: the chain is recorded, and it started from the base
    assert main(["finetune-instruct", "--model", str(out), "--data", data, "--no-eval", "--quiet", "--epochs", "2",
                 "--lr", "5e-5", "--batch-size", "4", "--max-train", "8", "--out", str(tmp_path / "again")]) == 0
    again = load_checkpoint(tmp_path / "again")
    assert again.meta["base_model"] == str(tmp_path / "base") and again.tokenizer.pretokenizer == "digits"
    assert again.meta["stages"] == [{"from": str(tmp_path / "base"), "epochs": 1, "lr": 1e-4},
                                    {"from": str(out), "epochs": 2, "lr": 5e-5}]


@pytest.mark.slow
def test_gpt2_models_come_from_the_weight_loader_with_the_books_preset(make_checkpoint, data, tmp_path,
                                                                        monkeypatch):
    loaded = []
    checkpoint = make_checkpoint(context_length=128)
    monkeypatch.setattr(gpt.pretrained, "load_pretrained", lambda name, *a, **kw: loaded.append(name) or checkpoint)
    out = tmp_path / "out"
    assert main(["finetune-instruct", "--model", "gpt2-small", "--data", data, "--no-eval", "--quiet",
                 "--epochs", "1", "--batch-size", "4", "--out", str(out)]) == 0
    assert loaded == ["gpt2-small"]
    meta = load_checkpoint(out).meta
    assert meta["base_model"] == "gpt2-small" and meta["finetune"]["lr"] == 5e-5 and not meta["finetune"]["mask_prompt"]


@pytest.mark.slow
@pytest.mark.parametrize(("flags", "method", "trainable"), [
    ([], "all layers", None),
    (["--trainable-blocks", "1"], "the last 1 block", None),
    # rank 4 on both blocks of the tiny model (64 wide): A (4 x in) and B (out x 4) on qkv, out_proj, fc, proj
    (["--lora-rank", "4", "--lora-alpha", "8"], "LoRA rank 4 on all layers",
     2 * 4 * ((64 + 192) + (64 + 64) + (64 + 256) + (256 + 64))),
])
def test_the_cli_reports_what_trains_and_what_it_cost(make_checkpoint, data, tmp_path, capsys, flags, method,
                                                      trainable):
    base = make_checkpoint(context_length=128)
    save_checkpoint(base.model, tmp_path / "base", base.tokenizer)
    out = tmp_path / "out"
    assert main(["finetune-instruct", "--model", str(tmp_path / "base"), "--data", data, "--no-eval", "--quiet",
                 "--epochs", "2", "--batch-size", "8", "--max-train", "16", "--autocast", "float32", *flags,
                 "--device", "cpu", "--out", str(out)]) == 0
    meta = load_checkpoint(out).meta
    printed = capsys.readouterr().out
    assert f"trained {method}: {meta['trainable_params']:,} of {meta['total_params']:,} parameters" in printed
    assert "seconds per epoch: " in printed and "peak memory" in printed and "(process peak RSS)" in printed
    assert len(meta["epoch_seconds"]) == 2 and meta["peak_memory_mb"] > 10 and meta["prompt_format"] == "alpaca"
    assert meta["total_params"] == base.model.n_params()
    if trainable is not None:
        assert meta["trainable_params"] == trainable
    assert (out / "adapters.safetensors").is_file() == bool(trainable)
    if "--trainable-blocks" in flags:
        assert meta["trainable_params"] < meta["total_params"] / 2


def test_a_base_under_the_working_directory_is_named_relative_to_it(tmp_path, monkeypatch):
    """The shipped default base is an absolute path: the metadata of a shipped model must not carry it."""
    (tmp_path / "assets" / "base").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert model_ref(str(tmp_path / "assets" / "base")) == "assets/base"
    assert model_ref("gpt2-small") == "gpt2-small"  # a name, not a folder
    assert model_ref(str(tmp_path.parent)) == str(tmp_path.parent)  # outside the working directory: as given
