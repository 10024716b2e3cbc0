"""The classroom in Chromium (issue 34): the tour and every tab at 1920x1080 and on a phone (390x844) with nothing
cut off at the right, presentation mode's wide figures, and every figure's PNG, SVG and CSV buttons."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ui import app_browser
from ui import tour_tab

pytestmark = [pytest.mark.browser, pytest.mark.slow]
app_url, browser, shots = app_browser.app_url, app_browser.browser, app_browser.shots
TABS = ("Tokenizer", "Attention", "Generate", "Train", "Spam", "Chat", "Reasoning")
SIZES = {"desktop": (1920, 1080), "phone": (390, 844)}
FIRST_VIEW = {"Tokenizer": "#tok-model .tok", "Attention": "#att-plot .js-plotly-plot",  # drawn as the page opens
              "Generate": "#gen-bars .js-plotly-plot"}
FIGURE_SHARE = 0.8  # of the page's width, in presentation mode
TICK_PX = "() => parseFloat(getComputedStyle(document.querySelector('#att-plot .xtick text')).fontSize)"
# Elements reaching past the right edge that no box of theirs scrolls or clips within the page.
CUT_OFF = """() => {
  const width = document.documentElement.clientWidth, cut = [];
  for (const e of document.querySelectorAll("body *")) {
    const box = e.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || box.right <= width + 1) continue;
    let p = e.parentElement, held = false;
    for (; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== "visible" && p.getBoundingClientRect().right <= width + 1) {
        held = true; break;
      }
    }
    if (!held) cut.push(`${e.tagName.toLowerCase()}#${e.id}.${String(e.className).slice(0, 40)}`);
  }
  return {scroll: document.documentElement.scrollWidth, width, cut: cut.slice(0, 5)};
}"""


def open_page(browser, url: str, size: tuple[int, int], query: str = ""):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]}, accept_downloads=True)
    page.set_default_timeout(app_browser.WAIT_MS)
    page.goto(url + query)
    page.locator("#tour-tokens .tok").first.wait_for()
    return page


def open_tab(page, name: str, phone: bool) -> None:
    if phone and not page.get_by_role("tab", name=name).is_visible():
        page.locator("button[aria-label='More tabs']").click()
        page.locator(".overflow-dropdown button", has_text=name).click()
    else:
        page.get_by_role("tab", name=name).click()
    page.get_by_role("tab", name=name, selected=True).wait_for()


def assert_nothing_cut_off(page, where: str) -> None:
    found = page.evaluate(CUT_OFF)
    assert found["scroll"] <= found["width"] + 1 and not found["cut"], f"{where}: {found}"


@pytest.mark.parametrize("size", SIZES)
def test_the_tour_and_every_tab_fit_the_width(browser, app_url, shots, size):
    page = open_page(browser, app_url, SIZES[size])
    for step in tour_tab.STEPS[1:]:  # the first is open
        page.locator(f"#tour-step-{step.key} > button").first.click()
    page.locator("#tour-attention .js-plotly-plot").wait_for()
    page.locator("#tour-bars .js-plotly-plot").wait_for()
    page.locator("#tour-attended span").first.wait_for()
    assert_nothing_cut_off(page, "the tour")
    page.screenshot(path=str(shots / f"test-{size}-tour.png"), full_page=True)
    for tab in TABS:
        open_tab(page, tab, size == "phone")
        if tab in FIRST_VIEW:
            page.locator(FIRST_VIEW[tab]).first.wait_for()
        page.wait_for_timeout(1500)
        assert_nothing_cut_off(page, tab)
        page.screenshot(path=str(shots / f"test-{size}-{tab}.png"), full_page=True)
    page.close()


def test_a_tour_button_opens_its_tab(browser, app_url):
    page = open_page(browser, app_url, SIZES["desktop"])
    page.locator("#tour-step-window > button").first.click()
    page.locator("#tour-open-window").click()
    page.get_by_role("tab", name="Train", selected=True).wait_for()
    page.close()


def test_presentation_mode_draws_figures_across_the_page_with_larger_text_and_is_remembered(browser, app_url, shots):
    page = open_page(browser, app_url, SIZES["desktop"], "?mode=present")
    assert "present" in page.evaluate("document.body.className")
    open_tab(page, "Attention", phone=False)
    plot = page.locator("#att-plot .js-plotly-plot")
    plot.wait_for()
    assert plot.bounding_box()["width"] >= FIGURE_SHARE * SIZES["desktop"][0]
    page.screenshot(path=str(shots / "test-present-attention.png"), full_page=True)
    presented = page.evaluate(TICK_PX)
    page.locator("#present-toggle").click()
    assert "present" not in page.evaluate("document.body.className")
    page.wait_for_function(f"({TICK_PX})() < {presented}")  # the figure is drawn again, its text smaller
    assert presented >= 1.4 * page.evaluate(TICK_PX)
    page.goto(app_url)  # remembered: off now, without the query
    page.locator("#tour-tokens .tok").first.wait_for()
    assert "present" not in page.evaluate("document.body.className")
    page.locator("#present-toggle").click()
    page.reload()
    page.locator("#tour-tokens .tok").first.wait_for()
    assert "present" in page.evaluate("document.body.className")
    page.close()


def test_every_figure_saves_png_svg_and_csv(browser, app_url):
    page = open_page(browser, app_url, SIZES["desktop"])
    page.locator("#tour-step-attention > button").first.click()
    plot = page.locator("#tour-attention .js-plotly-plot")
    plot.hover()
    titles = page.locator("#tour-attention .modebar-btn").evaluate_all(
        "els => els.map(e => e.getAttribute('data-title'))")
    assert {"Download plot as a PNG", "Download plot as SVG", "Download the numbers as CSV"} <= set(titles)
    with page.expect_download() as svg:
        page.locator("#tour-attention .modebar-btn[data-title='Download plot as SVG']").click()
    assert svg.value.suggested_filename == "layer-1-head-1.svg"
    with page.expect_download() as csv:
        page.locator("#tour-attention .modebar-btn[data-title='Download the numbers as CSV']").click()
    rows = Path(csv.value.path()).read_text().splitlines()
    assert len(rows) >= 10 and rows[1].startswith('"The"')  # a header of tokens, then a row per token
    page.close()
