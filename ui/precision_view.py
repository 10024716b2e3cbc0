"""Precision, in the Generate tab: the picked model in float32, bfloat16 or int8, with what each costs
and keeps (size, decode speed, held-out bits per byte) measured here and now, and its greedy text."""

from __future__ import annotations

import functools
import time

import gradio as gr
import numpy as np
import pandas as pd
import torch

from gpt.checkpoint import Checkpoint
from gpt.data.corpus import load_corpus, source_of
from gpt.generate import SamplingConfig, common_prefix, encode_prompt, generate
from gpt.quantize import PRECISIONS, weight_bytes
from gpt.training.loss import bits_per_byte, heldout_loss
from ui.common import check_number, clip_chars, fit_context, require_text, user_errors
from ui.registry import ModelRegistry

SAMPLE_CHARS = 1_500  # of each source's held-out text: a fixed sample, scored in about a second
DECODE_TOKENS = 32
MAX_NEW_TOKENS = 64
EXPLAIN = ("**Precision.** The same weights stored three ways: float32 (4 bytes each), bfloat16 (2 bytes: "
           "float32's range, 8 bits of mantissa) and int8 (1 byte per weight of every linear layer, with one "
           "float scale per output row; embeddings and norms stay float). Fewer bytes are faster to read, and "
           "decoding reads every weight once per token. What it costs is measured below on held-out text "
           "the model never trained on: bits per byte (lower is better).")


@functools.cache
def held_out_sample() -> str:
    """The first characters of every source's held-out documents: the same text for every model."""
    by_source: dict[str, str] = {}
    for doc in load_corpus().held_out:
        text = by_source.get(source_of(doc), "")
        if len(text) < SAMPLE_CHARS:
            by_source[source_of(doc)] = (text + "\n\n" + doc.text)[:SAMPLE_CHARS] if text else doc.text[:SAMPLE_CHARS]
    return "\n\n".join(by_source.values())


def bits_per_byte_of(ckpt: Checkpoint, text: str) -> float:
    ids = ckpt.tokenizer.encode(text)
    loss, count = heldout_loss(ckpt.model, np.asarray(ids, dtype=np.int64))
    return bits_per_byte(loss * count, len(text.encode("utf-8")))


def decode_rate(ckpt: Checkpoint) -> float:
    """Greedy tokens/s with the KV cache, after one short warm-up (the first call picks kernels)."""
    prompt = encode_prompt(ckpt.tokenizer, "The")
    greedy = SamplingConfig(max_new_tokens=DECODE_TOKENS, temperature=0, stop_at_eot=False)
    generate(ckpt.model, prompt, SamplingConfig(max_new_tokens=2, temperature=0, stop_at_eot=False))
    start = time.perf_counter()
    generate(ckpt.model, prompt, greedy)
    return DECODE_TOKENS / (time.perf_counter() - start)


def measure(registry: ModelRegistry, model_name: str, chosen: str, prompt: str, max_new_tokens: float
            ) -> tuple[pd.DataFrame, str, str, str]:
    """Each precision's size, decode speed and held-out bits per byte; the chosen one's greedy text and float32's."""
    if chosen not in PRECISIONS:
        raise ValueError(f"unknown precision {chosen!r}; choose one of {', '.join(PRECISIONS)}")
    prompt, _ = clip_chars(require_text(prompt, "prompt"))
    new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
    sample = held_out_sample()
    rows, texts = [], {}
    for precision in PRECISIONS:
        ckpt = registry.load_in(model_name, precision)  # outside inference mode: the copy may train later
        with torch.inference_mode():
            rows.append({"precision": precision, "weights (MB)": round(weight_bytes(ckpt.model) / 1e6, 1),
                         "decode (tokens/s)": round(decode_rate(ckpt)), "held-out bits per byte":
                         round(bits_per_byte_of(ckpt, sample), 4)})
            ids, _ = fit_context(encode_prompt(ckpt.tokenizer, prompt), ckpt.model.cfg.context_length)
            texts[precision] = generate(ckpt.model, ids, SamplingConfig(max_new_tokens=new_tokens, temperature=0),
                                        eot_id=ckpt.tokenizer.stop_ids, vocab_size=ckpt.tokenizer.n_vocab)
    table = pd.DataFrame(rows)
    base = float(table["held-out bits per byte"][0])
    table["change vs float32"] = [f"{100 * (v / base - 1):+.2f}%" for v in table["held-out bits per byte"]]
    tokenizer = registry.load(model_name).tokenizer
    same = common_prefix(texts[chosen], texts["float32"])
    line = (f"{chosen}: the greedy text follows float32's for {same} of {len(texts['float32'])} tokens. "
            f"Measured just now on this machine, {len(sample):,} characters of held-out text from every source.")
    return table, tokenizer.decode(texts["float32"]), tokenizer.decode(texts[chosen]), line


def build(registry: ModelRegistry, picker: gr.Dropdown) -> None:
    with gr.Accordion("Precision: float32, bfloat16 or int8", open=False, elem_id="precision"):
        gr.Markdown(EXPLAIN)
        with gr.Row():
            precision = gr.Radio(list(PRECISIONS), value="int8", label="Precision", elem_id="precision-choice")
            prompt = gr.Textbox("The Roman Empire was", label="Prompt (greedy)", scale=2, elem_id="precision-prompt")
            max_new = gr.Slider(1, MAX_NEW_TOKENS, value=32, step=1, label="Max new tokens")
        run = gr.Button("Measure the picked model in every precision", elem_id="precision-run")
        table = gr.Dataframe(label="Size, speed and held-out quality", interactive=False, elem_id="precision-table")
        line = gr.Markdown(elem_id="precision-line")
        with gr.Row():
            reference = gr.Textbox(label="float32", lines=3, interactive=False, elem_id="precision-float32")
            chosen = gr.Textbox(label="The chosen precision", lines=3, interactive=False, elem_id="precision-text")
    run.click(user_errors(functools.partial(measure, registry)), [picker, precision, prompt, max_new],
              [table, reference, chosen, line], api_name="precision")
