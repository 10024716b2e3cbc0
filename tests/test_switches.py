"""The architecture switches (issue 31): each one alone on `tiny`, and all of them at once (`tiny-modern`).

Every switch keeps the model's invariants (exact parameter count and memory, checkpoints that round
trip, the explicit attention path and the KV cache equal to the fused full pass), has an equivalence
test against a reference written here, and goes through every stage and view: generation, beams,
LoRA, int8, the logit lens, surprisal, embeddings, model cards, pretraining with exact resume, DDP,
and the three finetunings (the slow ones train a few steps).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from gpt.attention import KVCache
from gpt.cache_cost import cache_bytes, cache_shape
from gpt.checkpoint import CONFIG_FILE, Checkpoint, load_checkpoint, save_checkpoint
from gpt.cli import main
from gpt.config import PRESETS, GPTConfig
from gpt.embeddings import position_similarity
from gpt.generate import SamplingConfig, beam_search, generate
from gpt.instruct.prompt import format_prompt
from gpt.kernels import accelerate
from gpt.lens import logit_lens, residual_stream, surprisal_bits
from gpt.lora import LoRAConfig, LoRALinear, apply_lora, merge_lora
from gpt.model import GPTModel, SwiGLU, norm_layer
from gpt.positions import apply_rotary, rotary_tables
from gpt.precision import dtype_of
from gpt.pretrain.runs import run_card
from gpt.pretrain.state import read_log
from gpt.pretrain.trainer import PretrainConfig, export_model, pretrain
from gpt.quantize import QuantizedLinear, int8_kernel, quantize_model
from gpt.training.loss import lm_loss
from tests.helpers import REPO, STORY, TRAINING_TEXT, free_port, train_tokenizer
from tests.pretrain.test_trainer import _ddp_worker  # trains on STORY, as these tests do

# One switch each, on `tiny` (4 heads of 16, 2 layers, 64 wide); "modern" is `tiny-modern`, every switch on.
SWITCHES: dict[str, dict[str, Any]] = {
    "rmsnorm": {"norm": "rmsnorm"},
    "sinusoidal": {"positions": "sinusoidal"},
    "rotary": {"positions": "rotary"},
    "rotary-base": {"positions": "rotary", "rope_base": 500_000.0},
    "swiglu": {"mlp": "swiglu"},
    "mlp-hidden": {"mlp_hidden": 96},
    "gqa": {"n_kv_heads": 2},
    "mqa": {"n_kv_heads": 1},
    "qk-norm": {"qk_norm": True},
    "no-bias": {"bias": False, "qkv_bias": False},
    "untied": {"tie_weights": False},
    "head-width": {"head_width": 32},
    "norm-eps": {"norm": "rmsnorm", "norm_eps": 1e-5},
    "rope-scaling": {"positions": "rotary", "rope_scaling": 8.0, "rope_low_freq_factor": 1.0,
                     "rope_high_freq_factor": 4.0, "rope_original_context": 16},
}
NAMES = [*SWITCHES, "modern"]
NAMED = {  # what a card says of each switch
    "rmsnorm": "RMSNorm", "sinusoidal": "sinusoidal positions", "rotary": "rotary positions",
    "rotary-base": "rotary positions (base 500,000)", "swiglu": "SwiGLU", "mlp-hidden": "MLP 96 wide",
    "gqa": "2 KV heads", "mqa": "1 KV head (multi-query)", "qk-norm": "QK-norm", "no-bias": "no biases",
    "untied": "untied output head", "head-width": "heads 32 wide", "norm-eps": "RMSNorm · norm eps 1e-05",
    "rope-scaling": "rotary positions · Llama 3 RoPE scaling x8",
    "modern": "RMSNorm · rotary positions · SwiGLU · 2 KV heads · QK-norm · no biases",
}
GREEDY = SamplingConfig(max_new_tokens=12, temperature=0)
ENTRIES = [{"instruction": f"What is {a} + {b}?", "input": "", "output": str(a + b)} for a in range(2, 5)
           for b in range(3, 6)]  # 9 entries: two batches of 4
PAIRS = [{"instruction": e["instruction"], "input": "", "chosen": e["output"], "rejected": f"Ugh, {e['output']}.",
          "how": "impolite"} for e in ENTRIES]


def config(name: str, **overrides: Any) -> GPTConfig:
    """`tiny` with the switch `name` on, `tiny-modern` for "modern", plain `tiny` (GPT-2) for "gpt2"."""
    return GPTConfig.preset("tiny-modern" if name == "modern" else "tiny", **{**SWITCHES.get(name, {}), **overrides})


def model_of(name: str, seed: int = 0, **overrides: Any) -> GPTModel:
    """A random model with the switch on, its norm gains and biases random too (at 1 and 0 they would hide a
    mix-up between them), in eval mode."""
    torch.manual_seed(seed)
    model = GPTModel(config(name, **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p), alpha=0.2)
    return model


def ids(n: int = 24, batch: int = 2, vocab: int = 512, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tokenizer():
    prompts = "\n".join(format_prompt(e) + e["output"] for e in ENTRIES)
    return train_tokenizer(TRAINING_TEXT + STORY + prompts, 300, "switch-bpe")


# -- the config: counts, memory, files -------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_parameter_count_and_memory_are_exact(name: str, dtype: str) -> None:
    model = model_of(name).to(dtype_of(dtype))
    cfg = model.cfg
    assert cfg.n_params() == model.n_params()
    cache = model.new_cache(batch_size=2)
    tensors = [*model.parameters(), *model.buffers(), cache.keys, cache.values]
    assert cfg.memory_bytes(dtype, batch_size=2) == sum(t.nbytes for t in tensors)


@pytest.mark.parametrize("name", NAMES)
def test_a_checkpoint_keeps_the_config_and_the_logits(name: str, tmp_path, tokenizer) -> None:
    model = model_of(name, vocab_size=tokenizer.n_vocab)
    save_checkpoint(model, tmp_path, tokenizer)
    loaded = load_checkpoint(tmp_path).model
    assert loaded.cfg == model.cfg and json.loads((tmp_path / CONFIG_FILE).read_text())["model"] == model.cfg.to_dict()
    x = ids(vocab=tokenizer.n_vocab)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_a_config_written_before_the_switches_loads_as_gpt2(tmp_path, tokenizer) -> None:
    before = {"vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "drop_rate", "qkv_bias", "tie_weights"}
    cfg = GPTConfig.from_dict({k: v for k, v in PRESETS["tiny"].to_dict().items() if k in before})
    assert (cfg.positions, cfg.norm, cfg.mlp, cfg.kv_heads, cfg.qk_norm, cfg.bias) == ("learned", "layernorm", "gelu",
                                                                                     4, False, True)
    assert cfg.architecture() == ""
    model = model_of("gpt2", vocab_size=tokenizer.n_vocab)
    save_checkpoint(model, tmp_path, tokenizer)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["model"] = {k: v for k, v in config["model"].items() if k in before}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    loaded = load_checkpoint(tmp_path).model
    assert loaded.cfg == model.cfg
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids(vocab=300)), model(ids(vocab=300)))


# -- equivalence with references written here ------------------------------------------------------

def rotate_by_hand(x: torch.Tensor, pos: int, base: float = 10000.0) -> torch.Tensor:
    """One head's vector (hd,) at position `pos`: pair (i, i + hd/2) turned by pos / base^(2i/hd), a 2x2 matrix."""
    hd = x.shape[0]
    out = x.clone()
    for i in range(hd // 2):
        angle = pos / base ** (2 * i / hd)
        turn = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=x.dtype)
        out[i], out[i + hd // 2] = turn @ torch.stack([x[i], x[i + hd // 2]])
    return out


@pytest.mark.parametrize("base", [10000.0, 500_000.0])
def test_rotary_turns_each_pair_by_its_angle(base: float) -> None:
    hd, T = 16, 40
    x = torch.randn(1, 2, T, hd, dtype=torch.float64)
    cos, sin = rotary_tables(T, hd, base)
    turned = apply_rotary(x, cos, sin)
    for head in range(2):
        for pos in (0, 1, 7, 39):
            torch.testing.assert_close(turned[0, head, pos], rotate_by_hand(x[0, head, pos], pos, base),
                                       atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(turned.norm(dim=-1), x.norm(dim=-1))  # a rotation keeps lengths


def test_rotary_scores_depend_only_on_the_offset() -> None:
    hd, T = 16, 64
    cos, sin = rotary_tables(T, hd)
    q, k = torch.randn(hd), torch.randn(hd)
    at = torch.arange(T)
    turned_q = apply_rotary(q.expand(1, 1, T, hd), cos, sin)[0, 0]  # q at every position
    turned_k = apply_rotary(k.expand(1, 1, T, hd), cos, sin)[0, 0]
    scores = turned_q @ turned_k.T  # (m, n): q at m, k at n
    for offset in (0, 1, 5, 30):
        diagonal = scores[at[offset:], at[:T - offset]]
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), atol=1e-4, rtol=1e-5)
    assert not torch.allclose(scores[5, 0], scores[5, 4])


