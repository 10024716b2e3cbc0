"""End to end in a real browser: `python app.py` on 127.0.0.1, Debian's Chromium driven by playwright.

One app launch and one browser serve every test; each opens a tab, types, clicks, waits for the
plot or the stream, and saves a screenshot to `screenshots/` (git-ignored). The app runs on the
shipped models when all three are there, otherwise on a tiny random model folder.
"""

from __future__ import annotations

import re

import pytest

from gpt.tokenizer import load_tokenizer
from tests.helpers import REPO, STORY
from tests.ui import app_browser  # skips this module where Chromium is absent

pytestmark = [pytest.mark.browser, pytest.mark.slow]
app_url, browser, page = app_browser.app_url, app_browser.browser, app_browser.page  # the app, Chromium, a page

SHOTS = REPO / "screenshots"
TRAIN_WAIT_MS = 300_000  # a bound on a hung training, not a speed target


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()  # a tab's contents exist only once it is opened


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_tokenizer_tab(page):
    open_tab(page, "Tokenizer")
    text = "Hello  world\nhello, Mr. Darcy!"
    page.locator("#tok-text textarea").fill(text)
    page.locator("#tok-run").click()
    # the view opened on its example text: wait for the typed text's tokens to replace them
    app_browser.sync_api.expect(page.locator("#tok-gpt2 .tok")).to_have_count(len(load_tokenizer("gpt2").encode(text)))
    assert "␣" in page.locator("#tok-chars").inner_text()
    assert "GPT-2 BPE" in page.locator("#tok-counts").inner_text()
    shot(page, "1-tokenizer")


def test_attention_tab(page):
    open_tab(page, "Attention")
    page.locator("#att-text textarea").fill("The cat sat on the mat and the cat slept.")
    page.locator("#att-run").click()
    page.locator("#att-plot .js-plotly-plot").wait_for()
    assert "causal mask" in page.locator("body").inner_text()
    page.get_by_label("all heads").check()
    page.locator("#att-plot .annotation-text").filter(has_text="head 2").wait_for()  # the grid: a tile per head
    shot(page, "2-attention")


def test_generate_tab(page):
    open_tab(page, "Generate")
    page.locator("#gen-prompt textarea").fill("It is a truth universally acknowledged, that")
    page.locator("#gen-run").click()
    output = page.locator("#gen-output textarea")
    page.wait_for_function("el => el.value.length > 0", arg=output.element_handle())
    page.locator("#gen-bars .js-plotly-plot").wait_for()
    page.locator("#gen-temps .js-plotly-plot").wait_for()
    before = page.locator("#gen-prompt textarea").input_value()
    page.locator("#gen-step").click()
    page.wait_for_function("([el, old]) => el.value !== old",
                           arg=[page.locator("#gen-prompt textarea").element_handle(), before])
    assert page.locator("#gen-prompt textarea").input_value().startswith(before)
    page.locator("#gen-beam").click()
    page.get_by_text("The best of 4 beams").wait_for()
    shot(page, "3-generate")


def test_train_tab_trains_a_model_that_the_generate_tab_then_uses(page):
    open_tab(page, "Train")
    page.get_by_label("Austen: prideprejudice").uncheck()
    page.locator("#train-text textarea").fill(STORY * 3)
    page.locator("#train-preview").click()
    page.locator("#train-counts").filter(has_text="characters per token").wait_for()
    page.locator("#train-preset input").click()
    page.get_by_role("option", name="tiny", exact=True).click()
    page.locator("#train-fit input").uncheck()  # the steps as set, not fitted to the minutes
    steps = page.locator("#train-steps input[type=number]")
    steps.fill("400")
    steps.press("Enter")
    page.locator("#train-start").click()
    page.locator("#train-curve .js-plotly-plot").wait_for()
    page.locator("#train-samples").filter(has_text="It is a truth").wait_for()
    shot(page, "4-train-curve")
    page.locator("#train-status").filter(has_text="Finished").wait_for(timeout=TRAIN_WAIT_MS)
    result = page.locator("#train-result").inner_text()
    assert "bits per byte" in result and "xz -9" in result
    shot(page, "4-train-result")
    page.reload()  # coming back: the browser's token finds the training again
    open_tab(page, "Train")
    page.locator("#train-status").filter(has_text="Finished").wait_for()
    run = re.search(r"run:[\w-]+", result).group(0)
    page.locator("#model-picker input").click()
    page.get_by_role("option", name=run, exact=True).click()
    page.locator("#model-summary").filter(has_text=run).wait_for()
    open_tab(page, "Generate")
    page.locator("#gen-prompt textarea").fill("It is a truth")
    page.locator("#gen-run").click()
    page.wait_for_function("el => el.value.length > 0", arg=page.locator("#gen-output textarea").element_handle())


def test_spam_tab(page):
    open_tab(page, "Spam")
    page.locator("#spam-text textarea").fill("WINNER! Claim your free prize now, call 09061701461")
    page.locator("#spam-run").click()
    page.locator("#spam-attn span").first.wait_for()
    verdict = page.locator("#spam-label").inner_text()
    assert "spam" in verdict and "ham" in verdict
    page.locator("#spam-confusion .js-plotly-plot").wait_for()
    assert "Test accuracy" in page.locator("#spam-summary").inner_text()
    shot(page, "5-spam")


def test_chat_tab(page):
    open_tab(page, "Chat")
    box = page.locator("#chat-input textarea")
    box.fill("What is the plural of mouse?")
    box.press("Enter")
    bot = page.locator(".message.bot, [data-testid='bot']").last
    bot.wait_for()
    page.wait_for_function("el => el.innerText.trim().length > 0", arg=bot.element_handle())
    page.get_by_text("The exact prompt sent to the model").click()
    prompt = page.locator("#chat-prompt")
    page.wait_for_function("el => el.innerText.includes('### Instruction:')", arg=prompt.element_handle())
    assert "What is the plural of mouse?" in prompt.inner_text()
    box.fill("And of goose?")  # a second turn: the first goes into the prompt's input, as plain text
    box.press("Enter")
    page.wait_for_function("el => el.innerText.includes('User: What is the plural of mouse?')",
                           arg=prompt.element_handle())
    assert "### Instruction:\nAnd of goose?" in prompt.inner_text()
    shot(page, "6-chat")


def test_page_asks_only_its_own_server(page, app_url):
    for name in ("Tokenizer", "Attention", "Generate", "Spam", "Chat"):
        open_tab(page, name)
    page.locator("#chat-intro").wait_for()
    page.wait_for_timeout(1000)  # the page keeps a connection open, so "network idle" never comes
    elsewhere = [url for url in page.requested if not url.startswith((app_url, "data:", "blob:"))]
    assert page.requested and not elsewhere


def test_bad_input_shows_a_message_not_a_traceback(page):
    open_tab(page, "Tokenizer")
    page.locator("#tok-text textarea").fill("   ")
    page.locator("#tok-run").click()
    page.get_by_text("The text is empty").first.wait_for()
    assert "Traceback" not in page.locator("body").inner_text()
