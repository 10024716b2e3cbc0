"""The trainer: schedule, decay groups, learning, exact resume, atomic checkpoints, DDP; corpora; baselines."""

from __future__ import annotations

import gzip
import math
import os
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import plotly.io
import pytest
import torch
import torch.multiprocessing as mp

import gpt.train as train_module
from gpt.__main__ import main
from gpt.baselines import ByteNGram, xz_bits_per_byte
from gpt.bpe import BytePairEncoder
from gpt.checkpoint import load_checkpoint
from gpt.config import GPTConfig
from gpt.corpus import is_held_out, join_documents, kjv_documents, load_corpus, unwrap_paragraphs
from gpt.data import open_token_file
from gpt.model import GPTModel
from gpt.train import (
    BatchSampler,
    TrainConfig,
    learning_rate,
    load_train_state,
    param_groups,
    read_log,
    save_train_state,
    train,
)

TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be "
    "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families, that he is considered the rightful property of some one or other of "
    "their daughters. In the beginning God created the heaven and the earth. "
) * 12
TINY = GPTConfig(vocab_size=300, context_length=16, emb_dim=32, n_layers=2, n_heads=4, drop_rate=0.1)


@pytest.fixture(scope="module")
def tokenizer():
    return BytePairEncoder.train(TEXT, 300).to_tokenizer("test-bpe")


def tiny_cfg(**changes) -> TrainConfig:
    base = TrainConfig(model=TINY, max_steps=12, batch_size=4, lr=3e-3, min_lr=3e-4, warmup_steps=2,
                       eval_interval=4, eval_windows=4, checkpoint_interval=4, autocast="float32")
    return replace(base, **changes)


def losses(log: list[dict[str, float]]) -> list[float]:
    return [row["train_loss"] for row in log]