def test_rmsnorm_is_the_formula() -> None:
    norm = norm_layer(config("rmsnorm"))
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 5, 64)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    assert not hasattr(norm, "bias") or norm.bias is None


def test_swiglu_is_the_formula() -> None:
    cfg = config("swiglu", bias=False)
    mlp = SwiGLU(cfg)
    h = cfg.hidden_dim
    assert h == 176 and mlp.fc.weight.shape == (2 * h, 64)  # 8/3 x 64 rounded up to a multiple of 16
    x = torch.randn(2, 7, 64)
    gate, up = x @ mlp.fc.weight[:h].T, x @ mlp.fc.weight[h:].T
    expected = (F.silu(gate) * up) @ mlp.proj.weight.T
    torch.testing.assert_close(mlp(x), expected)
    # as many parameters as GELU's MLP, give or take the rounding of the hidden width
    assert abs(config("swiglu").n_params() - PRESETS["tiny"].n_params()) < 0.02 * PRESETS["tiny"].n_params()


def reference_attention(att: nn.Module, x: torch.Tensor, cfg: GPTConfig, cos: torch.Tensor | None,
                        sin: torch.Tensor | None) -> torch.Tensor:
    """Causal attention written out: per query head, its group's key/value head, QK-norm and rotary by hand."""
    B, T, C = x.shape
    H, KV, hd = cfg.n_heads, cfg.kv_heads, cfg.head_dim
    q, k, v = att.qkv(x).split([C, KV * hd, KV * hd], dim=-1)
    out = torch.zeros(B, T, H, hd)
    for h in range(H):
        g = h // (H // KV)  # the key/value head of query head h
        qh, kh, vh = q[..., h * hd:(h + 1) * hd], k[..., g * hd:(g + 1) * hd], v[..., g * hd:(g + 1) * hd]
        if cfg.qk_norm:
            qh = qh / torch.sqrt(qh.pow(2).mean(-1, keepdim=True) + 1e-6) * att.q_norm.weight
            kh = kh / torch.sqrt(kh.pow(2).mean(-1, keepdim=True) + 1e-6) * att.k_norm.weight
        if cos is not None:
            qh = torch.stack([torch.stack([rotate_by_hand(qh[b, t], t, cfg.rope_base) for t in range(T)])
                              for b in range(B)])
            kh = torch.stack([torch.stack([rotate_by_hand(kh[b, t], t, cfg.rope_base) for t in range(T)])
                              for b in range(B)])
        scores = qh @ kh.transpose(-2, -1) / math.sqrt(hd)  # (B, T, T)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        out[:, :, h] = torch.softmax(scores, dim=-1) @ vh
    return att.out_proj(out.reshape(B, T, C))


