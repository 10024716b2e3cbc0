"""gpt/kernels.py: both matrix-product routes give nn.Linear's outputs and gradients."""

import pytest
import torch
import torch.nn.functional as F

from gpt.kernels import ROUTE_ENV, Linear, matmul_route

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
    from gpt.config import GPTConfig
    from gpt.generate import SamplingConfig, generate
    from gpt.model import GPTModel
    from gpt.training.loss import lm_loss

    cfg = GPTConfig(vocab_size=97, context_length=32, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
    batch = torch.randint(0, 97, (3, 17), generator=torch.Generator().manual_seed(1))
    results = {}
    for route in ("aten", "onednn"):
        monkeypatch.setenv(ROUTE_ENV, route)
        torch.manual_seed(0)
        model = GPTModel(cfg)
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
    import copy

    monkeypatch.setenv(ROUTE_ENV, "onednn")
    layer = make_linear()
    x = torch.randn(1, 48)
    with torch.no_grad():
        expected = layer(x)  # packs the weight
        torch.testing.assert_close(copy.deepcopy(layer)(x), expected)
