"""The tiny Qwen3-shaped instruct model of an offline Hugging Face cache, picked in a real browser (`python app.py`
on 127.0.0.1, Debian's Chromium via playwright; `tests/ui/app_browser.py`): every view opens and runs without an
error toast, and the Chat tab shows its chat template. Screenshots go to $GPT_SHOTS_DIR (default: a temporary
folder)."""

from __future__ import annotations

import pytest

from tests.helpers import HUB_QWEN, app_process, hub_chat_models, make_model_folder
from tests.hub_models import tiny_smollm2_in_cache
from tests.ui import app_browser  # skips this module where Chromium is absent

pytestmark = [pytest.mark.browser, pytest.mark.slow]
browser, page, shots = app_browser.browser, app_browser.page, app_browser.shots  # Chromium, a page on `app_url` below


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    """The app on the tiny model folder, with the two open models in its own Hugging Face cache, offline."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    cache.mkdir()
    hub_chat_models(cache)
    tiny_smollm2_in_cache(cache, tmp_path_factory.mktemp("smollm2"))  # the finetune panels' open bases
    models = make_model_folder(tmp_path_factory.mktemp("models"))
    with app_process(models, tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("app") / "app.log",
                     HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1") as url:
        yield url


def pick(page, dropdown: str, label: str) -> None:
    page.locator(f"#{dropdown} input").click()
    page.get_by_role("option", name=label, exact=True).click()


def no_error(page) -> None:
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").first.inner_text()
    assert "Traceback" not in page.locator("body").inner_text()


def test_every_view_on_an_open_model(page, shots):
    pick(page, "model-picker", f"{HUB_QWEN} · on disk")
    page.locator("#model-summary").filter(has_text=f"Qwen3, from {HUB_QWEN}").wait_for()
    page.get_by_text("How this model was made").click()
    page.locator("#model-card-figures").filter(has_text="apache-2.0").wait_for()
    page.screenshot(path=str(shots / "open-1-picker.png"))
    page.get_by_text("How this model was made").click()

    page.get_by_role("tab", name="Tokenizer").click()
    page.locator("#tok-run").click()
    page.locator("#tok-model .tok").first.wait_for()
    page.get_by_text(f"{HUB_QWEN}'s tokenizer has special tokens").wait_for()
    page.screenshot(path=str(shots / "open-2-tokenizer.png"), full_page=True)
    no_error(page)

    page.get_by_role("tab", name="Attention").click()
    page.locator("#att-run").click()
    page.locator("#att-plot .js-plotly-plot").wait_for()
    page.get_by_label("all heads").check()
    page.locator("#att-plot .annotation-text").filter(has_text="head 4").wait_for()
    page.wait_for_timeout(500)
    page.locator("#att-plot").screenshot(path=str(shots / "open-3-attention.png"))
    for title, button, picture in (("Logit lens: what each layer would predict", "#lens-run", "#lens-grid"),
                                   ("Surprisal: how unexpected each token is", "#surprisal-run", "#surprisal-a")):
        page.get_by_text(title).click()
        page.locator(button).click()
        page.locator(f"{picture} .js-plotly-plot, {picture} .tok").first.wait_for()
    no_error(page)

    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-run").click()
    page.wait_for_function("el => el.value.length > 0", arg=page.locator("#gen-output textarea").element_handle())
    page.get_by_text("The KV cache: memory for speed").click()
    page.locator("#kv-table").filter(has_text="qwen3-0.6b (Qwen3)").wait_for()
    page.locator("#gen-step").click()
    page.locator("#kv-info").filter(has_text="key/value heads (one per group of 2)").wait_for()
    page.wait_for_timeout(500)
    page.locator("#kv").screenshot(path=str(shots / "open-4-kv-cache.png"))
    no_error(page)


def test_the_chat_tab_writes_the_chat_template(page, shots):
    page.get_by_role("tab", name="Chat").click()
    pick(page, "chat-model", f"{HUB_QWEN} · on disk")
    page.locator("#chat-model-info").filter(has_text="chat template").wait_for()
    page.locator("#chat-input textarea").fill("What is a fox?")
    page.locator("#chat-input textarea").press("Enter")
    page.get_by_text("The exact prompt sent to the model").click()
    page.locator("#chat-prompt").filter(has_text="<|im_start|>assistant").wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / "open-5-chat.png"), full_page=True)
    no_error(page)


def test_the_finetune_panels_offer_smollm2_on_disk(page, shots):
    """SmolLM2-135M in the cache: the Spam tab's base picker offers it and picking it turns LoRA on; the Chat tab's
    offers it and its -Instruct (LoRA rank 8, digits off); neither says how to download it."""
    page.get_by_role("tab", name="Spam").click()
    page.get_by_text("Finetune your own classifier").click()
    pick(page, "spam-ft-base", "smollm2-135m")
    page.locator("#spam-ft-trains input[value='LoRA']:checked").wait_for()
    assert "hf download" not in page.locator("#spam-ft-open").inner_text()
    page.wait_for_timeout(500)
    page.locator("#spam-finetune").screenshot(path=str(shots / "open-6-spam-finetune.png"))
    no_error(page)

    page.get_by_role("tab", name="Chat").click()
    page.get_by_text("Finetune your own chat model").click()
    pick(page, "chat-ft-base", "smollm2-135m-instruct")
    page.wait_for_function("el => el.value === '8'", arg=page.locator("#chat-ft-rank input[type='number']")
                           .element_handle())
    assert not page.locator("#chat-ft-digits input").is_checked()
    page.locator("#chat-ft-base input").click()
    assert page.get_by_role("option", name="smollm2-135m", exact=True).count() == 1
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "open-7-chat-finetune.png"), full_page=True)
    no_error(page)