@pytest.mark.parametrize("name", ["gqa", "mqa", "qk-norm", "rotary", "rotary-base", "modern"])
def test_attention_equals_the_reference(name: str) -> None:
    model = model_of(name)
    cfg, att = model.cfg, model.trf_blocks[0].att
    x = torch.randn(2, 9, cfg.emb_dim)
    rotary = (model.rope_cos[:9], model.rope_sin[:9]) if cfg.positions == "rotary" else None
    with torch.no_grad():
        expected = reference_attention(att, x, cfg, *(rotary or (None, None)))
        for need_weights in (False, True):
            torch.testing.assert_close(att(x, None, need_weights, rotary)[0], expected, atol=1e-5, rtol=1e-4)


def test_as_many_kv_heads_as_heads_is_multi_head_attention() -> None:
    default, explicit = model_of("gpt2"), model_of("gpt2", n_kv_heads=4)
    assert [(k, v.shape) for k, v in default.state_dict().items()] == \
        [(k, v.shape) for k, v in explicit.state_dict().items()]
    explicit.load_state_dict(default.state_dict())
    with torch.no_grad():
        assert torch.equal(explicit(ids()), default(ids()))


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_grouped_query_attention_is_multi_head_with_each_kv_head_repeated_per_group(kv_heads: int) -> None:
    """Copy a GQA model's weights into a multi-head model, each key/value head's rows once per query head."""
    grouped = model_of("gqa", n_kv_heads=kv_heads)
    multi = GPTModel(config("gqa", n_kv_heads=None)).eval()
    cfg, d, hd, group = grouped.cfg, grouped.cfg.emb_dim, grouped.cfg.head_dim, 4 // kv_heads
    state = grouped.state_dict()

    def per_query_head(rows: torch.Tensor) -> torch.Tensor:  # (KV * hd, ...) -> (H * hd, ...)
        return rows.reshape(kv_heads, hd, *rows.shape[1:]).repeat_interleave(group, 0).reshape(d, *rows.shape[1:])

    for name in [n for n in state if n.endswith(("att.qkv.weight", "att.qkv.bias"))]:
        q, k, v = state[name].split([d, cfg.kv_dim, cfg.kv_dim])
        state[name] = torch.cat([q, per_query_head(k), per_query_head(v)])
    multi.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(multi(ids()), grouped(ids()))
    assert grouped.n_params() < multi.n_params()


