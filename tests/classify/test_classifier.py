"""The model side: the head, freezing, the logits, the held-out figures, and a saved classifier."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from gpt.checkpoint import CARD_FILE, WEIGHTS_FILE, UnverifiedWarning, save_checkpoint
from gpt.classify import classifier
from gpt.classify.classifier import ClassifierMetrics, dump_test_metrics, parse_test_metrics
from gpt.classify.data import MODERN_TEST, SMS_TEST, SPAMASSASSIN_TEST
from gpt.classify.finetune import ClassifierConfig
from gpt.classify.record import read_record, stored_parameters
from gpt.files import sha256_of


@pytest.mark.parametrize("blocks, expected_blocks", [(0, set()), (1, {1}), (2, {0, 1})])
def test_freezing_leaves_the_last_blocks_final_norm_and_head(make_base, tokenizer, blocks, expected_blocks):
    model = classifier.attach_classifier_head(make_base(), 2)
    trainable = classifier.freeze_for_finetuning(model, blocks)
    trained_blocks = {int(name.split(".")[1]) for name in trainable if name.startswith("trf_blocks.")}
    assert trained_blocks == expected_blocks
    assert {"final_norm.weight", "final_norm.bias", "out_head.weight", "out_head.bias"} <= set(trainable)
    assert not any(name.startswith(("tok_emb", "pos_emb")) for name in trainable)
    assert model.out_head.weight.shape == (2, model.cfg.emb_dim)

    ids = torch.randint(0, 500, (2, 7))
    classifier.class_logits(model, ids, tokenizer.eot_id).sum().backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None) == (name in trainable), name


def test_all_layers_and_bad_block_counts(make_base):
    model = classifier.attach_classifier_head(make_base(), 2)
    assert set(classifier.freeze_for_finetuning(model, None)) == {n for n, _ in model.named_parameters()}
    with pytest.raises(ValueError, match="the model has 2"):
        classifier.freeze_for_finetuning(model, 3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        classifier.attach_classifier_head(model, 1)
    with pytest.raises(ValueError, match="trainable_blocks"):
        ClassifierConfig(trainable_blocks=-1)


def test_class_logits_read_the_last_real_token_whatever_the_padding(make_base, tokenizer):
    model = classifier.attach_classifier_head(make_base(), 2).eval()
    short, long = tokenizer.encode("ok see you"), tokenizer.encode("URGENT you have won a prize call now")
    pad = tokenizer.eot_id
    batch = torch.tensor([short + [pad] * (len(long) - len(short)), long])
    together = classifier.class_logits(model, batch, pad)
    alone = classifier.class_logits(model, torch.tensor([short]), pad)
    torch.testing.assert_close(together[0], alone[0])
    torch.testing.assert_close(together[0], model.out_head(model.hidden_states(torch.tensor([short]))[0][0, -1]))


def test_metrics_from_predictions():
    metrics = ClassifierMetrics.from_predictions([0, 0, 0, 1, 1], [0, 1, 0, 1, 0], ["ham", "spam"], "fixture")
    assert metrics.confusion == [[2, 1], [1, 1]]
    assert metrics.accuracy == pytest.approx(3 / 5)
    assert metrics.per_class["spam"]["precision"] == pytest.approx(1 / 2)
    assert metrics.per_class["ham"]["recall"] == pytest.approx(2 / 3)
    assert metrics.per_class["ham"]["f1"] == pytest.approx(2 / 3)
    assert metrics.confusion_frame().loc["true ham", "predicted spam"] == 1
    assert ClassifierMetrics.from_json(metrics.to_json()) == metrics
    with pytest.raises(ValueError):  # a prediction per message, no fewer
        ClassifierMetrics.from_predictions([0, 1], [0], ["ham", "spam"], "fixture")


def test_test_metrics_file_holds_each_set_and_reads_the_one_set_files_of_before():
    sms = ClassifierMetrics.from_predictions([0, 1], [0, 1], ["ham", "spam"], "sms", {"ham": ["hi"], "spam": ["WIN"]})
    modern = ClassifierMetrics.from_predictions([0, 1, 1], [1, 1, 1], ["ham", "spam"], "modern")
    both = {SMS_TEST: sms, "modern-heldout": modern}
    assert parse_test_metrics(dump_test_metrics(both)) == both
    assert list(parse_test_metrics(dump_test_metrics({"modern-heldout": modern, SMS_TEST: sms}))) == [
        "modern-heldout", SMS_TEST]  # the order they were measured in
    assert parse_test_metrics(sms.to_json()) == {SMS_TEST: sms}  # every classifier before the mix: SMS only


def test_broken_test_figures_are_a_clear_error(trained_dir, base_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained_dir, broken)
    for text in ("{not json", '{"sms-test": {"accuracy": 1}}'):
        (broken / classifier.METRICS_FILE).write_text(text)
        with pytest.raises(classifier.ClassifierError, match="not valid test figures"):
            classifier.load_classifier(broken, base=base_dir)


def test_saved_classifier_holds_only_the_trained_tensors(trained_dir, base_dir):
    names = set(load_file(str(trained_dir / classifier.CLASSIFIER_WEIGHTS)))
    assert names and all(n.startswith(("trf_blocks.", "final_norm.", "out_head.")) for n in names)
    assert {"out_head.weight", "out_head.bias"} <= names
    config = json.loads((trained_dir / classifier.CLASSIFIER_CONFIG).read_text())
    assert config["base"]["sha256"] == sha256_of(base_dir / WEIGHTS_FILE)
    assert config["meta"]["data"]["sizes"] == {"train": 898, "val": 128, "test": 258 + 634 + 250}
    assert config["meta"]["data"]["mix"] == "sms"
    assert set(config["meta"]["data"]["parts"]) == {"sms", "spamassassin", "modern"}
    assert config["meta"]["device"] == "cpu" and "stopped" not in config["meta"]
    card = (trained_dir / CARD_FILE).read_text()
    evaluations = parse_test_metrics((trained_dir / classifier.METRICS_FILE).read_text())
    assert list(evaluations) == [SMS_TEST, SPAMASSASSIN_TEST, MODERN_TEST]  # trained on SMS, measured on each
    metrics = evaluations[SMS_TEST]
    assert f"{metrics.accuracy:.1%}" in card and metrics.n_test == 258
    assert "898 train, 128 validation, 258 test messages" in card
    assert "SpamAssassin test split (634 mails) and the modern held-out file (250 messages)" in card
    assert set(metrics.examples) == {"ham", "spam"} and all(metrics.examples.values())
    assert not list(trained_dir.glob(".*.tmp"))  # every file was moved into place


def test_the_folder_records_its_cost_and_figures(trained_dir):
    record = read_record(trained_dir)
    stored = load_file(str(trained_dir / classifier.CLASSIFIER_WEIGHTS))
    assert record.trainable_params == stored_parameters(trained_dir / classifier.CLASSIFIER_WEIGHTS)
    assert record.trainable_params == sum(t.numel() for t in stored.values())
    history = record.config["meta"]["history"]
    assert record.seconds == pytest.approx(sum(h["seconds"] for h in history)) and record.peak_memory_mb > 0
    assert record.val_accuracy == max(h["val_accuracy"] for h in history)
    assert record.test_set == SMS_TEST
    assert record.test_accuracy == parse_test_metrics((trained_dir / classifier.METRICS_FILE).read_text())[
        SMS_TEST].accuracy


def test_storage_dtype_is_checked_and_applied(make_base, base_dir, tmp_path):
    model = classifier.attach_classifier_head(make_base(), 2)
    base_ref = {"checkpoint": str(base_dir), "sha256": sha256_of(base_dir / WEIGHTS_FILE)}
    with pytest.raises(ValueError, match="unknown dtype"):
        classifier.save_classifier(model, tmp_path / "x", base_ref, ["ham", "spam"], 1, dtype="int8")
    classifier.save_classifier(model, tmp_path / "half", base_ref, ["ham", "spam"], 1, dtype="float16")
    assert {t.dtype for t in load_file(str(tmp_path / "half" / classifier.CLASSIFIER_WEIGHTS)).values()} == {
        torch.float16}
    loaded = classifier.load_classifier(tmp_path / "half")
    assert loaded.model.out_head.weight.dtype == torch.float32 and loaded.test_metrics == {}
    torch.testing.assert_close(loaded.model.out_head.weight, model.out_head.weight.half().float())


def test_predict_shapes_errors_and_truncation(trained_dir):
    loaded = classifier.load_classifier(trained_dir)
    assert isinstance(loaded, classifier.TextClassifier)
    prediction = loaded.predict("Congratulations! You won a FREE holiday, call 09061 now")
    assert prediction.label in ("ham", "spam")
    assert set(prediction.probs) == {"ham", "spam"} and sum(prediction.probs.values()) == pytest.approx(1)
    assert prediction.label == max(prediction.probs, key=prediction.probs.get)
    for empty in ("", "   \n\t"):
        with pytest.raises(ValueError, match="empty"):
            loaded.predict(empty)
    long_text = "please call me back when you can " * 200
    assert loaded.predict(long_text).label in ("ham", "spam")
    attention = loaded.token_attention(long_text)
    assert len(attention) == loaded.model.cfg.context_length
    assert sum(w for _, w in attention) == pytest.approx(1, abs=1e-4)
    assert "".join(piece for piece, _ in loaded.token_attention("see you at 5")) == "see you at 5"


def test_a_different_base_is_refused(trained_dir, make_base, tokenizer, tmp_path):
    other = save_checkpoint(make_base(seed=1), tmp_path / "other", tokenizer)
    with pytest.raises(classifier.ClassifierError, match="finetune again"):
        classifier.load_classifier(trained_dir, base=other)
    with pytest.raises(FileNotFoundError, match="no classifier"):
        classifier.load_classifier(tmp_path / "nowhere")


# -- the stored tensors carry their sha256 ---------------------------------------------------------------
def edit_config(folder, change) -> None:
    config = json.loads((folder / classifier.CLASSIFIER_CONFIG).read_text())
    change(config)
    (folder / classifier.CLASSIFIER_CONFIG).write_text(json.dumps(config))


def test_the_stored_tensors_sha256_is_recorded_and_checked(saved_classifier):
    weights = saved_classifier / classifier.CLASSIFIER_WEIGHTS
    config = classifier.read_classifier_config(saved_classifier)
    assert config["sha256"] == {classifier.CLASSIFIER_WEIGHTS: sha256_of(weights)}
    classifier.load_classifier(saved_classifier, require_checksums=True)
    data = bytearray(weights.read_bytes())
    data[-2000:] = bytes(b ^ 0xFF for b in data[-2000:])  # still a readable file: a classifier that guesses
    weights.write_bytes(bytes(data))
    with pytest.raises(classifier.ClassifierError, match="clf/classifier.safetensors: the file is damaged or was "
                                                         "changed after saving .its sha256 is not the one "
                                                         "classifier.json records") as err:
        classifier.load_classifier(saved_classifier)
    assert "\n" not in str(err.value)


def test_a_classifier_from_before_the_checksum_loads_with_a_warning_unless_it_is_an_upload(saved_classifier):
    edit_config(saved_classifier, lambda config: config.pop("sha256"))
    with pytest.warns(UnverifiedWarning, match="clf/classifier.json records no sha256 checksums"):
        classifier.load_classifier(saved_classifier)
    with pytest.raises(classifier.ClassifierError, match="clf/classifier.json records no sha256 checksums"):
        classifier.load_classifier(saved_classifier, require_checksums=True)


@pytest.mark.parametrize("checksums, message", [
    ("abc", "sha256 must map file names to sha256 digests, got str"),
    ({classifier.CLASSIFIER_WEIGHTS: "abc"}, "sha256 of classifier.safetensors must be 64 lowercase hex digits"),
    ({"model.safetensors": "0" * 64}, "sha256 names 'model.safetensors', which is none of this folder's files"),
    ({}, "clf/classifier.safetensors: classifier.json records no sha256 for this file"),
])
def test_a_malformed_checksum_is_refused_not_skipped(saved_classifier, checksums, message):
    edit_config(saved_classifier, lambda config: config.update(sha256=checksums))
    with pytest.raises(classifier.ClassifierError, match=re.escape(message)):
        classifier.load_classifier(saved_classifier)
