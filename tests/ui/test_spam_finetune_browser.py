"""The Spam tab in a real browser: finetune a tiny classifier by clicking, watch it, classify with it.

`python app.py` on 127.0.0.1 with a tiny random model folder (a finetuning takes seconds), Debian's
Chromium driven by playwright. The screenshot goes to `screenshots/` (git-ignored).
"""

from __future__ import annotations

import contextlib

import pytest

from tests.helpers import REPO, app_process, make_model_folder
from tests.ui import app_browser  # skips this module where Chromium is absent
from tests.ui.app_browser import WAIT_MS
from tests.ui.helpers import write_table

pytestmark = [pytest.mark.browser, pytest.mark.slow]
browser = app_browser.browser  # Chromium; the app is this module's own `app_url`, on a tiny model folder

SHOTS = REPO / "screenshots"
FINETUNE_WAIT_MS = 240_000  # a bound on a hung finetuning, not a speed target


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    models = make_model_folder(tmp_path_factory.mktemp("models"))
    log = tmp_path_factory.mktemp("app") / "app.log"
    with app_process(models, tmp_path_factory.mktemp("runs"), log, GPT_TRAIN_THREADS="1") as url:
        yield url


def test_finetune_a_classifier_by_clicking_then_classify_with_it(browser, app_url, tmp_path):
    table = write_table(tmp_path / "topics.csv")
    SHOTS.mkdir(exist_ok=True)
    with contextlib.closing(browser.new_page(viewport={"width": 1280, "height": 900})) as page:
        page.set_default_timeout(WAIT_MS)
        page.goto(app_url)
        page.locator("#model-summary").filter(has_text="parameters").wait_for()  # the page's load events ran
        page.get_by_role("tab", name="Spam").click()
        page.locator("#spam-summary").filter(has_text="Test accuracy").wait_for()
        page.get_by_text("Finetune your own classifier").click()
        defaults = page.locator("#spam-ft-defaults").filter(has_text="With these defaults")
        assert "slower per step" in defaults.inner_text()  # measured, shown before anything starts
        epochs = page.locator("#spam-ft-epochs input[type=number]")
        epochs.fill("1")
        epochs.press("Enter")
        page.get_by_label("LoRA", exact=True).check()
        page.get_by_label("mean", exact=True).check()
        page.get_by_label("my CSV/TSV file").check()
        page.locator("#spam-ft-file input[type=file]").set_input_files(str(table))
        page.locator("#spam-ft-file").filter(has_text="topics.csv").wait_for()
        page.locator("#spam-ft-start").click()
        page.locator("#spam-ft-status").filter(has_text="Finished").wait_for(timeout=FINETUNE_WAIT_MS)
        page.locator("#spam-ft-curves .js-plotly-plot").wait_for()
        page.locator("#spam-ft-confusion .js-plotly-plot").wait_for()
        result = page.locator("#spam-ft-result").inner_text()
        assert "Test accuracy" in result and "LoRA rank 8" in result and "trainable parameters" in result
        run = result.split("\n")[0].strip()  # the heading: run:<name>
        assert run.startswith("run:")
        page.locator("#spam-classifier input").wait_for()
        page.wait_for_function("([el, name]) => el.value === name",
                               arg=[page.locator("#spam-classifier input").element_handle(), run])
        page.locator("#spam-summary").filter(has_text=run).wait_for()  # the figures follow the picked classifier
        page.locator("#spam-text textarea").fill("The match went to extra time and the home team scored")
        page.locator("#spam-run").click()
        page.locator("#spam-attn span").first.wait_for()
        verdict = page.locator("#spam-label").inner_text()
        assert all(label in verdict for label in ("cooking", "sport", "travel"))
        page.screenshot(path=str(SHOTS / "spam-finetune.png"), full_page=True)
        assert "Traceback" not in page.locator("body").inner_text()
