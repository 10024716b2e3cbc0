from __future__ import annotations

import math

import pytest
import torch

from gpt.attention import CausalSelfAttention, KVCache
from gpt.config import PRESETS, GPTConfig
from gpt.model import GPTModel, sinusoidal_positions
from gpt.precision import dtype_of


def test_attention_weights_path_equals_fast_path(tiny_model: GPTModel) -> None:
    idx = torch.randint(0, tiny_model.cfg.vocab_size, (2, 40))
    with torch.no_grad():
        fast, none = tiny_model.hidden_states(idx)
        slow, maps = tiny_model.hidden_states(idx, need_weights=True)
    assert none == [] and len(maps) == tiny_model.cfg.n_layers
    assert (fast - slow).abs().max() <= 1e-5
    for w in maps:
        assert w.shape == (2, tiny_model.cfg.n_heads, 40, 40)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, tiny_model.cfg.n_heads, 40))
        assert torch.all(w.triu(diagonal=1) == 0)  # causal: nothing attends to the future


def test_kv_cache_in_chunks_equals_full_forward(tiny_model: GPTModel) -> None:
    idx = torch.randint(0, tiny_model.cfg.vocab_size, (3, 30))
    with torch.no_grad():
        full = tiny_model(idx)
        cache = tiny_model.new_cache(batch_size=3)
        pieces = [tiny_model(idx[:, a:b], cache) for a, b in ((0, 11), (11, 12), (12, 25), (25, 30))]
    assert cache.pos == 30
    assert (torch.cat(pieces, dim=1) - full).abs().max() <= 1e-5


def test_last_only_logits(tiny_model: GPTModel) -> None:
    idx = torch.randint(0, tiny_model.cfg.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(idx, last_only=True), tiny_model(idx)[:, -1:])


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
    with pytest.raises(ValueError, match="positions must be one of learned, sinusoidal"):
        GPTConfig(positions="rotary")


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


def test_decode_head_copy_matches_and_follows_weight_changes(tiny_model: GPTModel) -> None:
    idx = torch.randint(0, tiny_model.cfg.vocab_size, (2, 9))

    def reference() -> torch.Tensor:
        return tiny_model.out_head(tiny_model.hidden_states(idx)[0][:, -1:])

    with torch.no_grad():
        torch.testing.assert_close(tiny_model(idx, last_only=True), reference(), rtol=0, atol=1e-5)
        before = tiny_model(idx, last_only=True)
        tiny_model.out_head.weight.mul_(2.0)  # in place, as an optimizer step or load_state_dict does
        after = tiny_model(idx, last_only=True)
        assert not torch.allclose(after, before)
        torch.testing.assert_close(after, reference(), rtol=0, atol=1e-5)
        tiny_model.out_head = torch.nn.Linear(tiny_model.cfg.emb_dim, 2)  # a classifier's biased head
        torch.testing.assert_close(tiny_model(idx, last_only=True), reference(), rtol=0, atol=1e-5)


def test_half_precision_decode_step_attends_in_float32() -> None:
    """A bfloat16 decoding step widens its one query's attention to float32: the step's output is the
    float32 attention over the bfloat16 keys and values, narrowed once."""
    torch.manual_seed(0)
    cfg = GPTConfig.preset("tiny")
    att = CausalSelfAttention(cfg).to(torch.bfloat16).eval()
    cache = KVCache(cfg, batch_size=2, dtype=torch.bfloat16)
    with torch.no_grad():
        att(torch.randn(2, 9, cfg.emb_dim, dtype=torch.bfloat16), cache)
        cache.pos = 9
        x = torch.randn(2, 1, cfg.emb_dim, dtype=torch.bfloat16)
        y, _ = att(x, cache)
        q, k, v = att.qkv(x).view(2, 1, 3, cfg.n_heads, cfg.head_dim).permute(2, 0, 3, 1, 4)
        keys, values = torch.cat([cache.keys[0, :, :, :9], k], 2), torch.cat([cache.values[0, :, :, :9], v], 2)
        weights = torch.softmax(q.float() @ keys.float().transpose(-2, -1) / math.sqrt(cfg.head_dim), dim=-1)
        expected = att.out_proj((weights @ values.float()).to(torch.bfloat16).transpose(1, 2).reshape(2, 1, -1))
    torch.testing.assert_close(y, expected, atol=2.5e-4, rtol=0)  # bfloat16 attention is off by about 1e-3 here
