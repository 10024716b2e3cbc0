"""The llm.c benchmark writes the files train_gpt2.c reads, in its layouts, and reads what it prints (no llm.c here:
its sources are downloaded by the benchmark; a stand-in program plays its output)."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import llmc
from gpt.config import GPTConfig
from gpt.model import GPTModel

TINY = GPTConfig.preset("tiny")


def test_the_checkpoint_has_llmc_header_and_its_sixteen_tensors_in_order(tmp_path):
    torch.manual_seed(0)
    model = GPTModel(TINY)
    path = tmp_path / "model.bin"
    llmc.write_llmc_checkpoint(model, path)
    raw = path.read_bytes()
    header = np.frombuffer(raw[:1024], dtype=np.int32)
    c, n_layers, vp, max_t = TINY.emb_dim, TINY.n_layers, llmc.PADDED_VOCAB, TINY.context_length
    assert list(header[:8]) == [20240326, 3, max_t, TINY.vocab_size, n_layers, TINY.n_heads, c, vp]
    sizes = [vp * c, max_t * c, n_layers * c, n_layers * c, n_layers * 3 * c * c, n_layers * 3 * c,
             n_layers * c * c, n_layers * c, n_layers * c, n_layers * c, n_layers * 4 * c * c, n_layers * 4 * c,
             n_layers * c * 4 * c, n_layers * c, c, c]  # train_gpt2.c's fill_in_parameter_sizes
    weights = np.frombuffer(raw[1024:], dtype=np.float32)
    assert weights.size == sum(sizes)
    tensors = np.split(weights, np.cumsum(sizes)[:-1])
    wte = tensors[0].reshape(vp, c)
    assert np.array_equal(wte[:TINY.vocab_size], model.tok_emb.weight.detach().numpy())
    assert not wte[TINY.vocab_size:].any()  # the padding rows
    qkvw = tensors[4].reshape(n_layers, 3 * c, c)
    assert np.array_equal(qkvw[1], model.trf_blocks[1].att.qkv.weight.detach().numpy())
    fcprojw = tensors[12].reshape(n_layers, c, 4 * c)
    assert np.array_equal(fcprojw[0], model.trf_blocks[0].ff.proj.weight.detach().numpy())
    assert np.array_equal(tensors[15], model.final_norm.bias.detach().numpy())


def test_a_model_llmc_cannot_train_is_refused():
    with pytest.raises(ValueError, match="llm.c trains GPT-2"):
        llmc.llmc_tensors(GPTModel(GPTConfig.preset("tiny-modern")))


def test_the_token_file_and_the_validation_batches_follow_llmc_loader(tmp_path):
    ids = list(range(3 * llmc.BATCH * llmc.SEQ_LEN + 1))
    llmc.write_llmc_tokens(ids, tmp_path / "dev" / "val.bin")
    raw = (tmp_path / "dev" / "val.bin").read_bytes()
    assert list(np.frombuffer(raw[:12], dtype=np.int32)) == [20240520, 1, len(ids)]
    assert np.frombuffer(raw[1024:], dtype=np.uint16).tolist() == ids
    batches = llmc.validation_batches(ids, 3)
    span = llmc.BATCH * llmc.SEQ_LEN
    for i, (inputs, targets) in enumerate(batches):  # batch i: B*T+1 ids from i*B*T, the targets one further
        assert inputs.shape == (llmc.BATCH, llmc.SEQ_LEN) and inputs[0, 0] == i * span
        assert torch.equal(targets.flatten(), inputs.flatten() + 1)


def test_the_run_reads_the_steps_and_stops_the_program_after_enough(tmp_path):
    program = tmp_path / "train_gpt2"
    program.write_text("#!/bin/sh\necho '[GPT-2]'\necho 'val loss 10.844301'\n"
                       "for k in 0 1 2 3; do echo \"step $k: train loss 10.9 (took 250.5 ms)\"; done\nsleep 60\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    run = llmc.run_llmc(tmp_path, steps=3, threads=1)
    assert run.val_loss == pytest.approx(10.844301) and run.step_seconds == [0.2505] * 3 and run.losses == [10.9] * 3
    with pytest.raises(RuntimeError, match="stopped after 4 steps"):
        program.write_text("#!/bin/sh\nfor k in 0 1 2 3; do echo \"step $k: train loss 9 (took 1 ms)\"; done\n")
        llmc.run_llmc(tmp_path, steps=5, threads=1)


def test_the_pinned_sources_are_named_with_their_hashes():
    assert set(llmc.LLMC_SOURCES) == {"train_gpt2.c", "llmc/utils.h", "llmc/tokenizer.h", "llmc/dataloader.h",
                                      "llmc/rand.h"}
    assert all(len(sha) == 64 for sha in llmc.LLMC_SOURCES.values()) and len(llmc.LLMC_COMMIT) == 40


def test_sources_from_a_checkout_must_be_llmc_own(tmp_path):
    checkout = tmp_path / "llm.c"
    for name in llmc.LLMC_SOURCES:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("not llm.c\n")
    with pytest.raises(ValueError, match="is not llm.c's train_gpt2.c"):
        llmc.llmc_sources(tmp_path / "build", Path(checkout))
