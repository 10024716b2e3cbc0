"""The views inside the model in a real browser: `python app.py` on 127.0.0.1, Debian's Chromium via playwright.

Each test opens a tab, opens the view's accordion, runs it, waits for its pictures and screenshots the
view into $GPT_SHOTS_DIR (default: a pytest temporary folder). The app, the browser and the page are
tests/ui/app_browser.py's fixtures: the shipped models when they are all there, otherwise a tiny random
model folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt.instruct.prompt import format_prompt
from tests.ui import app_browser  # skips this module where Chromium is absent

pytestmark = [pytest.mark.browser, pytest.mark.slow]
app_url, browser, page, shots = app_browser.app_url, app_browser.browser, app_browser.page, app_browser.shots


def run_view(page, tab: str | None, title: str, button: str | None, *pictures: str) -> None:
    """Open the tab (its contents exist only once opened) and the view's accordion by its title, click the
    view's button, and wait for each of its pictures."""
    if tab:
        page.get_by_role("tab", name=tab).click()
    page.get_by_text(title).click()
    if button:
        page.locator(button).click()
    for picture in pictures:
        page.locator(picture).first.wait_for()


def shot(page, view: str, shots: Path, name: str) -> None:
    page.wait_for_timeout(500)  # plotly finishes its layout after the element appears
    page.locator(f"#{view}").screenshot(path=str(shots / f"view-{name}.png"))
    assert "Traceback" not in page.locator("body").inner_text()


def test_embeddings_beside_the_tokenizer(page, shots):
    run_view(page, "Tokenizer", "Embeddings: where the model puts each token", "#emb-run",
             "#emb-plot .js-plotly-plot", "#emb-positions .js-plotly-plot")
    assert "nearest tokens" in page.locator("#emb-table").inner_text()
    assert "gpt.embeddings.nearest_tokens" in page.locator("#emb-info").inner_text()
    shot(page, "emb", shots, "1-embeddings")


def test_logit_lens_beside_attention(page, shots):
    run_view(page, "Attention", "Logit lens: what each layer would predict", "#lens-run",
             "#lens-grid .js-plotly-plot", "#lens-trace .js-plotly-plot")
    assert "gpt.lens.logit_lens" in page.locator("#lens-info").inner_text()
    shot(page, "lens", shots, "2-logit-lens")


def test_surprisal_beside_attention(page, shots):
    run_view(page, "Attention", "Surprisal: how unexpected each token is", "#surprisal-run", "#surprisal-a .tok")
    page.locator("#surprisal-info").filter(has_text="bits per byte").wait_for()
    if page.locator("#surprisal-b .tok").count():  # a second model was there to set beside the first
        assert "bits:" in page.locator("#surprisal-table").inner_text()
    shot(page, "surprisal", shots, "3-surprisal")


def test_beams_in_generate(page, shots):
    run_view(page, "Generate", "Beam search: every beam, and where it splits", "#beams-run", "#beams-table table")
    assert "greedy" in page.locator("#beams-table").inner_text()
    shot(page, "beams", shots, "4-beams")


def test_kv_cache_in_one_token_mode(page, shots):
    run_view(page, "Generate", "The KV cache: memory for speed", None)
    page.locator("#kv-table").filter(has_text="gpt2-xl").wait_for()  # opening the view fills the calculator
    page.locator("#gen-step").click()
    page.locator("#kv-info").filter(has_text="After reading").wait_for()
    before = page.locator("#kv-info").inner_text()
    page.locator("#gen-step").click()
    page.wait_for_function("([el, old]) => el.innerText !== old && el.innerText.includes('After reading')",
                           arg=[page.locator("#kv-info").element_handle(), before])
    page.locator("#kv-time").click()
    page.locator("#kv-timing").filter(has_text="with the KV cache").wait_for()
    page.locator("#kv-plot .js-plotly-plot").wait_for()
    shot(page, "kv", shots, "5-kv-cache")


def test_model_against_model_in_generate(page, shots):
    run_view(page, "Generate", "Model against model: one prompt, two models", "#compare-run",
             "#compare-plot .js-plotly-plot")
    page.wait_for_function("el => el.value.length > 0", arg=page.locator("#compare-b textarea").element_handle())
    shot(page, "compare", shots, "6-compare")


def test_model_card_under_the_picker(page, shots):
    run_view(page, None, "How this model was made", None, "#model-card-loss .js-plotly-plot")
    page.locator("#model-card-text").filter(has_text="base").wait_for()
    shot(page, "model-card", shots, "7-model-card")


def test_bad_input_in_a_view_shows_a_message(page):
    run_view(page, "Tokenizer", "Embeddings: where the model puts each token", None)
    page.locator("#emb-words textarea").fill("xylophonically, zqxj")
    page.locator("#emb-run").click()
    page.get_by_text("None of the words is a single token").first.wait_for()


def test_precision_in_generate(page, shots):
    run_view(page, "Generate", "Precision: float32, bfloat16 or int8", "#precision-run", "#precision-table table")
    page.locator("#precision-line").filter(has_text="follows float32's").wait_for()
    table = page.locator("#precision-table").inner_text()
    assert all(name in table for name in ("float32", "bfloat16", "int8", "held-out bits per byte"))
    shot(page, "precision", shots, "8-precision")


def test_preference_pair_in_chat(page, shots):
    run_view(page, "Chat", "Preference tuning (DPO): a chosen and a rejected answer", "#dpo-score",
             "#dpo-table table")
    page.locator("#dpo-line").filter(has_text="Reward margin").wait_for()
    assert "rejected" in page.locator("#dpo-table").inner_text()
    shot(page, "dpo", shots, "9-dpo")


def test_a_chat_model_in_generate_reads_its_chat_prompt(page, shots):
    """Picking `instruct` ticks *Wrap in the chat prompt* and shows the prompt; at temperature 0 the shipped model
    answers this held-in kind of question right ('mice', measured), where bare text gets it rambling."""
    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-prompt").wait_for()
    assert not page.locator("#gen-wrap").is_visible()  # the base model: no chat prompt, no option
    page.locator("#model-picker input").click()
    page.get_by_role("option", name="instruct", exact=True).click()
    page.locator("#gen-wrap").wait_for(state="visible")
    assert page.locator("#gen-wrap input[type=checkbox]").is_checked()
    page.locator("#gen-prompt textarea").fill("What is the plural of mouse?")
    temperature = page.locator("#gen-temperature input[type=number]")
    temperature.fill("0")
    temperature.press("Enter")
    shown = page.locator("#gen-chat-prompt textarea")
    page.wait_for_function("el => el.value.endsWith('### Instruction:\\nWhat is the plural of mouse?\\n\\n"
                           "### Response:\\n')", arg=shown.element_handle())
    assert shown.input_value() == format_prompt({"instruction": "What is the plural of mouse?", "input": ""})
    page.locator("#gen-run").click()
    output = page.locator("#gen-output textarea")
    page.wait_for_function("el => el.value.trim() === 'mice'", arg=output.element_handle())
    page.wait_for_timeout(500)
    page.locator("#gen-output").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "view-10-generate-chat.png"), full_page=True)
    assert output.input_value().strip() == "mice" and "is a chat model" not in page.locator("#gen-notice").inner_text()
