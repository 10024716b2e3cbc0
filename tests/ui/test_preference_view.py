"""The Chat tab's DPO view: both answers scored by both models, the reward and what each model prefers."""

import pytest

from gpt.preference.data import SHIPPED_PAIRS
from ui import preference_view
from ui.registry import SHIPPED_CHAT, SHIPPED_CHAT_DPO, ModelRegistry


@pytest.fixture(scope="module")
def registry(shipped_models) -> ModelRegistry:
    return ModelRegistry(shipped_models)


def test_a_model_against_itself_moves_nothing(registry):
    table, line = preference_view.score_pair(registry, SHIPPED_CHAT, SHIPPED_CHAT, "What is 2 plus 3?", "",
                                             "5", "I cannot say.")
    assert list(table["answer"]) == ["chosen", "rejected"]
    assert list(table[preference_view.REWARD]) == [0.0, 0.0]
    assert (table["tokens"] > 0).all()
    assert "+0.000" in line


def test_the_tuned_model_raises_the_chosen_answer_of_held_out_pairs(registry):
    if not registry.has(SHIPPED_CHAT_DPO):
        pytest.skip("no DPO-tuned chat model is shipped")
    margins = []
    for pair in preference_view.held_out_examples():
        table, _ = preference_view.score_pair(registry, SHIPPED_CHAT, SHIPPED_CHAT_DPO, pair["instruction"],
                                              pair["input"], pair["chosen"], pair["rejected"])
        rewards = table[preference_view.REWARD]
        margins.append(rewards[0] - rewards[1])
    assert sum(m > 0 for m in margins) > len(margins) / 2


def test_examples_are_held_out_pairs_that_fill_the_fields():
    if not SHIPPED_PAIRS.is_file():
        pytest.skip("no shipped preference pairs")
    examples = preference_view.held_out_examples()
    assert examples and all(p["split"] == "test" for p in examples)
    label = preference_view.example_label(0, examples[0])
    assert preference_view.pick_example(label) == (examples[0]["instruction"], examples[0]["input"],
                                                   examples[0]["chosen"], examples[0]["rejected"])


@pytest.mark.parametrize("field", ["instruction", "chosen", "rejected"])
def test_an_empty_field_is_refused(registry, field):
    values = {"instruction": "Say hi.", "chosen": "Hi!", "rejected": "No."} | {field: "  "}
    with pytest.raises(ValueError, match="empty"):
        preference_view.score_pair(registry, SHIPPED_CHAT, SHIPPED_CHAT, values["instruction"], "",
                                   values["chosen"], values["rejected"])
