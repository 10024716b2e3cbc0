"""The GPT-from-scratch playground: `python app.py` serves it offline on the shipped models."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # must precede the gradio import

import gradio as gr  # noqa: E402


def build_app() -> gr.Blocks:
    with gr.Blocks(title="GPT from scratch") as demo:
        gr.Markdown("# GPT from scratch\nThe tabs arrive with the app issue.")
    return demo


if __name__ == "__main__":
    demo = build_app()
    demo.launch()
