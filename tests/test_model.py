from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from gpt.attention import CausalSelfAttention
from gpt.config import PRESETS, GPTConfig
from gpt.kernels import accelerate
from gpt.model import GPTModel
from gpt.positions import sinusoidal_positions
from gpt.precision import dtype_of


@pytest.fixture(params=["teaching", "accelerated"])
def model(request, tiny_model: GPTModel) -> GPTModel:
    """The tiny model as built, and with the fast modules of gpt/kernels.py: every invariant holds for both."""
    return tiny_model if request.param == "teaching" else accelerate(tiny_model)


def test_the_teaching_model_has_plain_modules_and_does_not_load_the_fast_ones() -> None:
    model = GPTModel(GPTConfig.preset("tiny"))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 * model.cfg.n_layers + 1 and all(type(m) is nn.Linear for m in linears)
    assert all(type(block.att) is CausalSelfAttention for block in model.trf_blocks)
    code = "import sys, gpt.model; assert 'gpt.kernels' not in sys.modules, 'gpt.model imports gpt.kernels'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_attention_weights_path_equals_fast_path(model: GPTModel) -> None:
    idx = torch.randint(0, model.cfg.vocab_size, (2, 40))
    with torch.no_grad():
        fast, none = model.hidden_states(idx)
        slow, maps = model.hidden_states(idx, need_weights=True)
    assert none == [] and len(maps) == model.cfg.n_layers
    assert (fast - slow).abs().max() <= 1e-5
    for w in maps:
        assert w.shape == (2, model.cfg.n_heads, 40, 40)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, model.cfg.n_heads, 40))
        assert torch.all(w.triu(diagonal=1) == 0)  # causal: nothing attends to the future


def test_kv_cache_in_chunks_equals_full_forward(model: GPTModel) -> None:
    idx = torch.randint(0, model.cfg.vocab_size, (3, 30))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache(batch_size=3)
        pieces = [model(idx[:, a:b], cache) for a, b in ((0, 11), (11, 12), (12, 25), (25, 30))]
    assert cache.pos == 30
    assert (torch.cat(pieces, dim=1) - full).abs().max() <= 1e-5


def test_last_only_logits(model: GPTModel) -> None:
    idx = torch.randint(0, model.cfg.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(idx, last_only=True), model(idx)[:, -1:])


def test_context_overflow_is_refused(tiny_model: GPTModel) -> None:
    too_long = torch.zeros(1, tiny_model.cfg.context_length + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="context length"):
        tiny_model(too_long)


@pytest.mark.parametrize("name,millions", [("gpt2-small", 124), ("gpt2-medium", 355), ("gpt2-large", 774),
                                           ("gpt2-xl", 1558)])
def test_gpt2_preset_sizes(name: str, millions: int) -> None:
    assert round(PRESETS[name].n_params() / 1e6) == millions


@pytest.mark.parametrize("tie,bias,positions", [(True, True, "learned"), (False, False, "learned"),
                                                (True, True, "sinusoidal"), (False, True, "sinusoidal")])
def test_param_count_formula_matches_the_module(tie: bool, bias: bool, positions: str) -> None:
    cfg = GPTConfig.preset("tiny", tie_weights=tie, qkv_bias=bias, positions=positions)
    model = GPTModel(cfg)
    assert cfg.n_params() == model.n_params()
    assert (model.out_head.weight is model.tok_emb.weight) == tie


def test_sinusoidal_positions_have_no_parameters() -> None:
    learned, sinusoidal = GPTConfig.preset("tiny"), GPTConfig.preset("tiny", positions="sinusoidal")
    assert learned.n_params() - sinusoidal.n_params() == learned.context_length * learned.emb_dim
    model = GPTModel(sinusoidal)
    assert not hasattr(model, "pos_emb") and not any(name.startswith("pos") for name in model.state_dict())


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_memory_estimate_is_what_the_weights_and_a_full_cache_take(dtype: str, positions: str) -> None:
    cfg = GPTConfig.preset("tiny", positions=positions)
    model = GPTModel(cfg).to(dtype_of(dtype))
    cache = model.new_cache(batch_size=3)
    tensors = [*model.parameters(), *model.buffers(), cache.keys, cache.values]
    assert cfg.memory_bytes(dtype, batch_size=3) == sum(t.nbytes for t in tensors)


