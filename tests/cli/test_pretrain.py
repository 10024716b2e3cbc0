"""`python -m gpt pretrain`: train, export, resume, and one-line errors."""

from __future__ import annotations

import gzip
import math

import pytest

from gpt.checkpoint import load_checkpoint
from gpt.cli import main
from tests.helpers import STORY as TEXT


@pytest.mark.slow
def test_pretrain_command_trains_exports_and_resumes(tmp_path, capsys):
    corpus = tmp_path / "story.txt.gz"
    corpus.write_bytes(gzip.compress(TEXT.encode()))
    out = tmp_path / "run"
    args = ["pretrain", "--text", str(corpus), "--out", str(out), "--preset", "tiny", "--vocab-size", "300",
            "--context-length", "16", "--max-steps", "6", "--batch-size", "2", "--warmup-steps", "1",
            "--eval-interval", "3", "--checkpoint-interval", "3", "--autocast", "float32", "--quiet"]
    assert main(args) == 0
    ckpt = load_checkpoint(out / "model")
    assert ckpt.tokenizer.n_vocab == 300 and ckpt.model.cfg.context_length == 16
    meta = ckpt.meta
    assert meta["steps"] == 6 and meta["tokens_seen"] == 6 * 2 * 16
    n_bytes = len(TEXT[int(len(TEXT) * 0.9):].encode()) + len("<|endoftext|>")
    assert meta["held_out_bytes"] == n_bytes
    expected_bpb = meta["held_out_loss"] * meta["held_out_tokens"] / math.log(2) / n_bytes
    assert meta["held_out_bits_per_byte"] == pytest.approx(expected_bpb, rel=1e-3)
    assert "held-out loss" in capsys.readouterr().out

    assert main(args[:-1] + ["--lr", "0.5", "--resume"]) == 2  # other settings: one clear line
    assert "other settings" in capsys.readouterr().err
    assert main(args + ["--text", str(tmp_path / "missing.txt")]) == 2
