"""Training a classifier: it learns, reports its progress in order, stops when asked, and the pipeline
writes a complete classifier folder (also from OpenAI-style weights fetched by name)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from gpt.checkpoint import CARD_FILE
from gpt.classify import data
from gpt.classify.classifier import (
    CLASSIFIER_CONFIG,
    SHIPPED_DIR,
    attach_classifier_head,
    freeze_for_finetuning,
    load_classifier,
)
from gpt.classify.finetune import (
    ClassifierConfig,
    finetune_classifier,
    loss_and_accuracy,
    measure_classifier,
    train_classifier,
)
from gpt.data.splits import seeded_split
from gpt.training.events import TrainEvent, TrainingMonitor
from tests.helpers import TINY_NAME

EPOCH_FIGURES = {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "peak_memory_mb"}


@pytest.fixture(scope="module")
def datasets(corpus, tokenizer) -> tuple[data.SpamDataset, data.SpamDataset]:
    """Half the balanced messages (642): train on 70%, validate on the other 30%."""
    parts = seeded_split(data.balance(corpus.messages)[::2], data.SPLIT_FRACTIONS, seed=0)
    return data.SpamDataset(parts.train, tokenizer, 64), data.SpamDataset(parts.val + parts.test, tokenizer, 64)


@pytest.fixture
def loaders(datasets) -> tuple[DataLoader, DataLoader]:
    """Fresh loaders, so every test sees the same batch order."""
    train_set, val_set = datasets
    return (DataLoader(train_set, batch_size=16, shuffle=True, collate_fn=train_set.collate,
                       generator=torch.Generator().manual_seed(0)),
            DataLoader(val_set, batch_size=16, collate_fn=val_set.collate))


def classifier_model(make_base, blocks: int = 2):
    torch.manual_seed(0)
    model = attach_classifier_head(make_base(), 2)
    freeze_for_finetuning(model, blocks)
    return model


@pytest.mark.slow
def test_short_training_run_beats_chance_and_reports_in_order(make_base, tokenizer, loaders):
    train_loader, val_loader = loaders
    model = classifier_model(make_base)
    cfg = ClassifierConfig(trainable_blocks=2, epochs=3, lr=1e-3, eval_every=20, eval_batches=2)
    events: list[TrainEvent] = []
    training = train_classifier(model, train_loader, val_loader, cfg, tokenizer.eot_id,
                                monitor=TrainingMonitor(events.append))
    history = training.history
    assert [h.epoch for h in history] == [1, 2, 3] and training.stopped == ""
    assert history[-1].train_loss < history[0].train_loss
    _, accuracy = loss_and_accuracy(model, val_loader, tokenizer.eot_id)
    best = max(history, key=lambda h: h.rank_key)
    assert accuracy == best.val_accuracy  # the best epoch's weights were kept
    assert accuracy > 0.75  # balanced classes: chance is 0.5

    per_epoch, total = len(train_loader), 3 * len(train_loader)
    assert [e.kind for e in events][0] == "start" and [e.kind for e in events].count("epoch") == 3
    assert events[-1].kind == "done" and events[-1].epoch == best.epoch and f"epoch {best.epoch}" in events[-1].text
    assert all(e.total_steps == total for e in events)
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == list(range(1, total + 1))
    assert [e.epoch for e in steps] == [1 + i // per_epoch for i in range(total)]
    assert all(set(e.metrics) == {"train_loss"} for e in steps)
    assert [e.step for e in events if e.kind == "eval"] == list(range(20, total + 1, 20))
    for before, event in zip(events, events[1:], strict=False):
        if event.kind == "eval":  # right after the step it measured
            assert before.kind == "step" and before.step == event.step and set(event.metrics) == {"val_loss"}
        if event.kind == "epoch":  # after the epoch's last step, with its figures
            assert event.step == event.epoch * per_epoch and set(event.metrics) == EPOCH_FIGURES
            assert event.metrics["val_loss"] == history[event.epoch - 1].val_loss


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", ["step 3", "step 2 of epoch 2"])
def test_a_stop_request_keeps_a_partial_or_the_best_finished_epoch(make_base, tokenizer, loaders, stop_at):
    """Asked to stop in the first epoch, the weights so far are evaluated and kept; asked later, the best
    finished epoch's weights are put back. Either way training returns normally."""
    train_loader, val_loader = loaders
    per_epoch = len(train_loader)
    stop_step = 3 if stop_at == "step 3" else per_epoch + 2
    model = classifier_model(make_base, blocks=1)
    initial_head = model.out_head.weight.detach().clone()
    events: list[TrainEvent] = []
    at_epoch_end: dict[str, torch.Tensor] = {}

    def listener(event: TrainEvent) -> None:
        events.append(event)
        if event.kind == "step" and event.step == stop_step:
            monitor.request_stop()
        if event.kind == "epoch":
            at_epoch_end.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    monitor = TrainingMonitor(listener)
    cfg = ClassifierConfig(trainable_blocks=1, epochs=3, lr=1e-3, eval_every=0)
    training = train_classifier(model, train_loader, val_loader, cfg, tokenizer.eot_id, monitor=monitor)

    assert [h.epoch for h in training.history] == [1] and "stop requested" in training.stopped
    steps_after_epoch_1 = max(stop_step - per_epoch, 0)
    expected = ["start"] + ["step"] * min(stop_step, per_epoch) + ["epoch"] + ["step"] * steps_after_epoch_1
    assert [e.kind for e in events] == [*expected, "stopped"]
    epoch_event, last = next(e for e in events if e.kind == "epoch"), events[-1]
    assert last.step == stop_step and last.epoch == 1 and last.text == training.stopped
    if stop_step < per_epoch:
        assert epoch_event.text == "partial epoch" and "the partial epoch 1" in training.stopped
        step_losses = [e.metrics["train_loss"] for e in events if e.kind == "step"]
        assert training.history[0].train_loss == pytest.approx(sum(step_losses) / stop_step)  # its 3 full batches
    else:
        assert epoch_event.text == "" and "partial" not in training.stopped
    for name, tensor in model.state_dict().items():  # the weights of the kept epoch, not of any later step
        assert torch.equal(tensor, at_epoch_end[name]), name
    assert not torch.equal(model.out_head.weight, initial_head)
    assert not model.training
    val_loss, val_accuracy = loss_and_accuracy(model, val_loader, tokenizer.eot_id)
    assert (val_loss, val_accuracy) == pytest.approx((training.history[0].val_loss, training.history[0].val_accuracy))


