"""Shared by the app tests (no tests of its own): a tiny model folder and an app launched on 127.0.0.1.

The folder mirrors `assets/models/`: `base` and `instruct` are tiny random checkpoints on a BPE
trained here, `spam` a classifier delta on top of `base` with test figures. Random weights are
enough to check wiring, shapes and validation; what the shipped models say is not tested here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

from gpt.bpe import BytePairEncoder  # noqa: E402
from gpt.checkpoint import WEIGHTS_FILE, load_checkpoint, save_checkpoint  # noqa: E402
from gpt.classify import METRICS_FILE, TestMetrics, attach_classifier_head, save_classifier  # noqa: E402
from gpt.config import GPTConfig  # noqa: E402
from gpt.model import GPTModel  # noqa: E402
from gpt.tokenizer import sha256_of  # noqa: E402

TRAINING_TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
                 "must be in want of a wife. In the beginning God created the heaven and the earth. ") * 20
SPAM_EXAMPLES = {"ham": ["See you at lunch tomorrow"], "spam": ["WIN a free prize now, text CLAIM to 80082"]}


def make_model_folder(root: Path) -> Path:
    """base, instruct (context 512: room for an Alpaca prompt on a 300-token BPE) and spam, all tiny and random."""
    torch.manual_seed(0)
    tokenizer = BytePairEncoder.train(TRAINING_TEXT, 300).to_tokenizer("tiny-bpe")
    cfg = GPTConfig.preset("tiny", vocab_size=tokenizer.n_vocab, context_length=512)
    for name in ("base", "instruct"):
        save_checkpoint(GPTModel(cfg), root / name, tokenizer, meta={"purpose": "app tests"})
    base = root / "base"
    model = attach_classifier_head(load_checkpoint(base).model, 2)
    base_ref = {"checkpoint": str(base), "sha256": sha256_of(base / WEIGHTS_FILE)}
    save_classifier(model, root / "spam", base_ref, ["ham", "spam"], trainable_blocks=1, dtype="float32")
    metrics = TestMetrics.from_predictions([0, 0, 1, 1], [0, 1, 1, 1], ["ham", "spam"], "app tests", SPAM_EXAMPLES)
    (root / "spam" / METRICS_FILE).write_text(metrics.to_json())
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