# -- schedule and optimizer groups -------------------------------------------------------------
def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    cfg = tiny_cfg(max_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    lrs = [learning_rate(s, cfg) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[55] == pytest.approx((1e-3 + 1e-4) / 2)  # halfway through the cosine
    assert lrs[100] == pytest.approx(1e-4)


def test_weight_decay_skips_biases_and_norms_and_covers_every_parameter_once():
    model = GPTModel(TINY)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith(".bias") or "norm" in names[id(p)] for p in no_decay["params"])
    assert all(names[id(p)].endswith(".weight") and "norm" not in names[id(p)] for p in decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert sorted(ids) == sorted(names) and len(ids) == len(set(ids))


def test_batch_sampler_is_a_function_of_the_step_and_splits_across_processes():
    tokens = np.arange(1000, dtype=np.uint16)
    sampler = BatchSampler(tokens, context_length=10, batch_size=4, seed=1)
    x, y = sampler.batch(7)
    assert torch.equal(y[:, :-1], x[:, 1:]) and x.shape == (4, 10)
    x_again, _ = BatchSampler(tokens, 10, 4, seed=1).batch(7)
    assert torch.equal(x, x_again)
    halves = [sampler.batch(7, rank, 2)[0] for rank in range(2)]
    assert torch.equal(torch.cat(halves), x)
    epoch_starts = torch.cat([sampler.batch(k)[0][:, 0] for k in range(sampler.batches_per_epoch)])
    assert len(set(epoch_starts.tolist())) == len(epoch_starts)  # no window twice within an epoch


# -- training ----------------------------------------------------------------------------------
def test_loss_decreases_on_a_tiny_corpus(tmp_path, tokenizer):
    result = train(tiny_cfg(max_steps=40, eval_interval=20), [TEXT], [TEXT[:400]], tokenizer, tmp_path, progress=False)
    first, last = np.mean(losses(result.log)[:3]), np.mean(losses(result.log)[-3:])
    assert last < first - 1.0, (first, last)
    val = [r["val_loss"] for r in result.log if "val_loss" in r]
    assert val[-1] < val[0]
    assert result.tokens_seen == 40 * 4 * TINY.context_length


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, tokenizer):
    cfg = tiny_cfg(grad_accum=2)  # dropout on: its RNG state must be restored too
    full = train(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "full", progress=False)
    first = train(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "cut", stop_step=5, progress=False)
    assert first.step == 5
    resumed = train(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "cut", resume=True, progress=False)
    assert resumed.step == cfg.max_steps and len(resumed.log) == cfg.max_steps
    assert losses(resumed.log) == losses(full.log)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert [r["step"] for r in read_log(tmp_path / "cut" / "log.csv")] == list(range(1, cfg.max_steps + 1))


def test_a_new_run_in_an_old_folder_encodes_its_own_text(tmp_path, tokenizer):
    """Token files are reused only by --resume: a fresh run with other text must not train on the old tokens."""
    other = TEXT[::-1]
    train(tiny_cfg(max_steps=2), [TEXT], [TEXT[:400]], tokenizer, tmp_path, progress=False)
    train(tiny_cfg(max_steps=2), [other], [other[:400]], tokenizer, tmp_path, progress=False)
    expected = tokenizer.encode(other) + [tokenizer.eot_id]
    assert np.asarray(open_token_file(tmp_path / "train.bin")).tolist() == expected


def test_resume_refuses_a_run_with_other_settings(tmp_path, tokenizer):
    train(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train(tiny_cfg(max_steps=4, lr=1e-2), [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(tiny_cfg(), [TEXT], [TEXT[:400]], tokenizer, tmp_path / "empty", resume=True, progress=False)


def test_a_kill_during_a_checkpoint_save_leaves_the_previous_checkpoint_intact(tmp_path, tokenizer, monkeypatch):
    cfg = tiny_cfg(max_steps=8)
    train(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path, stop_step=4, progress=False)
    path = tmp_path / train_module.STATE_FILE
    before = path.read_bytes()

    def killed_mid_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")  # the process dies here
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_file", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True, progress=False)
    assert path.read_bytes() == before
    model = GPTModel(cfg.model)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay))
    meta, rng = load_train_state(path, model, optimizer)
    assert meta["step"] == 4 and "rng.cpu.0" in rng and len(optimizer.state) == len(list(model.parameters()))


def test_checkpoint_round_trips_optimizer_state(tmp_path, tokenizer):
    result = train(tiny_cfg(max_steps=3), [TEXT], [TEXT[:400]], tokenizer, tmp_path, progress=False)
    model = GPTModel(TINY)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), fused=True)
    meta, _ = load_train_state(tmp_path / train_module.STATE_FILE, model, optimizer)
    assert meta["step"] == 3 and meta["tokens_seen"] == result.tokens_seen
    for a, b in zip(model.parameters(), result.model.parameters()):
        assert torch.equal(a, b)
        assert optimizer.state[a]["exp_avg"].abs().sum() > 0
    path = tmp_path / "again.safetensors"
    save_train_state(path, model, optimizer, tiny_cfg(max_steps=3), 3, 1, 0.0, [torch.get_rng_state()])
    assert path.is_file() and not path.with_name(path.name + ".tmp").exists()


def test_log_and_figure_are_written(tmp_path, tokenizer):
    train(tiny_cfg(max_steps=8), [TEXT], [TEXT[:400]], tokenizer, tmp_path, progress=False)
    rows = read_log(tmp_path / "log.csv")
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert rows[-1]["tokens_seen"] == 8 * 4 * 16 and all(r["tokens_per_s"] > 0 for r in rows)
    assert [r["step"] for r in rows if "val_loss" in r] == [4, 8]
    fig = plotly.io.from_json((tmp_path / "loss.json").read_text())
    assert [t.name for t in fig.data] == ["train", "validation (held out)"]
    assert list(fig.data[1].x) == [4 * 64, 8 * 64]
    assert "plotly" in (tmp_path / "loss.html").read_text()