@pytest.mark.parametrize("pos,column", [(0, 0), (0, 1), (1, 0), (1, 1), (7, 10), (7, 11), (63, 62), (63, 63)])
def test_sinusoidal_table_is_the_formula(pos: int, column: int) -> None:
    d = 64
    angle = pos / 10000 ** (2 * (column // 2) / d)
    expected = math.sin(angle) if column % 2 == 0 else math.cos(angle)
    assert sinusoidal_positions(64, d)[pos, column].item() == pytest.approx(expected, abs=1e-7)
    model = GPTModel(GPTConfig.preset("tiny", positions="sinusoidal"))
    assert model.position_vectors(torch.tensor([pos]))[0, column].item() == pytest.approx(expected, abs=1e-7)


def test_sinusoidal_table_of_an_odd_width() -> None:
    table = sinusoidal_positions(5, 3)
    torch.testing.assert_close(table[3], torch.tensor([math.sin(3), math.cos(3), math.sin(3 / 10000 ** (2 / 3))]))


def test_kv_cache_and_weights_path_with_sinusoidal_positions() -> None:
    torch.manual_seed(0)
    model = GPTModel(GPTConfig.preset("tiny", positions="sinusoidal")).eval()
    idx = torch.randint(0, model.cfg.vocab_size, (2, 20))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache(batch_size=2)
        prefill = model(idx[:, :12], cache)
        decoded = [model(idx[:, t : t + 1], cache) for t in range(12, 20)]  # one token at a time, as generation does
        fast, _ = model.hidden_states(idx)
        slow, maps = model.hidden_states(idx, need_weights=True)
    assert (torch.cat([prefill, *decoded], dim=1) - full).abs().max() <= 1e-5
    assert (fast - slow).abs().max() <= 1e-5 and len(maps) == model.cfg.n_layers


def test_a_sinusoidal_model_is_a_learned_one_holding_the_table() -> None:
    """The table replaces the learned rows, the tokens are scaled by sqrt(emb_dim), and nothing else changes."""
    torch.manual_seed(0)
    learned = GPTModel(GPTConfig.preset("tiny", tie_weights=False)).eval()
    sinusoidal = GPTModel(GPTConfig.preset("tiny", tie_weights=False, positions="sinusoidal")).eval()
    sinusoidal.load_state_dict({k: v for k, v in learned.state_dict().items() if k != "pos_emb.weight"})
    with torch.no_grad():
        learned.pos_emb.weight.copy_(sinusoidal.pos_table)
        learned.tok_emb.weight.mul_(math.sqrt(learned.cfg.emb_dim))
        idx = torch.randint(0, 512, (1, 16))
        torch.testing.assert_close(sinusoidal(idx), learned(idx))


def test_sinusoidal_tokens_are_not_drowned_by_the_positions() -> None:
    """The table's entries are of size 1, GPT-2's initial embeddings 0.02: unscaled, the tokens are lost (the
    model stays at the unigram loss). The paper's sqrt(emb_dim) brings them close (here at GPT-2 small's width)."""
    torch.manual_seed(0)
    model = GPTModel(GPTConfig.preset("gpt2-small", vocab_size=1000, n_layers=1, positions="sinusoidal"))
    tokens = model.tok_emb(torch.arange(1000)) * model.emb_scale
    ratio = tokens.pow(2).mean().sqrt() / model.pos_table.pow(2).mean().sqrt()
    assert 0.5 < ratio < 1.0, ratio


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(emb_dim=100, n_heads=3)
    with pytest.raises(ValueError, match="unknown model preset"):
        GPTConfig.preset("gpt5")
    with pytest.raises(ValueError, match="unknown GPTConfig fields"):
        GPTConfig.from_dict({"emb_dim": 64, "wat": 1})
    with pytest.raises(ValueError, match="positions must be one of learned, sinusoidal, rotary"):
        GPTConfig(positions="alibi")


def test_configs_written_before_positions_existed_are_learned() -> None:
    old = {k: v for k, v in GPTConfig.preset("tiny").to_dict().items() if k != "positions"}
    assert GPTConfig.from_dict(old).positions == "learned"
    assert GPTConfig.from_dict(GPTConfig.preset("tiny", positions="sinusoidal").to_dict()).positions == "sinusoidal"


def test_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = GPTModel(GPTConfig.preset("tiny", drop_rate=0.5))
    idx = torch.randint(0, 512, (1, 16))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(idx), model(idx))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(idx), model(idx))
