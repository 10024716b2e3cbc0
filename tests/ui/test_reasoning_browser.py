"""The Reasoning tab in a real browser (`python app.py` on the shipped models, Debian's Chromium via playwright):
draw a held-out problem, vote with N = 8, see the votes' chart, the chosen answers and the replies; a screenshot
goes to $GPT_SHOTS_DIR (default: a pytest temporary folder)."""

from __future__ import annotations

import pytest

from tests.ui import app_browser  # skips this module where Chromium is absent

pytestmark = [pytest.mark.browser, pytest.mark.slow]
app_url, browser, page, shots = app_browser.app_url, app_browser.browser, app_browser.page, app_browser.shots


def test_draw_a_problem_and_vote_with_eight_replies(page, shots, app_url):
    page.get_by_role("tab", name="Reasoning").click()
    question = page.locator("#reasoning-question textarea")
    first = question.input_value()
    assert first
    page.locator("#reasoning-new").click()
    page.locator("#reasoning-note", has_text="held-out").wait_for()
    drawn = question.input_value()
    assert drawn
    n = page.locator("#reasoning-n input[type=number]")
    n.fill("8")
    n.press("Enter")
    page.locator("#reasoning-vote").click()
    page.locator("#reasoning-plot .js-plotly-plot").wait_for()
    summary = page.locator("#reasoning-summary")
    summary.get_by_text("Expected answer").wait_for()
    text = summary.inner_text()
    assert "majority of 8 at temperature" in text and "best-of-8" in text and "greedy" in text
    replies = page.locator("#reasoning-replies")
    cells = replies.locator("[data-testid^=cell-]")
    cells.filter(has_text="★ best-of-N").wait_for()
    verdicts = cells.filter(has_text="right").count() + cells.filter(has_text="wrong").count()
    assert cells.filter(has_text="no number").count() + verdicts == 8
    assert question.input_value() == drawn  # voting leaves the problem as it was
    page.wait_for_timeout(500)  # plotly finishes its layout after the element appears
    page.screenshot(path=str(shots / "reasoning-vote.png"), full_page=True)
    # a problem without a number: one line, and the votes stay
    question.fill("What is the capital of France?")
    page.locator("#reasoning-vote").click()
    page.get_by_text("no number in it").first.wait_for()
    assert text in summary.inner_text()  # Gradio marks the outputs "Error"; their contents stay
    assert "Traceback" not in page.locator("body").inner_text()
    assert all(u.startswith(app_url) or u.startswith(("data:", "blob:")) for u in page.requested)


def test_a_short_grpo_run_from_the_shipped_chat_model(page, shots):
    """The panel of issue 37: three GRPO steps of the shipped chat model, its live curve, the held-out accuracy
    before and after, and the result picked in the tab's model picker."""
    page.get_by_role("tab", name="Reasoning").click()
    page.get_by_text("Train it to reason (GRPO)").click()
    steps = page.locator("#reasoning-rl-steps input[type=number]")
    steps.fill("3")
    steps.press("Enter")
    page.locator("#reasoning-rl-start").click()
    page.locator("#reasoning-rl-curve .js-plotly-plot").wait_for(timeout=app_browser.WAIT_MS * 5)
    result = page.locator("#reasoning-rl-result")
    result.get_by_text("Held-out accuracy").wait_for(timeout=app_browser.WAIT_MS * 5)
    text = result.inner_text()
    assert "3 of 3 GRPO steps" in text and "at step 0" in text and "at step 3" in text, text
    name = text.splitlines()[0].strip()
    assert name.startswith("run:rl-")
    page.screenshot(path=str(shots / "reasoning-grpo.png"), full_page=True)
    page.locator("#reasoning-model input").click()
    page.get_by_role("option", name=name, exact=True).click()
    assert "Traceback" not in page.locator("body").inner_text()
