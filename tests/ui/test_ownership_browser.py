"""Issue 36 in Chromium: on a public server a visitor's training is theirs through a token the server signed. The
page keeps it (encrypted by Gradio with a key of the server's) across a reload and a restart of the server; a second
visitor (another browser profile) sees neither the run nor the training. The app logs no error on the way (the Chat
tab's choices read the visitor at page load)."""

from __future__ import annotations

import re

import pytest

from tests.helpers import STORY, app_process, free_port
from tests.ui import app_browser  # skips this module where Chromium is absent
from tests.ui.test_app_browser import TRAIN_WAIT_MS, open_tab

pytestmark = [pytest.mark.browser, pytest.mark.slow]
browser = app_browser.browser


def visitor(browser, url: str):
    """A page in its own browser profile: its own local storage, so its own token."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(app_browser.WAIT_MS)
    page.goto(url)
    page.get_by_role("tab", name="Tokenizer").wait_for()
    return page


def picker_options(page) -> list[str]:
    return options(page, "model-picker")


def options(page, picker: str) -> list[str]:
    """The choices of the dropdown `#picker`, read by opening it."""
    page.locator(f"#{picker} input").click()
    found = [text.split("\n")[-1] for text in page.get_by_role("option").all_inner_texts()]  # "✓\nname" if picked
    page.keyboard.press("Escape")
    return found


def train(page) -> str:
    """A 20-step tiny training in the Train tab: its run's name once it has finished."""
    open_tab(page, "Train")
    page.get_by_label("Austen: prideprejudice").uncheck()
    page.locator("#train-text textarea").fill(STORY * 3)
    page.locator("#train-preset input").click()
    page.get_by_role("option", name="tiny", exact=True).click()
    page.locator("#train-fit input").uncheck()
    steps = page.locator("#train-steps input[type=number]")
    steps.fill("20")
    steps.press("Enter")
    page.locator("#train-start").click()
    page.locator("#train-status").filter(has_text="Finished").wait_for(timeout=TRAIN_WAIT_MS)
    return re.search(r"run:[\w-]+", page.locator("#train-status").inner_text()).group(0)


def test_a_visitor_s_training_is_theirs_after_a_reload_and_a_restart_and_hidden_from_another(browser, tmp_path):
    runs, port = tmp_path / "runs", free_port()
    with app_process(app_browser.SHIPPED, runs, tmp_path / "app.log", port=port, GPT_APP_MODE="public") as url:
        alice = visitor(browser, url)
        run = train(alice)
        alice.reload()
        alice.get_by_role("tab", name="Tokenizer").wait_for()
        open_tab(alice, "Train")
        alice.locator("#train-status").filter(has_text=run).wait_for()
        assert run in picker_options(alice)
        mallory = visitor(browser, url)
        assert run not in picker_options(mallory)
        open_tab(mallory, "Train")
        mallory.locator("#train-status").filter(has_text="No training yet").wait_for()
        assert "Traceback" not in (tmp_path / "app.log").read_text()
    with app_process(app_browser.SHIPPED, runs, tmp_path / "again.log", port=port, GPT_APP_MODE="public"):
        alice.reload()
        alice.get_by_role("tab", name="Tokenizer").wait_for()
        assert run in picker_options(alice)  # the same token, read with the same keys after the restart
        mallory.reload()
        mallory.get_by_role("tab", name="Tokenizer").wait_for()
        assert run not in picker_options(mallory)
        assert "Traceback" not in (tmp_path / "again.log").read_text()


def test_an_upload_before_any_training_is_still_the_visitor_s_after_a_reload(browser, tmp_path):
    """The page keeps its owner from its first load: a classifier uploaded by a visitor who never trained is
    theirs after a reload (before, their owner was the page's session until a first start), and nobody else's."""
    from ui import spam_tab
    from ui.registry import ModelRegistry

    archive = spam_tab.download_classifier(ModelRegistry(app_browser.SHIPPED), "spam")
    with app_process(app_browser.SHIPPED, tmp_path / "runs", tmp_path / "app.log", GPT_APP_MODE="public") as url:
        teacher = visitor(browser, url)
        open_tab(teacher, "Spam")
        teacher.get_by_text("Download, upload").click()
        teacher.locator("input[type=file]").last.set_input_files(archive)
        message = teacher.locator("#spam-uploaded").filter(has_text="Loaded as")
        message.wait_for()
        name = re.search(r"run:[\w-]+", message.inner_text()).group(0)
        assert name in options(teacher, "spam-classifier")
        teacher.reload()
        teacher.get_by_role("tab", name="Tokenizer").wait_for()
        open_tab(teacher, "Spam")
        assert name in options(teacher, "spam-classifier")
        student = visitor(browser, url)
        open_tab(student, "Spam")
        assert name not in options(student, "spam-classifier")
        assert "Traceback" not in (tmp_path / "app.log").read_text()
