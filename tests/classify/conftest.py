"""Fixtures of the classifier tests: the offline SMS data, a BPE and a tiny base model on it, short
finetuning runs through the command line that the save/load/predict/CLI tests share (the book's way,
on the mix, and with LoRA on a table of one's own)."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from gpt.bpe import BytePairEncoder
from gpt.checkpoint import WEIGHTS_FILE, save_checkpoint
from gpt.classify import data
from gpt.classify.classifier import attach_classifier_head, save_classifier
from gpt.cli import main
from gpt.config import GPTConfig
from gpt.files import sha256_of
from gpt.model import GPTModel
from gpt.tokenizer import Tokenizer


@pytest.fixture(scope="package", autouse=True)
def one_thread() -> Iterator[None]:
    """Small models on a shared machine: one thread is faster than two that wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def corpus() -> data.SpamCorpus:
    return data.load_corpus("offline")


@pytest.fixture(scope="package")
def tokenizer(corpus) -> Tokenizer:
    """A 512-token BPE learned from the SMS texts, so the `tiny` preset's vocabulary fits."""
    return BytePairEncoder.train("\n".join(m.text for m in corpus.messages[:1500]), 512).to_tokenizer("sms512")


@pytest.fixture(scope="package")
def make_base() -> Callable[[int], GPTModel]:
    """A random `tiny` GPT (vocabulary 512), the same for the same seed."""

    def make(seed: int = 0) -> GPTModel:
        torch.manual_seed(seed)
        return GPTModel(GPTConfig.preset("tiny"))

    return make


@pytest.fixture(scope="package")
def base_dir(tmp_path_factory, tokenizer, make_base) -> Path:
    return save_checkpoint(make_base(), tmp_path_factory.mktemp("base"), tokenizer)


@pytest.fixture
def saved_classifier(make_base, base_dir, tmp_path) -> Path:
    """An untrained classifier saved beside its base: the files training writes, in a moment."""
    model = attach_classifier_head(make_base(), 2)
    base_ref = {"checkpoint": str(base_dir), "sha256": sha256_of(base_dir / WEIGHTS_FILE)}
    return save_classifier(model, tmp_path / "clf", base_ref, ["ham", "spam"], 1, dtype="float32")


@pytest.fixture(scope="package")
def trained_dir(tmp_path_factory, base_dir, one_thread) -> Path:
    """One short finetuning run through the command line, with its progress bar."""
    out = tmp_path_factory.mktemp("spam")
    code = main(["finetune-classifier", "--model", str(base_dir), "--out", str(out), "--data", "offline",
                 "--trainable-blocks", "2", "--epochs", "2", "--lr", "2e-3", "--batch-size", "32", "--device", "cpu"])
    assert code == 0
    return out


@pytest.fixture(scope="package")
def mixed_dir(tmp_path_factory, base_dir, one_thread) -> Path:
    """One short finetuning run on the mixed data (SMS, SpamAssassin, modern), through the command line."""
    out = tmp_path_factory.mktemp("spam-mixed")
    code = main(["finetune-classifier", "--model", str(base_dir), "--out", str(out), "--data", "offline",
                 "--mix", "mixed", "--trainable-blocks", "1", "--epochs", "1", "--lr", "2e-3", "--batch-size", "32",
                 "--device", "cpu", "--quiet"])
    assert code == 0
    return out


@pytest.fixture(scope="package")
def table_file(tmp_path_factory, corpus) -> Path:
    """A CSV of 240 SMS messages, half spam, under a header: a table of one's own."""
    balanced = data.balance(corpus.messages)
    rows = [m for label in (0, 1) for m in [m for m in balanced if m.label == label][:120]]
    path = tmp_path_factory.mktemp("table") / "sms.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((m.text, data.LABELS[m.label]) for m in rows)
    return path


@pytest.fixture(scope="package")
def lora_run(tmp_path_factory, base_dir, table_file, one_thread) -> tuple[Path, str]:
    """A LoRA finetuning on the table, the head reading the mean, through the command line; and what it printed."""
    out = tmp_path_factory.mktemp("lora")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["finetune-classifier", "--model", str(base_dir), "--out", str(out), "--data-file", str(table_file),
                     "--trainable-blocks", "0", "--lora-rank", "4", "--lora-alpha", "8", "--head-token", "mean",
                     "--epochs", "2", "--lr", "3e-3", "--batch-size", "16", "--device", "cpu", "--quiet"])
    assert code == 0
    return out, printed.getvalue()