@pytest.mark.slow
def test_a_stopped_finetuning_still_writes_a_classifier_that_says_so(base_dir, tmp_path):
    def stop_early(event: TrainEvent) -> None:
        if event.kind == "step" and event.step == 2:
            monitor.request_stop()

    monitor = TrainingMonitor(stop_early)
    cfg = ClassifierConfig(trainable_blocks=1, epochs=2, lr=2e-3, batch_size=32)
    out = tmp_path / "stopped"
    classifier = finetune_classifier(base_dir, cfg, out, "offline", "float32", monitor=monitor)
    config = json.loads((out / CLASSIFIER_CONFIG).read_text())
    assert "stopped at step 2" in config["meta"]["stopped"] and len(config["meta"]["history"]) == 1
    card = (out / CARD_FILE).read_text()
    assert "Training was stopped early: stopped at step 2" in card
    assert classifier.test_metrics[data.SMS_TEST].n_test == 258 and classifier.predict("hello").label in ("ham", "spam")
    assert load_classifier(out).test_metrics == classifier.test_metrics


@pytest.mark.slow
def test_openai_weights_are_fetched_by_name(tiny_cached, tmp_path):
    """`--model gpt2-...` goes through gpt.pretrained; here an offline Hub cache holds a tiny GPT-2."""
    cfg = ClassifierConfig(epochs=1, lr=2e-3, batch_size=32)
    classifier = finetune_classifier(TINY_NAME, cfg, tmp_path / "gpt2-spam", "offline")
    config = json.loads((tmp_path / "gpt2-spam" / CLASSIFIER_CONFIG).read_text())
    assert config["base"]["pretrained"] == TINY_NAME and len(config["base"]["weights_sha256"]) == 64
    assert classifier.predict("hello").label in ("ham", "spam")
    card = (tmp_path / "gpt2-spam" / CARD_FILE).read_text()
    assert f"OpenAI's {TINY_NAME}" in card and f"--model {TINY_NAME} " in card