# -- distributed -------------------------------------------------------------------------------
def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str, cfg: TrainConfig, tokenizer_ranks: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    from gpt.tokenizer import Tokenizer

    train(cfg, [TEXT], [TEXT[:400]], Tokenizer("test-bpe", tokenizer_ranks), out_dir, progress=False)
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_loss_of_one_with_the_same_global_batch(tmp_path, tokenizer):
    cfg = tiny_cfg(max_steps=6, model=replace(TINY, drop_rate=0.0), grad_accum=2)
    single = train(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "one", progress=False)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path / "two"), cfg, tokenizer.ranks),
                       nprocs=2, join=True, start_method="spawn")
    two = read_log(tmp_path / "two" / "log.csv")
    np.testing.assert_allclose([r["train_loss"] for r in two], losses(single.log), rtol=1e-5)
    assert losses(single.log)[-1] < losses(single.log)[0]
    model = GPTModel(cfg.model)
    load_train_state(tmp_path / "two" / train_module.STATE_FILE, model,
                     torch.optim.AdamW(param_groups(model, cfg.weight_decay)))
    for a, b in zip(model.parameters(), single.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# -- the command -------------------------------------------------------------------------------
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


# -- corpora -----------------------------------------------------------------------------------
def test_kjv_references_are_stripped_one_document_per_book(tmp_path):
    lines = ["Ge1:1 In the beginning God created the heaven and the earth.", "Ge1:2 And the earth was without form.",
             "Ge2:1 Thus the heavens were finished.", "Ruth1:1 Now it came to pass.", "1Sm1:1 Now there was a man."]
    (tmp_path / "kjv.txt.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    docs = kjv_documents(tmp_path)
    assert [d.name for d in docs] == ["kjv-Ge", "kjv-Ruth", "kjv-1Sm"]
    assert docs[0].text == ("In the beginning God created the heaven and the earth.\nAnd the earth was without form.\n"
                            "\nThus the heavens were finished.")
    assert [is_held_out(d) for d in docs] == [False, True, False]
    (tmp_path / "kjv.txt.gz").write_bytes(gzip.compress(b"no reference here\n"))
    with pytest.raises(ValueError, match="line 1"):
        kjv_documents(tmp_path)


def test_unwrap_paragraphs_joins_hard_wrapped_lines():
    assert unwrap_paragraphs("Chapter 1\n\n\nIt is a truth\nuniversally\n  acknowledged.\n\nNext.") == (
        "Chapter 1\n\nIt is a truth universally acknowledged.\n\nNext.")


def test_shipped_corpus_split_holds_out_whole_documents():
    split = load_corpus()
    held = {d.name for d in split.held_out}
    assert held == {"austen-persuasion", "kjv-Ruth", "kjv-Eccl", "kjv-Jonah", "kjv-Phi", "kjv-Jas"}
    assert not held & {d.name for d in split.train} and len(split.train) == 5 + 61
    train_text = join_documents(d.text for d in split.train)
    assert "Ge1:1" not in train_text and train_text.startswith("SENSE AND SENSIBILITY")
    assert "Anne Elliot" not in train_text  # Persuasion's heroine never appears in training text
    assert join_documents(["x", "y"]) == "x<|endoftext|>y<|endoftext|>"


# -- baselines ---------------------------------------------------------------------------------
def test_ngram_probabilities_sum_to_one_in_any_context():
    model = ByteNGram(order=4).fit(TEXT)
    for context in (b"a good fo", b"zq\xff", b"", b"the earth"):
        total = sum(model.byte_probabilities(context + bytes([b]))[-1] for b in range(256))
        assert total == pytest.approx(1.0, abs=1e-9)


def test_ngram_learns_repetition_and_knows_nothing_of_random_bytes():
    model = ByteNGram(order=5).fit(TEXT)
    assert model.bits_per_byte(TEXT[:300]) < 1.0
    assert ByteNGram(order=3).fit(TEXT).bits_per_byte(TEXT[:300]) > model.bits_per_byte(TEXT[:300])
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    assert -np.log2(model.byte_probabilities(noise)).mean() > 7.5
    with pytest.raises(ValueError):
        ByteNGram(order=9)


def test_xz_bits_per_byte_with_and_without_context():
    alone = xz_bits_per_byte(TEXT)
    assert 0 < alone < 2  # the text repeats itself
    assert xz_bits_per_byte(TEXT, context=TEXT) < alone
    letters = bytes(np.random.default_rng(0).integers(65, 91, 5000, dtype=np.uint8)).decode()
    assert 4.5 < xz_bits_per_byte(letters) < 6.0  # 26 equally likely letters: log2(26) = 4.7 bits


# -- benchmark (runs the code path; no timing is asserted) --------------------------------------
def test_training_benchmark_reports_both_implementations_and_their_ratio():
    from gpt.bench_train import format_table, run_benchmarks

    rows = run_benchmarks(workloads=(("tiny", 2, 16),), repeats=1)
    (row,) = rows
    assert row["workload"] == "tiny 2x16" and row["ours"] > 0 and row["transformers"] > 0
    assert row["ratio"] == pytest.approx(row["ours"] / row["transformers"])
    assert "| tiny 2x16 |" in format_table(rows, "title")
