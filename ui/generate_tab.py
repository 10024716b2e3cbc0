"""Tab 3, Generate: sampling settings, streamed text, and the next-token distribution they shape."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import gradio as gr
import plotly.graph_objects as go
import torch

from gpt.generate import SamplingConfig, beam_search, next_token_logits, next_token_probs, pick, stream
from ui import beams_view, compare_view, kv_cache_view, precision_view
from ui.common import join_notices, on_first_open, user_errors, with_notices
from ui.figures import Plot
from ui.generation import (
    MAX_BEAMS,
    MAX_NEW_TOKENS,
    MAX_SEED,
    MAX_TEMPERATURE,
    Request,
    Settings,
    beam_request,
    make_request,
)
from ui.inside import chat_prompt_option
from ui.labels import id_label
from ui.registry import ModelRegistry

TOP_CANDIDATES = 15  # bars per chart
BOOK_TEMPERATURES = (0.1, 1.0, 5.0)  # the book's figure: sharper, as trained, flatter
EXAMPLE_PROMPT = "It is a truth universally acknowledged, that"
# One opening in the style of each kind of text the shipped base model read.
EXAMPLE_PROMPTS = [EXAMPLE_PROMPT, "And God said unto Noah,", "The Roman Empire was", "Preheat the oven to",
                   "Mr. Speaker, Mr. Vice President, members of the Congress,", "A friend is someone who"]


def generate(registry: ModelRegistry, model_name: str, prompt: str, temperature: float, top_k: float, top_p: float,
             max_new_tokens: float, seed: float, wrap: bool = False) -> Iterator[tuple[str, str]]:
    """Stream the continuation as it grows (the prompt is not repeated), with any notice."""
    req = make_request(registry, model_name, prompt, Settings(temperature, top_k, top_p, max_new_tokens, seed, wrap))
    new_ids: list[int] = []
    notice = join_notices(*req.notices)
    yield "", notice
    tokenizer = req.ckpt.tokenizer
    for token in stream(req.ckpt.model, req.ids, req.sampling, eot_id=tokenizer.stop_ids, vocab_size=tokenizer.n_vocab):
        new_ids.append(token)
        yield tokenizer.decode(new_ids), notice
    if not new_ids:
        ended = id_label(tokenizer, tokenizer.eot_id)
        yield "", join_notices(*req.notices, f"The model ended the text straight away ({ended}).")


def last_logits(req: Request) -> torch.Tensor:
    """The next-token logits over the tokenizer's vocabulary (a padded model vocabulary is cut off)."""
    return next_token_logits(req.ckpt.model, req.ids, req.ckpt.tokenizer.n_vocab)


def token_labels(req: Request, ids: list[int]) -> list[str]:
    return [id_label(req.ckpt.tokenizer, i) for i in ids]


def before_after_figure(req: Request, logits: torch.Tensor, picked: int | None = None) -> go.Figure:
    """The top candidates as the model ranks them (plain softmax) and after temperature/top-k/top-p."""
    before = torch.softmax(logits, dim=-1)
    after = next_token_probs(logits, req.sampling)
    top = before.topk(min(TOP_CANDIDATES, before.numel())).indices.tolist()
    if picked is not None and picked not in top:
        top[-1] = picked
    labels = token_labels(req, top)
    positions = list(range(len(top)))  # plotly would merge equal labels: plot positions, label the ticks
    fig = go.Figure([
        go.Bar(x=positions, y=before[top].tolist(), name="model (softmax)", marker_color="#94a3b8"),
        go.Bar(x=positions, y=after[top].tolist(), name="after temperature / top-k / top-p", marker_color="#4f46e5"),
    ])
    s = req.sampling
    title = f"Next token: T={s.temperature:g}, top-k={s.top_k or 'off'}, top-p={s.top_p:g}"
    if picked is not None:
        title += f"; picked {token_labels(req, [picked])[0]!r}"
    fig.update_layout(barmode="group", title=title, yaxis_title="probability", height=380,
                      legend={"orientation": "h", "y": -0.25}, margin={"l": 40, "r": 10, "t": 50, "b": 40})
    fig.update_xaxes(tickmode="array", tickvals=positions, ticktext=labels)
    return fig


