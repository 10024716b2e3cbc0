"""The Spam tab on a classifier measured on several test sets, and the shipped classifier on the tab's examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt.classify import data
from gpt.classify.classifier import METRICS_FILE, ClassifierMetrics, dump_test_metrics
from gpt.classify.data import MODERN_TEST, SET_TITLES, SMS_TEST, SPAMASSASSIN_TEST
from gpt.files import SHIPPED_MODELS, write_text_atomic
from tests.helpers import make_model_folder
from ui import spam_tab
from ui.registry import ModelRegistry

SETS = (SMS_TEST, SPAMASSASSIN_TEST, MODERN_TEST)  # in the order a mixed classifier is measured


@pytest.fixture(scope="module")
def mixed_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model folder, its classifier's figures replaced by figures on the three sets of the mix."""
    root = make_model_folder(tmp_path_factory.mktemp("models"))
    evaluations = {name: ClassifierMetrics.from_predictions(
        [0] * 4 + [1] * 4, [0] * (4 - i) + [1] * (4 + i), ["ham", "spam"], f"{name} source",
        {label: [f"{name} {label} {j}" for j in range(4)] for label in ("ham", "spam")}) for i, name in enumerate(SETS)}
    write_text_atomic(root / "spam" / METRICS_FILE, dump_test_metrics(evaluations))
    return root


def test_examples_are_modern_held_out_messages_then_sms_test_ones(mixed_models):
    pairs = spam_tab.labelled_examples(ModelRegistry(mixed_models))
    assert pairs == [(f"{name} {label} {j}", label) for name in (MODERN_TEST, SMS_TEST) for label in ("ham", "spam")
                     for j in range(spam_tab.EXAMPLES_PER_CLASS)]  # no SpamAssassin mail: too long to show
    assert spam_tab.examples(ModelRegistry(mixed_models)) == [text for text, _ in pairs]


def test_figures_for_every_test_set(mixed_models):
    summary, table, confusion = spam_tab.test_figures(ModelRegistry(mixed_models))
    for i, name in enumerate(SETS):
        assert f"{SET_TITLES[name]}: **{(8 - i) / 8:.1%}** on 8 held-out messages ({name} source)" in summary
    assert table["set"].tolist() == [SET_TITLES[name] for name in SETS for _ in range(2)]
    assert table["class"].tolist() == ["ham", "spam"] * 3
    assert [[list(row) for row in trace.z] for trace in confusion.data] == [[[4 - i, i], [0, 4]] for i in range(3)]
    assert [a.text for a in confusion.layout.annotations][:3] == [SET_TITLES[name] for name in SETS]


@pytest.mark.slow
def test_the_shipped_classifier_calls_every_example_of_the_tab_by_its_label():
    """What the tab offers to click must be right: no everyday message shown as spam, no spam as ham."""
    registry = ModelRegistry(SHIPPED_MODELS)
    model = spam_tab.classifier(registry)
    examples = spam_tab.labelled_examples(registry)
    wrong = [(text, label) for text, label in examples if model.predict(text).label != label]
    assert wrong == []
    # The stored examples are the test messages it labelled right: the tab must still offer enough of
    # each class from the modern held-out set, and they must be held-out messages, not made up.
    heldout = {m.text for m in data.load_modern(data.MODERN_HELDOUT).messages}
    modern = [(text, label) for text, label in examples if text in heldout]
    assert sorted(label for _, label in modern) == ["ham"] * spam_tab.EXAMPLES_PER_CLASS + [
        "spam"] * spam_tab.EXAMPLES_PER_CLASS