def test_finetuning_on_the_mix_records_it_and_measures_every_test_set(mixed_dir):
    config = json.loads((mixed_dir / CLASSIFIER_CONFIG).read_text())
    recorded = config["meta"]["data"]
    assert (recorded["mix"], recorded["kind"]) == ("mixed", "offline")
    assert recorded["sizes"] == data.load_mix("mixed", "offline").sizes()
    assert set(recorded["parts"]) == {"sms", "spamassassin", "modern"}
    classifier = load_classifier(mixed_dir)
    sets = {data.SMS_TEST: 258, data.SPAMASSASSIN_TEST: 634, data.MODERN_TEST: 250}
    assert {name: m.n_test for name, m in classifier.test_metrics.items()} == sets
    assert list(classifier.test_metrics) == list(sets)  # the SMS test split first
    assert measure_classifier(mixed_dir) == classifier.test_metrics  # the same sets come back from the config
    card = (mixed_dir / CARD_FILE).read_text()
    assert card.startswith("# Spam classifier") and "--mix mixed" in card
    for name, metrics in classifier.test_metrics.items():
        assert f"### {data.SET_TITLES[name]} ({metrics.n_test} messages)" in card
        assert metrics.data_source in card
    assert f"| spamassassin | {recorded['parts']['spamassassin']['source']} | 600 | 100 | 634 |" in card


def card_sections(card: str, evaluations: dict) -> dict[str, str]:
    """Each test set's part of a model card, under its heading."""
    return {name: card.split(f"### {data.SET_TITLES[name]} ")[1].split("###")[0].split("Re-measure")[0]
            for name in evaluations}


@pytest.mark.slow
def test_the_shipped_classifier_measures_the_figures_its_card_states():
    """Same splits, same test messages, same weights: re-measuring gives exactly what was stored, and the
    card states exactly those figures, for every test set."""
    shipped = load_classifier(SHIPPED_DIR)
    assert measure_classifier(SHIPPED_DIR) == shipped.test_metrics
    assert list(shipped.test_metrics) == [data.SMS_TEST, data.SPAMASSASSIN_TEST, data.MODERN_TEST]
    card = (SHIPPED_DIR / CARD_FILE).read_text()
    for name, section in card_sections(card, shipped.test_metrics).items():
        m = shipped.test_metrics[name]
        assert f"({m.n_test} messages" in section and f"Accuracy: **{m.accuracy:.1%}**" in section, name
        for label, row in m.per_class.items():
            figures = " | ".join(f"{row[k]:.3f}" for k in ("precision", "recall", "f1"))
            assert f"| {label} | {figures} | {row['support']} |" in section, (name, label)
        for label, counts in zip(m.labels, m.confusion, strict=True):
            assert f"| true {label} | {' | '.join(map(str, counts))} |" in section, (name, label)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_finetuning_on_cuda_ships_a_classifier_that_loads_on_the_cpu(base_dir, tmp_path):
    cfg = ClassifierConfig(trainable_blocks=1, epochs=1, lr=2e-3, batch_size=32)
    on_gpu = finetune_classifier(base_dir, cfg, tmp_path / "cuda", "offline", "float32", device="cuda")
    assert on_gpu.model.out_head.weight.device.type == "cuda"
    on_cpu = load_classifier(tmp_path / "cuda")
    assert on_cpu.model.out_head.weight.device.type == "cpu"
    text = "WIN a FREE prize, call now"
    assert on_cpu.predict(text).probs == pytest.approx(on_gpu.predict(text).probs, abs=1e-3)
