"""The Generate tab's precision view: the picked model in float32, bfloat16 and int8, measured side by side."""

import pytest

from ui import precision_view
from ui.registry import ModelRegistry


@pytest.fixture(scope="module")
def registry(shipped_models) -> ModelRegistry:
    return ModelRegistry(shipped_models)


def test_every_precision_is_measured_and_int8_keeps_the_held_out_quality(registry):
    table, reference, chosen, line = precision_view.measure(registry, "base", "int8", "The Roman Empire was", 16)
    assert list(table["precision"]) == ["float32", "bfloat16", "int8"]
    sizes = list(table["weights (MB)"])
    assert sizes[0] > sizes[1] > sizes[2]
    assert (table["decode (tokens/s)"] > 0).all()
    bpb = list(table["held-out bits per byte"])
    assert all(abs(v / bpb[0] - 1) < 0.01 for v in bpb)  # the bar: within 1% of float32
    assert reference and chosen and "follows float32's" in line


def test_the_float32_entry_is_the_loaded_model_and_copies_are_cached(registry):
    assert registry.load_in("base", "float32") is registry.load("base")
    assert registry.load_in("base", "int8") is registry.load_in("base", "int8")


@pytest.mark.parametrize(("precision", "message"), [("int4", "unknown precision"), ("float64", "unknown precision")])
def test_a_precision_it_does_not_offer_is_refused(registry, precision, message):
    with pytest.raises(ValueError, match=message):
        precision_view.measure(registry, "base", precision, "Hello", 4)


def test_gpt2_sizes_are_not_copied_and_nothing_is_downloaded(registry):
    with pytest.raises(ValueError, match="GPT-2 runs in float32 here"):
        registry.load_in("gpt2-small", "int8")
