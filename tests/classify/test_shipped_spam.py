"""The shipped spam classifier's headline figures, re-measured from its weights: every test set's
confusion matrix must be the one in `test_metrics.json`, and the model card must state its accuracy."""

from __future__ import annotations

import pytest

from gpt.classify.classifier import METRICS_FILE, SHIPPED_DIR, parse_test_metrics
from gpt.classify.finetune import CARD_FILE, measure_classifier


@pytest.mark.slow
def test_the_card_figures_are_those_of_the_shipped_weights():
    stored = parse_test_metrics((SHIPPED_DIR / METRICS_FILE).read_text())
    measured = measure_classifier(SHIPPED_DIR)
    assert list(measured) == list(stored)
    card = (SHIPPED_DIR / CARD_FILE).read_text()
    for name, metrics in measured.items():
        assert metrics.confusion == stored[name].confusion, name
        assert metrics.n_test == stored[name].n_test
        assert f"Accuracy: **{100 * metrics.accuracy:.1f}%**" in card, name
