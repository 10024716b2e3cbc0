"""LoRA: an adapted model equals its base at the start, merging changes nothing, only adapters learn."""

from __future__ import annotations

import pytest
import torch

from gpt.config import PRESETS
from gpt.lora import LoRAConfig, LoRALinear, apply_lora, load_adapters, merge_lora, save_adapters, trainable_parameters
from gpt.model import GPTModel

CFG = PRESETS["tiny"]


def models(seed: int = 0) -> tuple[GPTModel, GPTModel]:
    torch.manual_seed(seed)
    base = GPTModel(CFG).eval()
    adapted = GPTModel(CFG).eval()
    adapted.load_state_dict(base.state_dict())
    return base, adapted


def ids() -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))


def test_an_adapted_model_equals_its_base_until_it_trains():
    base, adapted = models()
    apply_lora(adapted, LoRAConfig(rank=4, alpha=8))
    torch.testing.assert_close(adapted(ids()), base(ids()), rtol=0, atol=0)
    assert sum(isinstance(m, LoRALinear) for m in adapted.modules()) == 4 * CFG.n_layers


def test_only_the_adapters_get_gradients_and_the_count_is_right():
    _, adapted = models()
    apply_lora(adapted, LoRAConfig(rank=4, alpha=8, targets=("qkv",)))
    adapted(ids()).sum().backward()
    trained = {name for name, p in adapted.named_parameters() if p.grad is not None}
    assert trained and all(".lora_a" in n or ".lora_b" in n for n in trained)
    d = CFG.emb_dim
    assert trainable_parameters(adapted) == CFG.n_layers * 4 * (d + 3 * d)  # A: 4 x d, B: 3d x 4 per layer


def test_scaling_is_alpha_over_rank_and_merging_gives_the_same_outputs():
    _, adapted = models()
    apply_lora(adapted, LoRAConfig(rank=2, alpha=6))
    layer = adapted.trf_blocks[0].att.qkv
    assert layer.scaling == 3.0  # alpha / rank, not alpha (the book's code had it wrong once, its issue #821)
    with torch.no_grad():
        for m in adapted.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.normal_(0, 0.1)
        x = torch.randn(3, CFG.emb_dim)
        expected = layer.base(x) + 3.0 * x @ layer.lora_a.t() @ layer.lora_b.t()
        torch.testing.assert_close(layer(x), expected)
        before = adapted(ids())
    merge_lora(adapted)
    assert not any(isinstance(m, LoRALinear) for m in adapted.modules())
    torch.testing.assert_close(adapted(ids()), before, rtol=1e-5, atol=1e-5)


def test_saved_adapters_load_onto_their_base_and_refuse_another(tmp_path):
    _, adapted = models()
    apply_lora(adapted, LoRAConfig(rank=2, alpha=4))
    with torch.no_grad():
        adapted.trf_blocks[1].ff.fc.lora_b.fill_(0.01)
    save_adapters(adapted, tmp_path, LoRAConfig(rank=2, alpha=4), base_sha256="a" * 64)
    _, fresh = models()
    load_adapters(fresh, tmp_path, base_sha256="a" * 64)
    torch.testing.assert_close(fresh(ids()), adapted(ids()))
    with pytest.raises(ValueError, match="another base model"):
        load_adapters(models()[1], tmp_path, base_sha256="b" * 64)


@pytest.mark.parametrize("kwargs, message", [({"rank": 0}, "rank"), ({"alpha": 0}, "alpha"),
                                             ({"targets": ("emb",)}, "targets")])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoRAConfig(**kwargs)
