"""The peers benchmark (ONNX Runtime, CTranslate2, OpenVINO) on a tiny GPT-2 shape; no timing is asserted.

The engines' packages are in requirements-bench.txt, not the project's: each engine's tests skip when its
package is absent, and the table's test runs with whichever engines are installed (none: ours and transformers).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import peers
from benchmarks.common import hf_model
from gpt.config import GPTConfig

TINY = GPTConfig.preset("tiny")
FAKE_PEAKS = {"float32": 1e11, "bfloat16": 1e11, "int8": 1e11}  # no 2048x3072 products in a test
IMPORTS = {"onnxruntime": "onnxruntime", "ctranslate2": "ctranslate2", "openvino": "openvino"}


def installed() -> list[str]:
    return [e for e in peers.ENGINES if peers.missing(e) is None]


@pytest.fixture(scope="module")
def tiny_hf() -> torch.nn.Module:
    torch.manual_seed(0)
    return hf_model(TINY).eval()


def test_the_table_has_a_row_per_precision_workload_and_engine(tmp_path):
    result = peers.run_peers("tiny", repeats=1, prefill_len=12, prompt_len=4, new_tokens=5, probe_bytes=2**20,
                             workdir=tmp_path, peaks=FAKE_PEAKS)
    present = installed()
    by_precision = {p: [r for r in result.rows if r["precision"] == p] for p in peers.PRECISIONS}
    for precision, rows in by_precision.items():
        engines = {r["engine"] for r in rows}
        assert {"ours"} | ({"transformers"} if precision != "int8" else set()) <= engines
        assert engines - {"ours", "transformers"} <= set(present)
        assert {r["workload"] for r in rows} == {"prefill 1x12", "decode 4+5"}
        for r in rows:
            assert set(r) == {"precision", "workload", "engine", "tokens_s", "ours_over", "share", "greedy_equal"}
            assert r["tokens_s"] > 0 and r["share"] > 0 and 0 <= r["greedy_equal"] <= 5
        assert all(r["ours_over"] == 1.0 for r in rows if r["engine"] == "ours")
    float32 = by_precision["float32"]
    assert {r["engine"] for r in float32} == {"ours", "transformers", *present}
    assert all(r["greedy_equal"] == 5 for r in float32)  # float32: every engine's greedy tokens are transformers'
    assert sum(r["engine"] in present for r in by_precision["int8"]) == 2 * len(present)  # every engine has int8
    absent = [e for e in peers.ENGINES if e not in present]
    assert all(any(n.startswith(f"{e}: skipped") for n in result.notes) for e in absent)
    table = peers.format_peers(result, "title")
    assert "| float32 | prefill 1x12 | ours |" in table and "% of bandwidth |" in table and "% of peak |" in table
    assert set(result.limits) == set(peers.PRECISIONS) and list(tmp_path.iterdir()) == []  # exports removed


@pytest.mark.parametrize("engine", peers.ENGINES)
def test_each_engine_reads_back_our_logits_and_greedy_tokens(engine, tiny_hf, tmp_path):
    """The export round trip: the engine's last-position logits are ours on the same weights (float32), its int8
    logits follow them, and its float32 greedy tokens are transformers'."""
    pytest.importorskip(IMPORTS[engine], reason=f"{engine} is in requirements-bench.txt, not installed here")
    if engine != "ctranslate2":
        pytest.importorskip("onnx", reason="the ONNX export needs onnx (requirements-bench.txt)")
    ids = torch.randint(0, TINY.vocab_size, (9,), generator=torch.Generator().manual_seed(1)).tolist()
    shape = (TINY.n_layers, TINY.n_heads, TINY.emb_dim // TINY.n_heads)
    exports = peers.export_all(tiny_hf, [engine], tmp_path)
    with torch.inference_mode():
        ours = peers.ours_from(tiny_hf, TINY, "float32")
        expected = ours(torch.tensor([ids]), last_only=True)[0, -1].numpy()
        reference = tiny_hf.generate(torch.tensor([ids[:4]]), max_new_tokens=6, min_new_tokens=6, do_sample=False,
                                     pad_token_id=0)[0, 4:].tolist()
    float32 = peers.build_engine(engine, "float32", exports, shape, threads=1)
    np.testing.assert_allclose(float32.last_logits(ids), expected, rtol=1e-4, atol=1e-4)
    assert float32.greedy(ids[:4], 6) == reference
    int8 = peers.build_engine(engine, "int8", exports, shape, threads=1).last_logits(ids)
    assert int8.shape == expected.shape and np.corrcoef(int8, expected)[0, 1] > 0.99


def test_onnx_int8_copies_quantize_every_weight_product(tiny_hf, tmp_path):
    onnx = pytest.importorskip("onnx", reason="onnx is in requirements-bench.txt, not installed here")
    path = peers.export_onnx(tiny_hf, tmp_path / "tiny.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    weight_products = 4 * TINY.n_layers + 1  # c_attn, c_proj, c_fc, mlp c_proj per block, and the head
    assert "Gemm" not in ops and ops.count("MatMul") == weight_products + 2 * TINY.n_layers  # + attention's two
    int8 = onnx.load(str(peers.weight_only_int8(path, tmp_path / "weights.onnx")))
    assert [n.op_type for n in int8.graph.node].count("DequantizeLinear") == weight_products
    assert sum(i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2 for i in int8.graph.initializer) == (
        weight_products)
    pytest.importorskip("onnxruntime", reason="onnxruntime is in requirements-bench.txt, not installed here")
    dynamic = onnx.load(str(peers.quantize_for_onnxruntime(path, tmp_path / "dynamic.onnx")))
    assert [n.op_type for n in dynamic.graph.node].count("MatMulInteger") == weight_products


def test_gpt2_vocabulary_is_rebuilt_from_the_shipped_ranks():
    vocabulary = peers.gpt2_vocabulary(50257)
    assert len(vocabulary) == len(set(vocabulary)) == 50257 and vocabulary[-1] == "<|endoftext|>"
    assert vocabulary[15496] == "Hello" and vocabulary[262] == "\u0120the"  # GPT-2's vocab.json: "Ġthe" is 262
    assert peers.gpt2_vocabulary(TINY.vocab_size)[:5] == vocabulary[:5] and len(peers.gpt2_vocabulary(512)) == 512


def test_prefill_flops_count_the_blocks_attention_and_one_head_row():
    cfg = GPTConfig.preset("gpt2-small")
    assert peers.prefill_flops(cfg, 256) == 2 * 256 * 12 * 12 * 768**2 + 4 * 12 * 768 * 256**2 + 2 * 768 * 50257


def test_the_command_line_prints_the_table_and_the_limits(monkeypatch, capsys):
    monkeypatch.setattr(peers, "matmul_peak", lambda dtype: 1e11)
    monkeypatch.setattr(peers, "memory_read", lambda n_bytes: torch.ones(2**16).sum)  # no 2 GB probe in a test
    assert peers.main(["--model", "tiny", "--dtype", "float32", "--repeats", "1", "--prefill-len", "8",
                       "--prompt-len", "4", "--new-tokens", "3", "--engines", *(installed() or ["ctranslate2"])]) == 0
    out = capsys.readouterr().out
    assert "tiny shape, random weights," in out
    assert "| float32 | prefill 1x8 | ours |" in out and "| float32 | decode 4+3 | transformers |" in out
    assert "float32: a decode step reads" in out
