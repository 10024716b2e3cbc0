"""The shipped base model: within its size budget, loads through the app's registry, and its card holds.

These tests read the committed `assets/models/base`, so they check the model that ships, not a
stand-in: its held-out figures are re-measured, and its samples must be corpus English.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from gpt.data.corpus import join_documents, load_corpus, source_of
from gpt.generate import SamplingConfig, generate
from gpt.pretrain.baselines import model_bits_per_byte
from gpt.training.loss import bits_per_byte, heldout_loss
from ui.registry import MODELS_DIR, ModelRegistry

pytestmark = pytest.mark.slow  # re-measures a shipped model's card on its real data

BASE = MODELS_DIR / "base"
WORD = re.compile(r"[A-Za-z]+")


@pytest.fixture(scope="module")
def base():
    return ModelRegistry().load("base", progress=False)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def test_base_fits_its_budget_and_its_card_reports_the_measured_figures():
    assert sum(f.stat().st_size for f in BASE.iterdir()) <= 12_000_000
    meta = json.loads((BASE / "metrics.json").read_text())
    card = (BASE / "MODEL_CARD.md").read_text()
    assert f"{meta['held_out_bits_per_byte']:.3f}" in card
    assert f"{meta['held_out_loss']:.4f}" in card
    assert f"{meta['tokens_seen']:,}" in card


def test_base_scores_held_out_text_as_its_card_says(base, corpus):
    """The whole held-out text re-scored from the shipped bf16 weights gives the card's loss and bits per byte."""
    meta = json.loads((BASE / "metrics.json").read_text())
    ids = [i for doc in corpus.held_out for i in base.tokenizer.encode(doc.text) + [base.tokenizer.eot_id]]
    tokens = np.asarray(ids, dtype=np.int64)  # as `gpt.data.tokenize_to_file` writes the held-out file
    loss, count = heldout_loss(base.model, tokens, batch_size=32)
    assert count == meta["held_out_tokens"]
    assert meta["held_out_bytes"] == len(join_documents(d.text for d in corpus.held_out).encode("utf-8"))
    assert loss == pytest.approx(meta["held_out_loss"], abs=0.01)
    measured = bits_per_byte(loss * count, meta["held_out_bytes"])
    assert measured == pytest.approx(meta["held_out_bits_per_byte"], abs=0.005)
    assert measured < min(meta["baselines"].values())  # below xz -9 and the byte n-grams on the same text


def test_base_scores_every_source_as_its_card_says(base, corpus):
    """Each source's held-out documents re-scored apart: the card's per-source table, and below its baselines."""
    table = json.loads((BASE / "sources.json").read_text())
    card = (BASE / "MODEL_CARD.md").read_text()
    assert {row["source"] for row in table} == {source_of(d) for d in corpus.held_out}
    for row in table:
        texts = [d.text for d in corpus.held_out if source_of(d) == row["source"]]
        assert row["held_out_bytes"] == len(join_documents(texts).encode("utf-8"))
        assert model_bits_per_byte(base.model, base.tokenizer, texts) == pytest.approx(row["model"], abs=0.005)
        assert row["model"] < min(row["xz"], row["ngram"]), row
        assert f"| {row['source']} | {row['held_out_bytes']:,} | {row['model']:.3f} | {row['xz']:.3f} |" in card


def test_base_writes_words_of_its_corpus(base, corpus):
    vocabulary = {w.lower() for doc in corpus.train for w in WORD.findall(doc.text)}
    prompts = ["It is a truth universally acknowledged", "And the LORD said unto Moses", "The city of",
               "Preheat the oven", "My fellow Americans"]
    words: list[str] = []
    for seed, prompt in enumerate(prompts):
        with torch.no_grad():
            ids = generate(base.model, base.tokenizer.encode(prompt),
                           SamplingConfig(max_new_tokens=60, temperature=0.7, top_k=40, seed=seed),
                           eot_id=base.tokenizer.eot_id)
        words += WORD.findall(base.tokenizer.decode(ids))
    assert len(words) >= 100
    unknown = [w for w in words if w.lower() not in vocabulary]
    assert len(unknown) <= 0.05 * len(words), unknown