def temperature_figure(req: Request, logits: torch.Tensor) -> go.Figure:
    """The book's temperature plot, for this prompt: the same top tokens at a low, neutral and high temperature."""
    top = torch.softmax(logits, dim=-1).topk(min(TOP_CANDIDATES, logits.numel())).indices.tolist()
    positions = list(range(len(top)))
    fig = go.Figure([
        go.Bar(x=positions, y=torch.softmax(logits / t, dim=-1)[top].tolist(), name=f"temperature {t:g}")
        for t in BOOK_TEMPERATURES
    ])
    # A log axis: at temperature 5 a vocabulary of thousands is nearly flat, each bar far below 1%.
    fig.update_layout(barmode="group", title="Temperature reshapes the same distribution", height=380,
                      yaxis={"title": "probability (log scale)", "type": "log", "range": [-5, 0]},
                      legend={"orientation": "h", "y": -0.25}, margin={"l": 40, "r": 10, "t": 50, "b": 40})
    fig.update_xaxes(tickmode="array", tickvals=positions, ticktext=token_labels(req, top))
    return fig


def next_token_charts(registry: ModelRegistry, model_name: str, prompt: str, temperature: float, top_k: float,
                      top_p: float, wrap: bool = False) -> tuple[go.Figure, go.Figure, str]:
    """Before/after bars and the temperature plot for the prompt's next token."""
    settings = Settings(temperature, top_k, top_p, max_new_tokens=1, seed=0, wrap=wrap)
    req = make_request(registry, model_name, prompt, settings)
    logits = last_logits(req)
    return before_after_figure(req, logits), temperature_figure(req, logits), join_notices(*req.notices)


def one_token(registry: ModelRegistry, model_name: str, prompt: str, temperature: float, top_k: float, top_p: float,
              seed: float, wrap: bool = False) -> tuple[str, go.Figure, str]:
    """Draw a single token, append it to the prompt, and show the distribution it came from. A wrapped prompt
    comes back as the chat prompt it became: the next step reads it as it is, so the answer grows in place."""
    settings = Settings(temperature, top_k, top_p, max_new_tokens=1, seed=seed, wrap=wrap)
    req = make_request(registry, model_name, prompt, settings)
    logits = last_logits(req)
    probs = next_token_probs(logits, req.sampling)
    gen = torch.Generator().manual_seed(req.sampling.seed + len(req.ids))  # reproducible, yet new at each step
    picked = pick(logits, req.sampling, gen)
    label = token_labels(req, [picked])[0]
    info = f"Picked token {picked} {label!r} with probability {float(probs[picked]):.3f}."
    if picked in req.ckpt.tokenizer.stop_ids:
        info += f" That is {label}, an end token: the model thinks the text is over."
    text = (req.prompt if req.wrapped else prompt) + req.ckpt.tokenizer.decode([picked])
    return text, before_after_figure(req, logits, picked), with_notices(info, *req.notices)


def one_line(text: str) -> str:
    """Text for a one-line notice: line breaks shown as ↵."""
    return text.replace("\n", " ↵ ")