# -- every switch: the model's own invariants -------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_the_explicit_attention_path_equals_the_fused_one(name: str) -> None:
    model = model_of(name)
    x = ids(30)
    with torch.no_grad():
        fast, _ = model.hidden_states(x)
        slow, maps = model.hidden_states(x, need_weights=True)
        assert [m.shape for m in model.attention_maps(x)] == [(2, 4, 30, 30)] * 2
    torch.testing.assert_close(slow, fast, atol=1e-5, rtol=1e-5)
    for w in maps:
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 30))
        assert torch.all(w.triu(diagonal=1) == 0)


@pytest.mark.parametrize("name", NAMES)
def test_the_kv_cache_step_by_step_equals_the_full_pass(name: str) -> None:
    model = model_of(name)
    x = ids(30, batch=3)
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache(batch_size=3)
        assert cache.keys.shape == (2, 3, model.cfg.kv_heads, 64, model.cfg.head_dim)
        prefill = model(x[:, :11], cache)
        steps = [model(x[:, t:t + 1], cache) for t in range(11, 20)] + [model(x[:, 20:], cache)]
    torch.testing.assert_close(torch.cat([prefill, *steps], dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["rotary", "gqa", "modern"])
def test_the_kv_cache_in_bfloat16_stays_within_bfloat16s_rounding(name: str) -> None:
    model = model_of(name).to(torch.bfloat16)
    x = ids(30)
    with torch.no_grad():
        full = model(x).float()
        cache = model.new_cache(batch_size=2)
        cached = torch.cat([model(x[:, :12], cache)] + [model(x[:, t:t + 1], cache) for t in range(12, 30)], 1).float()
    assert (cached - full).abs().max() < 0.05 * full.std()


@pytest.mark.parametrize("name", NAMES)
def test_accelerate_keeps_the_outputs(name: str) -> None:
    model = model_of(name)
    x = ids()
    with torch.no_grad():
        before = model(x)
        prompt = x[0].tolist()
        tokens = generate(model, prompt, GREEDY)
        accelerate(model)
        torch.testing.assert_close(model(x), before)
    assert generate(model, prompt, GREEDY) == tokens


# -- every switch: generation, beams, LoRA, int8 -------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_with_and_without_the_cache_and_beam_search(name: str) -> None:
    model = model_of(name)
    prompt = ids(58, batch=1)[0].tolist()  # 58 + 12 > 64: the window slides past its end
    tokens = generate(model, prompt, GREEDY)
    assert len(tokens) == 12 and generate(model, prompt, GREEDY, use_cache=False) == tokens
    short = prompt[:10]
    assert beam_search(model, short, num_beams=1, max_new_tokens=8) == generate(model, short, GREEDY)[:8]
    assert len(beam_search(model, short, num_beams=3, max_new_tokens=8)) == 8


@pytest.mark.parametrize("name", NAMES)
def test_lora_adapts_every_projection_and_merges(name: str) -> None:
    """The targets include the fused qkv (narrower with GQA) and SwiGLU's fused gate|up `fc`."""
    base = model_of(name)
    adapted = model_of(name)
    apply_lora(adapted, LoRAConfig(rank=2, alpha=4))
    cfg, d = base.cfg, base.cfg.emb_dim
    assert sum(isinstance(m, LoRALinear) for m in adapted.modules()) == 4 * cfg.n_layers
    block = adapted.trf_blocks[0]
    assert block.att.qkv.base.out_features == cfg.q_dim + 2 * cfg.kv_dim
    assert block.att.out_proj.base.in_features == cfg.q_dim and cfg.q_dim == (128 if name == "head-width" else d)
    assert block.ff.fc.base.out_features == cfg.hidden_dim * (2 if cfg.mlp == "swiglu" else 1)
    with torch.no_grad():
        assert torch.equal(adapted(ids()), base(ids()))
    adapted(ids()).sum().backward()
    trained = {n for n, p in adapted.named_parameters() if p.grad is not None}
    assert trained and all(n.endswith(("lora_a", "lora_b")) for n in trained)
    with torch.no_grad():
        for m in adapted.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.normal_(0, 0.05)
        changed = adapted(ids())
    assert not torch.allclose(changed, base(ids()).detach())
    merge_lora(adapted)
    with torch.no_grad():
        torch.testing.assert_close(adapted(ids()), changed, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_int8_stays_close_and_its_file_loads_back(name: str, tmp_path, tokenizer) -> None:
    model = model_of(name, vocab_size=tokenizer.n_vocab)
    x = ids(vocab=tokenizer.n_vocab)
    with torch.no_grad():
        reference = model(x)
        errors = quantize_model(model)
        quantized = model(x)
    assert len(errors) == 4 * 2 + 1 and all(e.relative_error < 0.02 for e in errors)
    tolerance = 0.2 if int8_kernel("cpu", x.numel()) == "dynamic" else 0.1  # its activations in 7 bits round more
    assert (quantized - reference).abs().max() < tolerance * reference.std()
    save_checkpoint(model, tmp_path, tokenizer)
    loaded = load_checkpoint(tmp_path).model
    assert sum(isinstance(m, QuantizedLinear) for m in loaded.modules()) == 9
    for name, table in model.named_buffers():  # int8 weights and scales, and the position tables rebuilt on load
        assert torch.equal(loaded.get_buffer(name), table), name
    with torch.no_grad():
        assert torch.equal(loaded(x), quantized)
    prompt = x[0, :10].tolist()
    assert generate(loaded, prompt, GREEDY) == generate(model, prompt, GREEDY)


# -- every switch: the views' library ------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_the_logit_lens_reads_the_models_own_stream(name: str) -> None:
    """Rotary positions act inside attention: the lens must pass them to every block (it once did not)."""
    model = model_of(name)
    prompt = ids(20, batch=1)[0].tolist()
    stream = residual_stream(model, prompt)
    with torch.no_grad():
        hidden, _ = model.hidden_states(torch.tensor([prompt]))
        torch.testing.assert_close(model.final_norm(stream[-1].clone()), hidden[0], atol=1e-5, rtol=1e-5)
        predicted = model(torch.tensor([prompt]))[0].argmax(-1)
    lens = logit_lens(model, prompt)
    assert lens.top_ids.shape == (3, 20) and torch.equal(lens.final_ids, predicted)


@pytest.mark.parametrize("name", NAMES)
def test_surprisal_is_the_loss_in_bits(name: str) -> None:
    model = model_of(name)
    prompt = ids(20, batch=1)[0].tolist()
    bits = surprisal_bits(model, prompt, 0)
    with torch.no_grad():
        loss = lm_loss(model(torch.tensor([[0] + prompt[:-1]])), torch.tensor([prompt]))
    assert math.isclose(float(bits.mean()) * math.log(2), float(loss), rel_tol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_position_similarity_for_every_kind_of_position(name: str) -> None:
    model = model_of(name)
    similarity, positions = position_similarity(model, 32)
    assert similarity.shape == (32, 32) and positions == list(range(0, 64, 2))
    torch.testing.assert_close(similarity.diagonal(), torch.ones(32))
    if model.cfg.positions == "rotary":  # no vectors: the rotations, alike for the same offset anywhere
        for offset in (1, 5):
            diagonal = similarity.diagonal(offset)
            torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), atol=1e-5, rtol=1e-5)
        assert similarity.min() < 0.9


def pretrain_meta(cfg: GPTConfig, optimizer: str = "adamw") -> dict[str, Any]:
    """What `export_model` records, with made-up figures: what `run_card` reads."""
    return {"train_config": PretrainConfig(model=cfg, optimizer=optimizer).to_dict(), "params": cfg.n_params(),
            "held_out_loss": 3.0, "held_out_perplexity": 20.1, "held_out_bits_per_byte": 1.5, "baselines": {},
            "steps": 10, "max_steps": 10, "corpus": "a test", "train_tokens": 100, "held_out_bytes": 50,
            "held_out_tokens": 20, "tokens_seen": 640, "train_time_s": 1.0, "torch": torch.__version__,
            "tokenizer": "switch-bpe"}


@pytest.mark.parametrize("name", NAMES)
def test_the_model_card_names_the_switches(name: str) -> None:
    cfg = config(name)
    assert NAMED[name] in cfg.architecture() and (name != "modern" or cfg.architecture() == NAMED[name])
    assert f"Architecture: {cfg.architecture()}." in run_card(pretrain_meta(cfg))
    assert "Architecture: GPT-2's." in run_card(pretrain_meta(PRESETS["tiny"]))
    assert "Muon for the blocks' matrices with AdamW" in run_card(pretrain_meta(cfg, "muon"))


# -- the KV cache's bytes ----------------------------------------------------------------------------

@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_the_kv_cache_shrinks_by_heads_over_kv_heads(kv_heads: int) -> None:
    multi, grouped = PRESETS["tiny"], config("gqa", n_kv_heads=kv_heads)
    for tokens in (1, 37, 64):
        assert cache_bytes(multi, tokens) == 4 // kv_heads * cache_bytes(grouped, tokens)
    assert cache_shape(grouped, 5) == (2, 1, kv_heads, 5, 16)
    cache = KVCache(grouped, batch_size=2)
    assert cache.keys.nbytes + cache.values.nbytes == cache_bytes(grouped, 64, batch_size=2)
    shrink = cache_bytes(multi, 64) - cache_bytes(grouped, 64)
    assert multi.memory_bytes() - grouped.memory_bytes() == shrink + 4 * (multi.n_params() - grouped.n_params())
    modern = PRESETS["shipped-small-modern"]
    assert cache_bytes(PRESETS["shipped-small"], 256) == 2 * cache_bytes(modern, 256)


# -- impossible combinations -------------------------------------------------------------------------

BAD = [
    ({"n_kv_heads": 3}, r"^n_heads \(4\) must be divisible by n_kv_heads \(3\)$"),
    ({"positions": "rotary", "emb_dim": 60}, r"^rotary positions .*emb_dim / n_heads \(60 / 4 = 15\) must be even$"),
    ({"mlp_hidden": 0}, r"^GPTConfig.mlp_hidden must be between 1 and"),
    ({"n_kv_heads": 0}, r"^GPTConfig.n_kv_heads must be between 1 and"),
    ({"norm": "batchnorm"}, r"^GPTConfig.norm must be one of layernorm, rmsnorm, got 'batchnorm'$"),
    ({"mlp": "relu"}, r"^GPTConfig.mlp must be one of gelu, swiglu"),
    ({"qk_norm": 1}, r"^GPTConfig.qk_norm must be true or false, got 1$"),
]


@pytest.mark.parametrize("changes, message", BAD)
def test_an_impossible_combination_is_a_one_line_error_naming_the_fields(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        GPTConfig.preset("tiny", **changes)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("flags, field", [(["--n-kv-heads", "3"], "n_kv_heads"),
                                          (["--positions", "rotary", "--emb-dim", "60"], "emb_dim / n_heads"),
                                          (["--mlp-hidden", "0"], "--mlp-hidden")])
def test_the_command_line_refuses_them_in_one_line(flags: list[str], field: str, tmp_path, capsys) -> None:
    (tmp_path / "text.txt").write_text(STORY)
    try:
        code = main(["pretrain", "--preset", "tiny", "--text", str(tmp_path / "text.txt"), "--out",
                     str(tmp_path / "run"), "--quiet", *flags])
    except SystemExit as exit_:  # a flag out of its bounds stops in argparse: the usage, then the error's line
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "error: " in err.splitlines()[-1] and field in err.splitlines()[-1]


def test_python_m_gpt_exits_with_the_error_and_no_traceback(tmp_path) -> None:
    (tmp_path / "text.txt").write_text(STORY)
    done = subprocess.run([sys.executable, "-m", "gpt", "pretrain", "--preset", "tiny-modern", "--n-kv-heads", "3",
                           "--text", str(tmp_path / "text.txt"), "--out", str(tmp_path / "run"), "--quiet"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr == "error: n_heads (4) must be divisible by n_kv_heads (3)\n"


# -- every stage trains with every switch (slow: a few steps each) ---------------------------------------

def small(name: str, **overrides: Any) -> GPTConfig:
    """The switch on the trainer tests' model size: 300 tokens, 16 positions, 32 wide."""
    return config(name, vocab_size=300, context_length=16, emb_dim=32, **overrides)


def pretrain_cfg(model: GPTConfig, **changes: Any) -> PretrainConfig:
    return PretrainConfig(**{"model": model, "max_steps": 8, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4,
                             "warmup_steps": 2, "eval_interval": 4, "eval_windows": 4, "checkpoint_interval": 4,
                             "autocast": "float32", **changes})


@pytest.mark.slow
@pytest.mark.parametrize("name, optimizer", [(n, "adamw") for n in NAMES] + [("modern", "muon"), ("gqa", "muon")])
def test_pretraining_resumes_exactly_and_exports_its_card(name: str, optimizer: str, tmp_path, tokenizer) -> None:
    cfg = pretrain_cfg(small(name, drop_rate=0.1), optimizer=optimizer)  # dropout: its RNG state is resumed too
    full = pretrain(cfg, [STORY], [STORY[:400]], tokenizer, tmp_path / "full")
    assert pretrain(cfg, [STORY], [STORY[:400]], tokenizer, tmp_path / "cut", stop_step=3).step == 3
    resumed = pretrain(cfg, [STORY], [STORY[:400]], tokenizer, tmp_path / "cut", resume=True)
    assert [r["train_loss"] for r in resumed.log] == [r["train_loss"] for r in full.log]
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert full.log[-1]["train_loss"] < full.log[0]["train_loss"]
    meta = export_model(resumed, cfg, tokenizer, [STORY[:400]], tmp_path / "cut", "a test", {})
    assert f"Architecture: {cfg.model.architecture() or 'GPT-2'}" in run_card(meta)
    saved = load_checkpoint(tmp_path / "cut" / "model")
    assert saved.model.cfg == cfg.model and len(generate(saved.model, [1, 2, 3], GREEDY)) == 12


@pytest.mark.slow
def test_two_processes_give_the_loss_of_one_with_the_modern_preset(tmp_path, tokenizer) -> None:
    cfg = pretrain_cfg(small("modern", drop_rate=0.0), max_steps=6, grad_accum=2)
    single = pretrain(cfg, [STORY], [STORY[:400]], tokenizer, tmp_path / "one")
    mp.start_processes(_ddp_worker, args=(2, free_port(), str(tmp_path / "two"), cfg, tokenizer.ranks), nprocs=2,
                       join=True, start_method="spawn")
    two = read_log(tmp_path / "two" / "log.csv")
    np.testing.assert_allclose([r["train_loss"] for r in two], [r["train_loss"] for r in single.log], rtol=1e-5)


# every switch with the default finetuning, and the modern preset with Muon and with LoRA (on every block for a
# chat model; on none but the adapters and the head for a classifier, as each stage's LoRA is set)
METHODS = [(n, {}) for n in NAMES] + [("modern", {"optimizer": "muon"}), ("modern", {"lora_rank": 2})]


def checkpoint_of(name: str, tokenizer, **overrides: Any) -> Checkpoint:
    torch.manual_seed(0)
    return Checkpoint(GPTModel(config(name, vocab_size=tokenizer.n_vocab, context_length=128, **overrides)),
                      tokenizer, {})


@pytest.mark.slow
@pytest.mark.parametrize("name, method", METHODS)
def test_instruction_finetuning(name: str, method: dict, tokenizer, tmp_path) -> None:
    from gpt.instruct.finetune import InstructConfig, finetune_instruct

    checkpoint = checkpoint_of(name, tokenizer)
    cfg = InstructConfig(epochs=2, batch_size=4, lr=3e-3, autocast="float32", **method)
    result = finetune_instruct(checkpoint, ENTRIES, ENTRIES[:4], cfg, tmp_path / "ft")
    assert result.steps == 4 and result.train_losses[-1] < result.train_losses[0]
    saved = load_checkpoint(tmp_path / "ft").model
    assert saved.cfg == checkpoint.model.cfg and not any(isinstance(m, LoRALinear) for m in saved.modules())


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_preference_tuning(name: str, tokenizer) -> None:
    from gpt.preference.dpo import PreferenceConfig, finetune_preference

    result = finetune_preference(checkpoint_of(name, tokenizer), PAIRS, PAIRS[:4],
                                 PreferenceConfig(epochs=2, batch_size=4, lr=3e-3, beta=0.5))
    assert result.steps == 4 and all(math.isfinite(loss) for loss in result.train_losses)
    assert result.train_losses[-1] < math.log(2)  # log 2: the policy is its reference, at the first step


@pytest.mark.slow
@pytest.mark.parametrize("name, method", METHODS)
def test_classification_finetuning(name: str, method: dict, tokenizer) -> None:
    from gpt.classify import data
    from gpt.classify.classifier import attach_classifier_head, class_logits, freeze_for_finetuning
    from gpt.classify.finetune import ClassifierConfig, train_classifier

    messages = data.balance(data.load_corpus("offline").messages)[:24]
    dataset = data.SpamDataset(messages, tokenizer, 64)
    loader = DataLoader(dataset, batch_size=8, shuffle=True, collate_fn=dataset.collate,
                        generator=torch.Generator().manual_seed(0))
    lora = {"trainable_blocks": 0} if "lora_rank" in method else {}
    cfg = ClassifierConfig(**{"trainable_blocks": 1, "epochs": 2, "lr": 1e-3, "eval_every": 0, **method, **lora})
    torch.manual_seed(0)
    model = attach_classifier_head(GPTModel(config(name, vocab_size=tokenizer.n_vocab)), 2)
    freeze_for_finetuning(model, cfg.trainable_blocks, cfg.lora)
    training = train_classifier(model, loader, loader, cfg, tokenizer.eot_id)
    assert [h.epoch for h in training.history] == [1, 2] and all(math.isfinite(h.train_loss) for h in training.history)
    ids_, _ = next(iter(loader))
    with torch.no_grad():
        assert class_logits(model.eval(), ids_, tokenizer.eot_id).shape == (len(ids_), 2)


def test_every_switch_is_covered() -> None:
    """A switch added to GPTConfig without a case here fails this test."""
    switched = {field for changes in SWITCHES.values() for field in changes} | {"n_kv_heads", "mlp_hidden"}
    shape = {"vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "drop_rate"}
    assert {f.name for f in dataclasses.fields(GPTConfig)} - shape <= switched
