"""The optimizers: Muon against torch.optim.Muon and against its definition, and Muon with AdamW as one optimizer."""

from __future__ import annotations

import copy

import pytest
import torch

from gpt.config import GPTConfig
from gpt.model import GPTModel
from gpt.training.optim import Muon, MuonWithAdamW, hidden_matrices, make_optimizer, orthogonalize


def test_muon_in_bfloat16_is_torch_optim_muon_step_for_step() -> None:
    torch.manual_seed(0)
    ours, theirs = torch.nn.Parameter(torch.randn(48, 32)), torch.nn.Parameter(torch.randn(48, 32))
    theirs.data.copy_(ours.data)
    a = Muon([ours], lr=0.01, weight_decay=0.1, ns_dtype=torch.bfloat16)
    b = torch.optim.Muon([theirs], lr=0.01, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    for _ in range(4):
        grad = torch.randn(48, 32)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        a.step()
        b.step()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (3, 16, 48)])
def test_newton_schulz_brings_every_singular_value_near_one(shape: tuple[int, ...]) -> None:
    matrix = torch.randn(*shape) @ torch.diag(torch.logspace(-1, 0, shape[-1]))  # columns 10x apart in size
    singular = torch.linalg.svdvals(orthogonalize(matrix, dtype=torch.float32))
    assert singular.min() > 0.6 and singular.max() < 1.25  # the quintic's band, not exactly 1: by design


def test_a_batch_is_orthogonalised_as_each_matrix_alone() -> None:
    batch = torch.randn(3, 24, 40)
    together = orthogonalize(batch, dtype=torch.float32)
    for i in range(3):
        torch.testing.assert_close(together[i], orthogonalize(batch[i], dtype=torch.float32), rtol=1e-4, atol=1e-5)


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest() -> None:
    model = GPTModel(GPTConfig.preset("tiny-modern"))
    optimizer = make_optimizer("muon", model, 1e-3, 0.1)
    assert isinstance(optimizer, MuonWithAdamW)
    muon_params = {id(p) for g in optimizer.optimizers[1].param_groups for p in g["params"]}
    adamw_params = {id(p) for g in optimizer.optimizers[0].param_groups for p in g["params"]}
    assert muon_params == {id(p) for p in hidden_matrices(model)} and not muon_params & adamw_params
    assert id(model.tok_emb.weight) in adamw_params and len(muon_params | adamw_params) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="optimizer must be one of adamw, muon"):
        make_optimizer("sgd", model, 1e-3, 0.1)


def test_muon_with_adamw_state_loads_into_a_fresh_one_and_steps_alike() -> None:
    torch.manual_seed(0)
    model = GPTModel(GPTConfig.preset("tiny-modern"))
    twin = GPTModel(GPTConfig.preset("tiny-modern"))
    x = torch.randint(0, 512, (2, 16))

    def step(m: GPTModel, opt: MuonWithAdamW) -> None:
        m(x).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()

    optimizer = make_optimizer("muon", model, 1e-3, 0.1)
    for _ in range(2):
        step(model, optimizer)
    twin.load_state_dict(model.state_dict())
    resumed = make_optimizer("muon", twin, 1e-3, 0.1)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # torch's state dict holds the live tensors
    step(model, optimizer)
    step(twin, resumed)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
