"""The spam classifier: data balancing/splitting/padding, freezing, training, save/load, predict."""

from __future__ import annotations

import http.server
import io
import json
import sys
import threading
import types
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from gpt import classify, spam_data
from gpt.cli import main
from gpt.bpe import BytePairEncoder
from gpt.checkpoint import WEIGHTS_FILE, Checkpoint, save_checkpoint
from gpt.config import GPTConfig
from gpt.model import GPTModel
from gpt.spam_data import Message


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small models on a shared machine: one thread is faster than two that wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus() -> spam_data.SpamCorpus:
    return spam_data.load_corpus("offline")


@pytest.fixture(scope="module")
def tokenizer(corpus):
    """A 512-token BPE learned from the SMS texts, so the `tiny` preset's vocabulary fits."""
    return BytePairEncoder.train("\n".join(m.text for m in corpus.messages[:1500]), 512).to_tokenizer("sms512")


def tiny_base(tokenizer, seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel(GPTConfig.preset("tiny"))


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tokenizer) -> Path:
    return save_checkpoint(tiny_base(tokenizer), tmp_path_factory.mktemp("base"), tokenizer)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, base_dir) -> Path:
    """One short finetuning run through the command line, shared by the save/load/predict tests."""
    out = tmp_path_factory.mktemp("spam")
    code = main(["finetune-classifier", "--model", str(base_dir), "--out", str(out), "--data", "offline",
                 "--trainable-blocks", "2", "--epochs", "2", "--lr", "2e-3", "--batch-size", "32"])
    assert code == 0
    return out


# --- data -----------------------------------------------------------------------------------

def test_parse_tsv_reads_labels_and_refuses_other_lines():
    messages = spam_data.parse_tsv("ham\thello there\nspam\tWIN a prize\n\n", "x")
    assert messages == (Message("hello there", 0), Message("WIN a prize", 1))
    with pytest.raises(ValueError, match="line 2"):
        spam_data.parse_tsv("ham\tok\nmaybe\tnot a label\n", "x")


def test_offline_copy_is_the_documented_part(corpus):
    counts = Counter(m.label for m in corpus.messages)
    assert (counts[0], counts[1]) == (4220, 642)
    assert corpus.kind == "offline" and "4862" in corpus.source


def test_balance_undersamples_ham_to_the_spam_count(corpus):
    balanced = spam_data.balance(corpus.messages, seed=1)
    counts = Counter(m.label for m in balanced)
    assert counts[0] == counts[1] == 642
    assert {m for m in balanced if m.label == 1} == {m for m in corpus.messages if m.label == 1}
    assert set(balanced) <= set(corpus.messages)
    assert spam_data.balance(corpus.messages, seed=1) == balanced
    assert spam_data.balance(corpus.messages, seed=2) != balanced


def test_split_is_seeded_70_10_20_and_disjoint(corpus):
    messages = spam_data.balance(corpus.messages)
    parts = spam_data.split(messages, seed=5)
    n = len(messages)
    assert (len(parts.train), len(parts.val)) == (int(n * 0.7), int(n * 0.1))
    assert len(parts.train) + len(parts.val) + len(parts.test) == n
    assert Counter(parts.train + parts.val + parts.test) == Counter(messages)
    assert spam_data.split(messages, seed=5) == parts
    assert spam_data.split(messages, seed=6).train != parts.train
    with pytest.raises(ValueError, match="fractions"):
        spam_data.split(messages, fractions=(0.5, 0.5, 0.5))


def test_dataset_truncates_to_the_context_and_pads_batches_with_end_of_text(tokenizer):
    messages = [Message("hi", 0), Message("free entry " * 40, 1), Message("call me later ok", 0)]
    dataset = spam_data.SpamDataset(messages, tokenizer, context_length=16)
    lengths = [len(dataset[i][0]) for i in range(3)]
    assert lengths == [len(tokenizer.encode("hi")), 16, len(tokenizer.encode("call me later ok"))]
    ids, labels = next(iter(DataLoader(dataset, batch_size=3, collate_fn=dataset.collate)))
    assert ids.shape == (3, 16) and labels.tolist() == [0, 1, 0]
    assert ids[0, lengths[0]:].eq(tokenizer.eot_id).all() and not ids[0, :lengths[0]].eq(tokenizer.eot_id).any()
    assert ids[1].ne(tokenizer.eot_id).all()


