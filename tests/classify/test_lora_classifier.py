"""LoRA classifiers and where the head reads: the settings, the pooling, the files, and a whole run on a table."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from gpt.checkpoint import CARD_FILE, WEIGHTS_FILE
from gpt.classify import classifier, data
from gpt.classify.classifier import CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS, METRICS_FILE, parse_test_metrics
from gpt.classify.finetune import ClassifierConfig, measure_classifier
from gpt.files import sha256_of
from gpt.lora import LoRAConfig, LoRALinear

ADAPTED = {f"trf_blocks.{i}.{layer}.{m}" for i in range(2) for layer in ("att.qkv", "att.out_proj", "ff.fc", "ff.proj")
           for m in ("lora_a", "lora_b")}


def test_settings_are_checked():
    assert ClassifierConfig().lora is None and ClassifierConfig().head_token == "last"
    assert ClassifierConfig(trainable_blocks=0, lora_rank=8).lora == LoRAConfig(8, 16.0)
    for bad, message in [({"lora_rank": 8}, "set trainable_blocks to 0 \\(--trainable-blocks 0\\), not 1"),
                         ({"lora_rank": 8, "trainable_blocks": None}, "not all"),
                         ({"lora_rank": -1}, "lora_rank must be between 0 and"),
                         ({"trainable_blocks": 0, "lora_rank": 4, "lora_alpha": 0}, "lora_alpha must be between"),
                         ({"head_token": "middle"}, "head_token must be one of last, first, mean")]:
        with pytest.raises(ValueError, match=message):
            ClassifierConfig(**bad)


@pytest.mark.parametrize("head_token", classifier.HEAD_TOKENS)
def test_the_head_reads_the_last_the_first_or_the_mean_whatever_the_padding(make_base, tokenizer, head_token):
    model = classifier.attach_classifier_head(make_base(), 2).eval()
    short, long = tokenizer.encode("ok see you"), tokenizer.encode("URGENT you have won a prize call now")
    pad = tokenizer.eot_id
    batch = torch.tensor([short + [pad] * (len(long) - len(short)), long])
    together = classifier.class_logits(model, batch, pad, head_token)
    alone = classifier.class_logits(model, torch.tensor([short]), pad, head_token)
    torch.testing.assert_close(together[0], alone[0])
    hidden = model.hidden_states(torch.tensor([short]))[0][0]
    read = {"last": hidden[-1], "first": hidden[0], "mean": hidden.mean(dim=0)}[head_token]
    torch.testing.assert_close(alone[0], model.out_head(read))
    with pytest.raises(ValueError, match="unknown head token"):
        classifier.class_logits(model, batch, pad, "middle")


def lora_model(make_base):
    """A classifier with rank-4 adapters whose B is not zero (as after training), and its frozen rest."""
    torch.manual_seed(0)
    model = classifier.attach_classifier_head(make_base(), 2)
    trainable = classifier.freeze_for_finetuning(model, 0, LoRAConfig(4, 8.0))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_b.normal_(0, 0.05)
    return model, trainable


def test_with_lora_only_the_adapters_and_the_head_learn(make_base, tokenizer):
    model, trainable = lora_model(make_base)
    assert set(trainable) == ADAPTED | {"out_head.weight", "out_head.bias"}
    classifier.class_logits(model, torch.tensor([tokenizer.encode("hello there")]), tokenizer.eot_id).sum().backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == set(trainable)


def test_a_lora_classifier_stores_adapters_and_head_and_loads_merged_with_the_same_outputs(make_base, base_dir,
                                                                                             tokenizer, tmp_path):
    model, _ = lora_model(make_base)
    model.eval()
    base_ref = {"checkpoint": str(base_dir), "sha256": sha256_of(base_dir / WEIGHTS_FILE)}
    classifier.save_classifier(model, tmp_path / "lora", base_ref, ["ham", "spam"], 0, "float32", {},
                               head_token="mean", lora=LoRAConfig(4, 8.0))
    assert set(load_file(str(tmp_path / "lora" / CLASSIFIER_WEIGHTS))) == ADAPTED | {"out_head.weight",
                                                                                     "out_head.bias"}
    loaded = classifier.load_classifier(tmp_path / "lora")
    assert not any(isinstance(m, LoRALinear) for m in loaded.model.modules())  # merged: inference costs the base's
    assert loaded.head_token == "mean" and loaded.config["lora"] == {"rank": 4, "alpha": 8.0,
                                                                      "targets": ["qkv", "out_proj", "fc", "proj"]}
    ids = torch.tensor([tokenizer.encode("WIN a free prize now, call 0800")])
    with torch.no_grad():
        expected = torch.softmax(classifier.class_logits(model, ids, tokenizer.eot_id, "mean")[0], -1)
    text = "WIN a free prize now, call 0800"
    assert list(loaded.predict(text).probs.values()) == pytest.approx(expected.tolist(), abs=1e-5)
    assert len(loaded.token_attention(text)) == ids.shape[1]


def test_broken_lora_or_head_settings_in_a_folder_are_a_clear_error(lora_run, tmp_path):
    lora_dir, _ = lora_run
    cases = [("lora", {"rank": 0, "alpha": 8, "targets": ["qkv"]}, "LoRA rank must be >= 1"),
             ("lora", {"rank": 4, "alpha": 8, "targets": ["qkv"]}, "missing or unexpected"),  # not what was stored
             ("head_token", "middle", "head_token must be one of"),
             ("labels", ["ham"], "labels must be a list of at least two")]
    for i, (key, value, message) in enumerate(cases):
        broken = tmp_path / f"broken-{i}"
        shutil.copytree(lora_dir, broken)
        config = json.loads((broken / CLASSIFIER_CONFIG).read_text())
        config[key] = value
        config["base"]["checkpoint"] = str((lora_dir / config["base"]["checkpoint"]).resolve())
        (broken / CLASSIFIER_CONFIG).write_text(json.dumps(config))
        with pytest.raises(classifier.ClassifierError, match=message):
            classifier.load_classifier(broken)


def test_a_folder_from_before_lora_and_head_tokens_loads_as_before(trained_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(trained_dir, old)
    config = json.loads((old / CLASSIFIER_CONFIG).read_text())
    del config["head_token"], config["lora"]
    config["base"]["checkpoint"] = str((trained_dir / config["base"]["checkpoint"]).resolve())
    (old / CLASSIFIER_CONFIG).write_text(json.dumps(config))
    text = "Congratulations! You won a FREE holiday, call 09061 now"
    assert classifier.load_classifier(old).predict(text) == classifier.load_classifier(trained_dir).predict(text)


def test_a_lora_run_on_a_table_records_its_cost_and_measures_the_same_again(lora_run, table_file):
    lora_dir, printed = lora_run
    config = json.loads((lora_dir / CLASSIFIER_CONFIG).read_text())
    meta = config["meta"]
    assert config["labels"] == ["ham", "spam"] and config["head_token"] == "mean" and config["lora"]["rank"] == 4
    assert meta["finetune"]["lora_rank"] == 4 and meta["finetune"]["lora_alpha"] == 8.0
    d, hidden = 64, 256  # the tiny preset
    adapters = 2 * 4 * ((d + 3 * d) + (d + d) + (d + hidden) + (hidden + d))
    assert meta["trainable_params"] == adapters + 2 * d + 2
    assert meta["total_params"] > 10 * meta["trainable_params"]
    assert meta["peak_memory_mb"] > 10 and meta["peak_memory_of"] == "the process's peak RSS"
    assert all(h["seconds"] > 0 and h["peak_memory_mb"] > 0 for h in meta["history"]) and len(meta["history"]) == 2
    assert meta["seconds_per_epoch"] == pytest.approx(sum(h["seconds"] for h in meta["history"]) / 2)
    recorded = meta["data"]
    assert (recorded["kind"], recorded["mix"], recorded["sha256"]) == ("file", "file", sha256_of(table_file))
    assert (lora_dir / recorded["file"]).resolve() == table_file.resolve()
    assert recorded["sizes"] == {"train": 168, "val": 24, "test": 48}
    stored = parse_test_metrics((lora_dir / METRICS_FILE).read_text())
    assert list(stored) == [data.FILE_TEST] and stored[data.FILE_TEST].n_test == 48
    assert measure_classifier(lora_dir) == stored  # reloaded, merged: the same figures
    assert f"{meta['trainable_params']:,} trainable parameters of {meta['total_params']:,}" in printed
    assert "s per epoch" in printed and "trained LoRA rank 4, alpha 8, and the head" in printed
    card = (lora_dir / CARD_FILE).read_text()
    assert card.startswith("# Text classifier: ham, spam") and "LoRA adapters of rank 4" in card
    assert "read at the mean over the tokens of the message" in card and "peak memory (MB)" in card


def test_a_changed_or_missing_table_is_said_when_measuring_again(lora_run, table_file, tmp_path):
    lora_dir, _ = lora_run
    moved = tmp_path / "moved"
    shutil.copytree(lora_dir, moved)  # its data file is no longer where it says, relative to it
    config = json.loads((moved / CLASSIFIER_CONFIG).read_text())
    config["base"]["checkpoint"] = str((lora_dir / config["base"]["checkpoint"]).resolve())
    (moved / CLASSIFIER_CONFIG).write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="not there, or has changed"):
        measure_classifier(moved)
