"""Tab 5, Chat: the instruction-finetuned model behind `gr.ChatInterface`, the exact prompt it was
sent, and its held-out scores per kind of question, so that a user knows what to ask it."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from gpt.generate import SamplingConfig
from gpt.instruct.evaluate import format_task_report, load_model_eval
from gpt.instruct.prompt import chat_prompt, chat_stream
from ui.common import check_number, clip_chars, user_errors
from ui.jobs import JobRunner
from ui.registry import ModelRegistry

CHAT_MODEL = "instruct"
MAX_NEW_TOKENS = 256
EMPTY_REPLY = "(the model answered with nothing: try again with a higher temperature)"
# Questions of the held-out (test) split of the shipped data, one per kind the model does well;
# tests/ui/test_chat_tab.py checks that they are held out and that the shipped model answers them right.
EXAMPLES = ["What's the plural of rebel?", "What is take in the past tense?", "What is the product of 7 and 12?",
            "What's 61 plus 73?", "what's the opposite of 'unconscious'?", "Good morning.",
            "Translate this sentence into Hindi: I like diamonds.", "Write a speech about chickens.",
            "How many times does 91 go into 9075?"]
NO_SCORES = ("No held-out scores for these weights: `python -m gpt finetune-instruct --evaluate FOLDER --out FOLDER` "
             "measures them.")


def chat(registry: ModelRegistry, message: str, history: list[dict], temperature: float, max_new_tokens: float,
         seed: float) -> Iterator[tuple[str, str]]:
    """Stream the reply; alongside it, the Alpaca prompt built from the conversation (what the model reads)."""
    message, _ = clip_chars(message or "")
    sampling = SamplingConfig(
        max_new_tokens=check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True),
        temperature=check_number(temperature, "Temperature", 0, 2),
        seed=check_number(seed, "Seed", 0, 2**31 - 1, integer=True),
    )
    ckpt = registry.load(CHAT_MODEL)
    prompt = chat_prompt(ckpt, history, message, sampling)  # raises a clear ValueError for an empty message
    reply = ""
    for reply in chat_stream(ckpt, history, message, sampling):
        yield reply, prompt
    if not reply:
        yield EMPTY_REPLY, prompt


def held_out_scores(folder: Path) -> str:
    """The model's scores per kind of question on held-out questions (its `eval.json`), as markdown."""
    report = load_model_eval(folder)
    if report is None:
        return NO_SCORES
    return (f"Scores on {report['n']:,} held-out questions the model was not trained on, greedy answers: exact "
            "match (case and punctuation ignored) for answers of up to three words, word overlap in order "
            "(ROUGE-L) for longer ones. A held-out question may ask a fact that training asked in other "
            "words (\"12 x 7 =\" and \"What is 12 times 7?\"); the last columns score the others alone.\n\n"
            + format_task_report(report))


def build(registry: ModelRegistry, runner: JobRunner, tab: gr.Tab) -> None:
    try:
        ckpt = registry.load(CHAT_MODEL)
        intro = (f"The base model finetuned on instructions (the book's chapter 7): each message becomes an "
                 f"Alpaca prompt, earlier turns go into its input. Context: {ckpt.model.cfg.context_length} tokens.")
    except (ValueError, FileNotFoundError) as err:
        intro = f"⚠️ The chat model is not available: {err}"
    gr.Markdown(intro, elem_id="chat-intro")
    with gr.Accordion("What it can answer: held-out scores per kind of question", open=False):
        gr.Markdown(held_out_scores(registry.shipped_path(CHAT_MODEL)), elem_id="chat-scores")
    prompt = gr.Code(language=None, label="Alpaca prompt", elem_id="chat-prompt", wrap_lines=True, render=False)
    settings = [  # rendered by the ChatInterface, inside its "Sampling settings" accordion
        gr.Slider(0, 2, value=0.0, step=0.05, label="Temperature", info="0 = always the most likely token",
                  render=False),
        gr.Slider(1, MAX_NEW_TOKENS, value=96, step=1, label="Max new tokens", render=False),
        gr.Number(123, precision=0, minimum=0, label="Seed", render=False),
    ]
    gr.ChatInterface(
        user_errors(functools.partial(chat, registry)),
        textbox=gr.Textbox(placeholder="Type an instruction…", scale=7, submit_btn=True, stop_btn=True,
                           elem_id="chat-input", render=False),
        additional_inputs=settings,
        additional_inputs_accordion="Sampling settings",
        additional_outputs=[prompt],
        examples=[[e, 0.0, 96, 123] for e in EXAMPLES],  # message, then the settings above
        cache_examples=False,
        api_name="chat",
        fill_height=False,
    )
    with gr.Accordion("The exact prompt sent to the model", open=False):
        prompt.render()
