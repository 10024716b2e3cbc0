"""gpt/kernels.py: both matrix-product routes give nn.Linear's outputs and gradients, and `accelerate` swaps
the fast modules into a model without changing what it computes."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gpt.attention import CausalSelfAttention, KVCache
from gpt.config import GPTConfig
from gpt.generate import SamplingConfig, generate
from gpt.kernels import ROUTE_ENV, ROUTES, DecodeAttention, Linear, OutputHead, accelerate, matmul_route
from gpt.lora import LoRAConfig, LoRALinear, apply_lora, merge_lora
from gpt.model import GPTModel
from gpt.quantize import QuantizedLinear, quantize_model
from gpt.training.loss import lm_loss

onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                            reason="this PyTorch build has no oneDNN")


def make_linear(bias: bool = True, dtype: torch.dtype = torch.float32) -> Linear:
    torch.manual_seed(0)
    return Linear(48, 80, bias=bias).to(dtype)


@pytest.mark.parametrize("route", ["aten", "onednn"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 48), (3, 17, 48), (5, 48)])
def test_forward_equals_f_linear(monkeypatch, route, bias, shape):
    monkeypatch.setenv(ROUTE_ENV, route)
    layer = make_linear(bias)
    x = torch.randn(*shape)
    with torch.no_grad():
        got = layer(x)
    assert got.shape == (*shape[:-1], 80)
    torch.testing.assert_close(got, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


@onednn
def test_training_gradients_equal_the_default_route(monkeypatch):
    x = torch.randn(4, 9, 48)
    grads = {}
    for route in ("aten", "onednn"):
        monkeypatch.setenv(ROUTE_ENV, route)
        layer = make_linear()
        xi = x.clone().requires_grad_(True)
        (layer(xi).sin().sum()).backward()
        grads[route] = (xi.grad, layer.weight.grad, layer.bias.grad)
    for a, b in zip(grads["aten"], grads["onednn"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@onednn
def test_packed_weight_follows_weight_changes(monkeypatch):
    """Decoding reads a packed copy: an optimizer step (an in-place change) must not leave it stale."""
    monkeypatch.setenv(ROUTE_ENV, "onednn")
    layer = make_linear()
    x = torch.randn(1, 48)
    with torch.no_grad():
        layer(x)
        layer.weight.mul_(2.0)
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


@onednn
def test_bfloat16_matches(monkeypatch):
    monkeypatch.setenv(ROUTE_ENV, "onednn")
    layer = make_linear(dtype=torch.bfloat16)
    x = torch.randn(2, 48, dtype=torch.bfloat16)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=2e-2, atol=2e-2)


def test_state_dict_is_nn_linears():
    layer = make_linear()
    plain = torch.nn.Linear(48, 80)
    plain.load_state_dict(layer.state_dict())
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_unknown_route_is_refused(monkeypatch):
    monkeypatch.setenv(ROUTE_ENV, "fastest")
    with pytest.raises(ValueError, match=ROUTE_ENV):
        matmul_route(torch.float32)


def test_other_dtypes_take_the_default_route(monkeypatch):
    monkeypatch.setenv(ROUTE_ENV, "onednn")
    assert matmul_route(torch.float64) == "aten"


@onednn
def test_model_losses_and_greedy_tokens_agree_across_routes(monkeypatch):
    cfg = GPTConfig(vocab_size=97, context_length=32, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
    batch = torch.randint(0, 97, (3, 17), generator=torch.Generator().manual_seed(1))
    results = {}
    for route in ("aten", "onednn"):
        monkeypatch.setenv(ROUTE_ENV, route)
        torch.manual_seed(0)
        model = accelerate(GPTModel(cfg))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(3):
            loss = lm_loss(model(batch[:, :-1]), batch[:, 1:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            tokens = generate(model.eval(), [1, 2, 3], SamplingConfig(max_new_tokens=12, temperature=0))
        results[route] = (losses, tokens)
    assert results["aten"][0] == pytest.approx(results["onednn"][0], rel=1e-5)
    assert results["aten"][1] == results["onednn"][1]


@onednn
def test_a_layer_that_decoded_can_be_copied(monkeypatch):
    monkeypatch.setenv(ROUTE_ENV, "onednn")
    layer = make_linear()
    x = torch.randn(1, 48)
    with torch.no_grad():
        expected = layer(x)  # packs the weight
        torch.testing.assert_close(copy.deepcopy(layer)(x), expected)


# -- accelerate: the teaching model with the fast modules ---------------------------------------------------------

TINY = GPTConfig.preset("tiny")


def route(name: str):
    """A GPT_MATMUL value as a test parameter, skipped where this PyTorch has no oneDNN."""
    return pytest.param(name, marks=onednn) if name == "onednn" else name


def teaching_and_accelerated(cfg: GPTConfig = TINY) -> tuple[GPTModel, GPTModel]:
    torch.manual_seed(0)
    teaching = GPTModel(cfg).eval()
    return teaching, accelerate(copy.deepcopy(teaching))


def logits_three_ways(model: GPTModel, idx: torch.Tensor) -> list[torch.Tensor]:
    """Full pass, last position only, and a prefill then one-token decoding steps through the KV cache."""
    with torch.no_grad():
        cache = model.new_cache(idx.shape[0])
        model(idx[:, :12], cache, last_only=True)
        steps = [model(idx[:, t : t + 1], cache, last_only=True) for t in range(12, idx.shape[1])]
        return [model(idx), model(idx, last_only=True), torch.cat(steps, 1)]


def test_accelerate_swaps_every_layer_and_keeps_the_parameters():
    teaching, _ = teaching_and_accelerated()
    params = dict(teaching.named_parameters())
    accelerate(teaching)
    assert type(teaching.out_head) is OutputHead and all(type(b.att) is DecodeAttention for b in teaching.trf_blocks)
    assert all(type(m) in (Linear, OutputHead) for m in teaching.modules() if isinstance(m, nn.Linear))
    assert all(p is params[name] for name, p in teaching.named_parameters())  # the same tensors, not copies
    assert teaching.out_head.weight is teaching.tok_emb.weight
    classes = [type(m) for m in teaching.modules()]
    assert [type(m) for m in accelerate(teaching).modules()] == classes  # a second call changes nothing


@pytest.mark.parametrize("name", [route(r) for r in ROUTES])
def test_accelerate_leaves_the_float32_logits_unchanged(monkeypatch, name):
    monkeypatch.setenv(ROUTE_ENV, name)
    teaching, fast = teaching_and_accelerated()
    idx = torch.randint(0, TINY.vocab_size, (2, 20), generator=torch.Generator().manual_seed(1))
    for plain, accelerated in zip(logits_three_ways(teaching, idx), logits_three_ways(fast, idx), strict=True):
        torch.testing.assert_close(accelerated, plain, rtol=1e-5, atol=1e-5)


def test_accelerate_in_bfloat16_differs_only_by_the_widened_decode_attention(monkeypatch):
    """Full passes are the teaching model's; decoding steps attend in float32 (see the last test)."""
    monkeypatch.setenv(ROUTE_ENV, "aten")  # oneDNN's bfloat16 products, where the CPU has them, round otherwise
    teaching, fast = teaching_and_accelerated()
    idx = torch.randint(0, TINY.vocab_size, (2, 20), generator=torch.Generator().manual_seed(1))
    plain = logits_three_ways(teaching.to(torch.bfloat16), idx)
    accelerated = logits_three_ways(fast.to(torch.bfloat16), idx)
    torch.testing.assert_close(accelerated[0], plain[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(accelerated[1], plain[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(accelerated[2], plain[2], rtol=0, atol=0.05)  # bfloat16 rounding of the attention


def test_a_bfloat16_model_decodes_whether_or_not_onednn_has_bfloat16():
    """oneDNN's bfloat16 products need AVX-512 or AVX-NE-CONVERT: elsewhere the measured route is PyTorch's."""
    _, fast = teaching_and_accelerated()
    assert len(generate(fast.to(torch.bfloat16), [1, 2, 3], SamplingConfig(max_new_tokens=8, temperature=0))) == 8


@pytest.mark.parametrize("name", [route(r) for r in ROUTES])
def test_an_accelerated_model_trains_as_the_teaching_one(monkeypatch, name):
    """An optimizer made before `accelerate` goes on training the same (still tied) tensors, with the same losses."""
    monkeypatch.setenv(ROUTE_ENV, name)
    batch = torch.randint(0, TINY.vocab_size, (3, 17), generator=torch.Generator().manual_seed(1))
    teaching, _ = teaching_and_accelerated()
    losses = {}
    for label in ("teaching", "accelerated"):
        model = copy.deepcopy(teaching).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        if label == "accelerated":
            accelerate(model)  # after the optimizer was made
        losses[label] = []
        for _ in range(3):
            loss = lm_loss(model(batch[:, :-1]), batch[:, 1:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[label].append(loss.item())
        assert model.out_head.weight is model.tok_emb.weight
    assert losses["accelerated"] == pytest.approx(losses["teaching"], rel=1e-5)
    assert losses["accelerated"][-1] < losses["accelerated"][0]


def test_accelerate_keeps_lora_working_before_and_after():
    teaching, _ = teaching_and_accelerated()
    idx = torch.randint(0, TINY.vocab_size, (1, 10))
    lora = LoRAConfig(rank=2)
    adapted_first = accelerate(apply_lora(copy.deepcopy(teaching), lora))
    accelerated_first = apply_lora(accelerate(copy.deepcopy(teaching)), lora)
    for model in (adapted_first, accelerated_first):
        adapters = [m for m in model.modules() if isinstance(m, LoRALinear)]
        assert len(adapters) == 4 * TINY.n_layers and all(type(m.base) is Linear for m in adapters)
        with torch.no_grad():
            for m in adapters:
                m.lora_b.normal_()
            adapted = model(idx)
            torch.testing.assert_close(merge_lora(model)(idx), adapted, rtol=1e-4, atol=1e-4)


def test_accelerate_composes_with_int8_either_way():
    teaching, _ = teaching_and_accelerated()
    quantized_first, accelerated_first = copy.deepcopy(teaching), accelerate(copy.deepcopy(teaching))
    quantize_model(quantized_first)
    accelerate(quantized_first)
    quantize_model(accelerated_first)
    idx = torch.randint(0, TINY.vocab_size, (2, 20))
    for model in (quantized_first, accelerated_first):
        assert isinstance(model.out_head, QuantizedLinear) and not any(type(m) is Linear for m in model.modules())
        assert all(type(b.att) is DecodeAttention for b in model.trf_blocks)
    for a, b in zip(logits_three_ways(quantized_first, idx), logits_three_ways(accelerated_first, idx), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", [route(r) for r in ROUTES])
def test_decode_head_copy_matches_and_follows_weight_changes(monkeypatch, name):
    monkeypatch.setenv(ROUTE_ENV, name)
    _, tiny_model = teaching_and_accelerated()
    idx = torch.randint(0, tiny_model.cfg.vocab_size, (2, 9))

    def reference() -> torch.Tensor:
        return F.linear(tiny_model.hidden_states(idx)[0][:, -1:], tiny_model.out_head.weight, tiny_model.out_head.bias)

    with torch.no_grad():
        torch.testing.assert_close(tiny_model(idx, last_only=True), reference(), rtol=0, atol=1e-5)
        before = tiny_model(idx, last_only=True)
        tiny_model.out_head.weight.mul_(2.0)  # in place, as an optimizer step or load_state_dict does
        after = tiny_model(idx, last_only=True)
        assert not torch.allclose(after, before)
        torch.testing.assert_close(after, reference(), rtol=0, atol=1e-5)
        tiny_model.out_head = torch.nn.Linear(tiny_model.cfg.emb_dim, 2)  # a classifier's biased head
        accelerate(tiny_model)
        assert type(tiny_model.out_head) is OutputHead
        torch.testing.assert_close(tiny_model(idx, last_only=True), reference(), rtol=0, atol=1e-5)


def test_half_precision_decode_step_attends_in_float32() -> None:
    """A bfloat16 decoding step widens its one query's attention to float32: the step's output is the
    float32 attention over the bfloat16 keys and values, narrowed once."""
    torch.manual_seed(0)
    cfg = GPTConfig.preset("tiny")
    att = accelerate(CausalSelfAttention(cfg)).to(torch.bfloat16).eval()
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