def test_download_is_cached_and_auto_falls_back_to_the_offline_copy(tmp_path, corpus):
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("SMSSpamCollection", "ham\tsee you soon\nspam\tFREE tones! txt 8007\n")
        archive.writestr("readme", "the collection")
    body = payload.getvalue()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/sms.zip"
    try:
        first = spam_data.load_corpus("download", url=url, cache_dir=tmp_path)
        again = spam_data.load_corpus("auto", url=url, cache_dir=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert first.kind == "download"
    assert first.messages == (Message("see you soon", 0), Message("FREE tones! txt 8007", 1))
    assert again.messages == first.messages and len(hits) == 1  # the second load came from the cache

    dead_url = f"http://127.0.0.1:{server.server_port}/gone.zip"
    fallback = spam_data.load_corpus("auto", url=dead_url, cache_dir=tmp_path / "empty")
    assert fallback.kind == "offline" and fallback.messages == corpus.messages
    with pytest.raises(FileNotFoundError, match="could not download"):
        spam_data.load_corpus("download", url=dead_url, cache_dir=tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown data source"):
        spam_data.load_corpus("somewhere")


# --- model ----------------------------------------------------------------------------------

@pytest.mark.parametrize("blocks, expected_blocks", [(0, set()), (1, {1}), (2, {0, 1})])
def test_freezing_leaves_the_last_blocks_final_norm_and_head(tokenizer, blocks, expected_blocks):
    model = classify.attach_classifier_head(tiny_base(tokenizer), 2)
    trainable = classify.freeze_for_finetuning(model, blocks)
    trained_blocks = {int(name.split(".")[1]) for name in trainable if name.startswith("trf_blocks.")}
    assert trained_blocks == expected_blocks
    assert {"final_norm.weight", "final_norm.bias", "out_head.weight", "out_head.bias"} <= set(trainable)
    assert not any(name.startswith(("tok_emb", "pos_emb")) for name in trainable)
    assert model.out_head.weight.shape == (2, model.cfg.emb_dim)

    ids = torch.randint(0, 500, (2, 7))
    classify.class_logits(model, ids, tokenizer.eot_id).sum().backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None) == (name in trainable), name


def test_all_layers_and_bad_block_counts(tokenizer):
    model = classify.attach_classifier_head(tiny_base(tokenizer), 2)
    assert set(classify.freeze_for_finetuning(model, None)) == {n for n, _ in model.named_parameters()}
    with pytest.raises(ValueError, match="the model has 2"):
        classify.freeze_for_finetuning(model, 3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        classify.attach_classifier_head(model, 1)
    with pytest.raises(ValueError, match="trainable_blocks"):
        classify.FinetuneConfig(trainable_blocks=-1)


def test_class_logits_read_the_last_real_token_whatever_the_padding(tokenizer):
    model = classify.attach_classifier_head(tiny_base(tokenizer), 2).eval()
    short, long = tokenizer.encode("ok see you"), tokenizer.encode("URGENT you have won a prize call now")
    pad = tokenizer.eot_id
    batch = torch.tensor([short + [pad] * (len(long) - len(short)), long])
    together = classify.class_logits(model, batch, pad)
    alone = classify.class_logits(model, torch.tensor([short]), pad)
    torch.testing.assert_close(together[0], alone[0])
    torch.testing.assert_close(together[0], model.out_head(model.hidden_states(torch.tensor([short]))[0][0, -1]))


def test_short_training_run_beats_chance(tokenizer, corpus):
    parts = spam_data.split(spam_data.balance(corpus.messages)[::2], seed=0)  # 642 messages
    train_set = spam_data.SpamDataset(parts.train, tokenizer, 64)
    val_set = spam_data.SpamDataset(parts.val + parts.test, tokenizer, 64)
    torch.manual_seed(0)
    model = classify.attach_classifier_head(tiny_base(tokenizer), 2)
    classify.freeze_for_finetuning(model, 2)
    cfg = classify.FinetuneConfig(trainable_blocks=2, epochs=3, lr=1e-3, eval_every=20, eval_batches=2)
    train_loader = DataLoader(train_set, batch_size=16, shuffle=True, collate_fn=train_set.collate,
                              generator=torch.Generator().manual_seed(0))
    val_loader = DataLoader(val_set, batch_size=16, collate_fn=val_set.collate)
    history = classify.train_classifier(model, train_loader, val_loader, cfg, tokenizer.eot_id, progress=False)
    assert [h.epoch for h in history] == [1, 2, 3]
    assert history[-1].train_loss < history[0].train_loss
    _, accuracy = classify.loss_and_accuracy(model, val_loader, tokenizer.eot_id)
    assert accuracy == max(h.val_accuracy for h in history)  # the best epoch's weights were kept
    assert accuracy > 0.75  # balanced classes: chance is 0.5


def test_metrics_from_predictions():
    metrics = classify.TestMetrics.from_predictions([0, 0, 0, 1, 1], [0, 1, 0, 1, 0], ["ham", "spam"], "fixture")
    assert metrics.confusion == [[2, 1], [1, 1]]
    assert metrics.accuracy == pytest.approx(3 / 5)
    assert metrics.per_class["spam"]["precision"] == pytest.approx(1 / 2)
    assert metrics.per_class["ham"]["recall"] == pytest.approx(2 / 3)
    assert metrics.per_class["ham"]["f1"] == pytest.approx(2 / 3)
    assert metrics.confusion_frame().loc["true ham", "predicted spam"] == 1
    assert classify.TestMetrics.from_json(metrics.to_json()) == metrics


# --- the saved classifier -------------------------------------------------------------------

def test_saved_classifier_holds_only_the_trained_tensors(trained_dir, base_dir):
    from safetensors.torch import load_file

    names = set(load_file(str(trained_dir / classify.CLASSIFIER_WEIGHTS)))
    assert names and all(n.startswith(("trf_blocks.", "final_norm.", "out_head.")) for n in names)
    assert {"out_head.weight", "out_head.bias"} <= names
    config = json.loads((trained_dir / classify.CLASSIFIER_CONFIG).read_text())
    assert config["base"]["sha256"] == classify.sha256_of(base_dir / WEIGHTS_FILE)
    assert config["meta"]["data"]["sizes"] == {"train": 898, "val": 128, "test": 258}
    card = (trained_dir / classify.CARD_FILE).read_text()
    metrics = classify.TestMetrics.from_json((trained_dir / classify.METRICS_FILE).read_text())
    assert f"{metrics.accuracy:.1%}" in card and metrics.n_test == 258
    assert set(metrics.examples) == {"ham", "spam"} and all(metrics.examples.values())


def test_predict_shapes_errors_and_truncation(trained_dir):
    classifier = classify.load_classifier(trained_dir)
    prediction = classifier.predict("Congratulations! You won a FREE holiday, call 09061 now")
    assert prediction.label in ("ham", "spam")
    assert set(prediction.probs) == {"ham", "spam"} and sum(prediction.probs.values()) == pytest.approx(1)
    assert prediction.label == max(prediction.probs, key=prediction.probs.get)
    for empty in ("", "   \n\t"):
        with pytest.raises(ValueError, match="empty"):
            classifier.predict(empty)
    long_text = "please call me back when you can " * 200
    assert classifier.predict(long_text).label in ("ham", "spam")
    attention = classifier.token_attention(long_text)
    assert len(attention) == classifier.model.cfg.context_length
    assert sum(w for _, w in attention) == pytest.approx(1, abs=1e-4)
    assert "".join(piece for piece, _ in classifier.token_attention("see you at 5")) == "see you at 5"


def test_reload_measures_the_stored_figures(trained_dir, capsys):
    stored = classify.TestMetrics.from_json((trained_dir / classify.METRICS_FILE).read_text())
    assert classify.load_classifier(trained_dir).test_metrics == stored
    assert classify.measure(trained_dir) == stored
    assert main(["finetune-classifier", "--evaluate", str(trained_dir)]) == 0
    assert f"test accuracy: {stored.accuracy:.2%}" in capsys.readouterr().out


def test_a_different_base_is_refused(trained_dir, tokenizer, tmp_path):
    other = save_checkpoint(tiny_base(tokenizer, seed=1), tmp_path / "other", tokenizer)
    with pytest.raises(classify.ClassifierError, match="finetune again"):
        classify.load_classifier(trained_dir, base=other)
    with pytest.raises(FileNotFoundError, match="no classifier"):
        classify.load_classifier(tmp_path / "nowhere")
    assert main(["finetune-classifier", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2


def test_openai_weights_are_loaded_lazily_by_name(monkeypatch, tokenizer, tmp_path):
    """`--model gpt2-small` goes through gpt.weights.load_pretrained; here a stand-in serves a tiny model."""
    calls = []

    def load_pretrained(name, dtype=torch.float32, progress=True):
        calls.append(name)
        return Checkpoint(tiny_base(tokenizer), tokenizer, {})

    monkeypatch.setitem(sys.modules, "gpt.weights", types.SimpleNamespace(load_pretrained=load_pretrained))
    cfg = classify.FinetuneConfig(epochs=1, lr=2e-3, batch_size=32)
    classifier = classify.finetune("gpt2-small", cfg, tmp_path / "gpt2-spam", "offline", progress=False)
    config = json.loads((tmp_path / "gpt2-spam" / classify.CLASSIFIER_CONFIG).read_text())
    assert config["base"]["pretrained"] == "gpt2-small" and len(config["base"]["weights_sha256"]) == 64
    assert calls and set(calls) == {"gpt2-small"}
    assert classifier.predict("hello").label in ("ham", "spam")