def beams(registry: ModelRegistry, model_name: str, prompt: str, num_beams: float, max_new_tokens: float,
          wrap: bool = False) -> tuple[str, str]:
    """The most likely continuation under beam search (`gpt.generate.beam_search`), beside the greedy one."""
    req = beam_request(registry, model_name, prompt, num_beams, max_new_tokens, wrap)
    model, tokenizer = req.ckpt.model, req.ckpt.tokenizer
    best = beam_search(model, req.ids, req.n_beams, req.new_tokens, eot_id=tokenizer.stop_ids,
                       vocab_size=tokenizer.n_vocab)
    greedy = list(stream(model, req.ids, SamplingConfig(max_new_tokens=req.new_tokens, temperature=0),
                         eot_id=tokenizer.stop_ids, vocab_size=tokenizer.n_vocab))
    info = (f"The best of {req.n_beams} beams, scored by log-probability per token. "
            f"Greedy decoding (one beam) gives: “{one_line(tokenizer.decode(greedy))}”")
    return tokenizer.decode(best), with_notices(info, *req.notices)


def build(registry: ModelRegistry, picker: gr.Dropdown, demo: gr.Blocks) -> None:
    gr.Markdown("The model gives a probability to every token in its vocabulary; the settings reshape that "
                "distribution before a token is drawn. Temperature 0 always takes the most likely token.")
    prompt = gr.Textbox(EXAMPLE_PROMPT, lines=3, label="Prompt", elem_id="gen-prompt")
    gr.Examples([[p] for p in EXAMPLE_PROMPTS], prompt, label="Openings in the style of the base model's sources")
    wrap = chat_prompt_option(registry, [picker], prompt, "gen")
    with gr.Row():
        temperature = gr.Slider(0, MAX_TEMPERATURE, value=0.8, step=0.05, label="Temperature",
                                elem_id="gen-temperature")
        top_k = gr.Slider(0, 200, value=40, step=1, label="Top-k", info="0 = off")
        top_p = gr.Slider(0.01, 1, value=0.95, step=0.01, label="Top-p", info="1 = off")
        max_new = gr.Slider(1, MAX_NEW_TOKENS, value=60, step=1, label="Max new tokens")
        seed = gr.Number(123, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
    with gr.Row():
        run = gr.Button("Generate", variant="primary", elem_id="gen-run")
        step = gr.Button("One token at a time", elem_id="gen-step")
        stop = gr.Button("Stop", variant="stop")
    with gr.Row(equal_height=True):
        n_beams = gr.Slider(1, MAX_BEAMS, value=4, step=1, label="Beams", scale=3,
                            info="beam search keeps the most likely continuations instead of sampling one")
        beam = gr.Button("Beam search", elem_id="gen-beam", scale=1)
    notice = gr.Markdown(elem_id="gen-notice")
    output = gr.Textbox(label="Continuation (streamed)", lines=5, elem_id="gen-output")
    with gr.Row():
        bars = Plot(label="Next-token probabilities", elem_id="gen-bars")
        temps = Plot(label="The temperature plot", elem_id="gen-temps")

    # `wrap` is each event's last value: API callers that send the values they sent before wrap nothing.
    charts = user_errors(functools.partial(next_token_charts, registry))
    settings = [picker, prompt, temperature, top_k, top_p]
    streaming = run.click(user_errors(functools.partial(generate, registry)),
                          [*settings, max_new, seed, wrap], [output, notice], api_name="generate")
    run.click(charts, [*settings, wrap], [bars, temps, notice], api_name="next_token_probs")
    demo.load(on_first_open(charts, 3), [*settings, wrap], [bars, temps, notice],  # the example prompt's charts
              api_visibility="private")
    stop.click(None, cancels=[streaming])
    stepped = step.click(user_errors(functools.partial(one_token, registry)), [*settings, seed, wrap],
                         [prompt, bars, notice], api_name="one_token")
    beam.click(user_errors(functools.partial(beams, registry)), [picker, prompt, n_beams, max_new, wrap],
               [output, notice], api_name="beam_search")

    settings = {"max_new_tokens": max_new, "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed,
                "wrap": wrap}
    beams_view.build(registry, picker, prompt, n_beams, settings)
    kv_cache_view.build(registry, picker, prompt, wrap, stepped)
    compare_view.build(registry, picker, prompt)
    precision_view.build(registry, picker)
