"""`python app.py` on 127.0.0.1 and Debian's Chromium driven by playwright: the fixtures of every browser test.

Importing this module skips the importing test module where Chromium or playwright is absent. A test module
takes the fixtures by name (`page = app_browser.page`, and `app_url`, `browser`, `shots`); the app runs on the shipped
models (they ship with it: the tests fail where one is missing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import REPO, app_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
SHIPPED = REPO / "assets" / "models"
WAIT_MS = 60_000

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent (install Debian's chromium: bash tests/run.sh does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    with app_process(SHIPPED, tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("app") / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a test saves its screenshots: GPT_SHOTS_DIR to keep them and look at them, else a temporary folder."""
    folder = Path(os.environ["GPT_SHOTS_DIR"]) if os.environ.get("GPT_SHOTS_DIR") else tmp_path_factory.mktemp("shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser, app_url: str):
    """A new page on the app, once its first tab is drawn; `page.requested` lists every URL it asked for."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.requested = []  # the app must work offline: a test reads what the page asked for
    page.on("request", lambda request: page.requested.append(request.url))
    page.goto(app_url)
    page.get_by_role("tab", name="Tokenizer").wait_for()
    yield page
    page.close()
