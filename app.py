"""The GPT-from-scratch playground: `python app.py` serves it offline on the shipped models.

Honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Gradio reads them), GPT_MODELS_DIR to serve
models from another folder than `assets/models`, GPT_APP_TORCH_THREADS (default 1), and the Train
tab's GPT_TRAIN_* limits and GPT_RUNS_DIR (`ui/jobs.py`, `TrainLimits`).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # must precede the gradio import

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from ui import attention_tab, chat_tab, generate_tab, picker, spam_tab, tokenizer_tab, train_tab  # noqa: E402
from ui.jobs import JobRunner  # noqa: E402
from ui.registry import MODELS_DIR, ModelRegistry  # noqa: E402

THEME = gr.themes.Soft()  # a built-in theme: its fonts are bundled, nothing is fetched
CSS = "#model-summary {align-self: center}\n" + tokenizer_tab.CSS + spam_tab.CSS
# Events run side by side (a Generate click streams text and draws two charts), each on one thread:
# on a small CPU box, two events with two threads each oversubscribe the cores, and PyTorch's
# threads then wait on each other (the README's app section gives the figures).
CONCURRENT_EVENTS = 2


def build_app(registry: ModelRegistry | None = None, runner: JobRunner | None = None) -> gr.Blocks:
    runner = runner or JobRunner()
    registry = registry or ModelRegistry(os.environ.get("GPT_MODELS_DIR", MODELS_DIR))
    if registry.runs_root is None:  # the picker offers what the Train tab trains
        registry.runs_root = runner.limits.runs_dir.resolve()
    with gr.Blocks(title="GPT from scratch", analytics_enabled=False) as demo:
        gr.Markdown("# GPT from scratch\nHow a GPT turns text into tokens, attends, predicts, classifies and chats: "
                    "every model here was written and trained from scratch (or loaded from OpenAI's GPT-2).")
        model = picker.build(registry, demo)
        with gr.Tabs():
            with gr.Tab("Tokenizer", id="tokenizer"):
                tokenizer_tab.build(registry, model)
            with gr.Tab("Attention", id="attention"):
                attention_tab.build(registry, model)
            with gr.Tab("Generate", id="generate"):
                generate_tab.build(registry, model)
            with gr.Tab("Train", id="train") as train:
                train_tab.build(runner, registry, model, train)
            with gr.Tab("Spam", id="spam") as spam:
                spam_tab.build(registry, runner, spam)
            with gr.Tab("Chat", id="chat") as chat:
                chat_tab.build(registry, runner, chat)
    return demo


def main() -> None:
    torch.set_num_threads(int(os.environ.get("GPT_APP_TORCH_THREADS", "1")))
    demo = build_app()
    demo.queue(default_concurrency_limit=CONCURRENT_EVENTS)
    demo.launch(theme=THEME, css=CSS, prevent_thread_lock=True)
    print(f"GPT from scratch playground: {demo.local_url}", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
