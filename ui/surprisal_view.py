"""Surprisal, in the Attention tab: the text coloured by what each token costs the model, one model beside another."""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from gpt.checkpoint import Checkpoint
from gpt.generate import prompt_pieces
from gpt.instruct.prompt import wrap_in_chat_prompt
from gpt.lens import bits_by_word, surprisal_bits
from gpt.tokenizer import TokenPiece
from ui.common import clip_chars, require_text, user_errors, with_notices
from ui.inside import chat_prompt_option, load_two, model_text, other_dropdown, same_tokenizer, where
from ui.labels import bytes_label, id_label
from ui.registry import ModelRegistry

MAX_TOKENS = 512  # one forward pass per model over at most this many tokens
TOKEN_PARAMETERS = 512 * 125e6  # and at most this many tokens x parameters: GPT-2 small reads 512, xl 41
MAX_BITS = 12.0  # the colour is darkest here: p = 1/4096
N_DIFFERENCES = 12
NONE = "none"
EXPLAIN = ("**Surprisal.** Each token is coloured by its loss under the model, −log₂ p, in bits: pale where the "
           "model saw it coming, red where it did not. Summed, the bits are the model's loss on the text; divided "
           "by the text's bytes, they compare models whatever their tokenizer. Pick a second model to see both, "
           "and where they disagree most.")


@dataclass(frozen=True)
class Scored:
    name: str
    pieces: list[TokenPiece]
    bits: list[float]

    @property
    def total(self) -> float:
        return sum(self.bits)


def token_limit(ckpt: Checkpoint) -> int:
    """The most tokens the model scores in one request: its window, MAX_TOKENS, and the time a large model takes."""
    return int(min(MAX_TOKENS, ckpt.model.cfg.context_length, TOKEN_PARAMETERS // ckpt.model.n_params()))


def readable_end(ckpt: Checkpoint, text: str, special: bool = False) -> int:
    """How many characters of `text` the model scores: up to where its first unread token starts."""
    pieces = ckpt.tokenizer.pieces(text, allow_special=special)
    return len(text) if len(pieces) <= token_limit(ckpt) else pieces[token_limit(ckpt)].start


def score(ckpt: Checkpoint, name: str, text: str, special: bool = False) -> Scored:
    """Each token's bits, on the ids every view reads for the text (`prompt_pieces`): a BOS the tokenizer puts
    first is what the first token is scored after (it costs nothing itself), else the end-of-text token."""
    tokenizer = ckpt.tokenizer
    pieces = prompt_pieces(tokenizer, text, special)
    if tokenizer.bos_id is not None:  # the BOS starts the text: the tokens after it are scored
        start, pieces = pieces[0].id, pieces[1:]
    else:
        start = tokenizer.eot_id
    pieces = pieces[: token_limit(ckpt)]
    bits = surprisal_bits(ckpt.model, [p.id for p in pieces], start, tokenizer.n_vocab)
    return Scored(name, pieces, bits.tolist())


def colour(bits: float) -> str:
    """White at 0 bits to red at MAX_BITS and beyond; the text stays dark enough to read on it."""
    return f"hsl(0, 85%, {100 - 38 * min(bits / MAX_BITS, 1.0):.0f}%)"


def surprisal_html(ckpt: Checkpoint, scored: Scored) -> str:
    """The tokens on their colour, each with its bits beneath; hovering gives the probability."""
    spans = [f"<p><b>{html.escape(scored.name)}</b>: {scored.total:,.0f} bits</p>"]
    for pos, (piece, b) in enumerate(zip(scored.pieces, scored.bits, strict=True)):
        label = id_label(ckpt.tokenizer, piece.id)
        title = f"#{pos + 1} · {html.escape(label)} · {b:.2f} bits · p = {2 ** -b:.3g}"
        spans.append(f'<span class="tok" style="background: {colour(b)}" title="{title}">{html.escape(label)}'
                     f'<small style="color: #222">{b:.1f}</small></span>')
        if piece.piece.endswith(b"\n"):
            spans.append("<br>")
    legend = " ".join(f'<span class="tok" style="background: {colour(b)}">{b:g} bits</span>'
                      for b in (0, 2, 4, 6, 8, 10, MAX_BITS))
    return f'<div class="tokens">{"".join(spans)}</div><p>{legend}</p>'


def differences(a: Scored, b: Scored, text: str, by_token: bool) -> pd.DataFrame:
    """The tokens (same tokenizer) or words (different ones) where the two models' bits differ most."""
    if by_token:
        tokens = zip(a.pieces, a.bits, b.bits, strict=True)
        rows = [(f"#{i + 1} {bytes_label(p.piece)}", x, y) for i, (p, x, y) in enumerate(tokens)]
    else:
        words = [bits_by_word(text, s.pieces, s.bits) for s in (a, b)]
        rows = [(repr(text[u.start:u.end]), u.bits, v.bits) for u, v in zip(*words, strict=True)]
    frame = pd.DataFrame(rows, columns=["token" if by_token else "word", f"bits: {a.name}", f"bits: {b.name}"])
    frame[f"{b.name} − {a.name}"] = frame.iloc[:, 2] - frame.iloc[:, 1]
    order = frame.iloc[:, 3].abs().sort_values(ascending=False).index[:N_DIFFERENCES]
    return frame.loc[order].round(2).reset_index(drop=True)


def summary(scored: list[Scored], n_bytes: int) -> str:
    """A row per model; bits per byte is `gpt.training.loss.bits_per_byte` on the same text."""
    rows = [f"| {s.name} | {len(s.pieces):,} | {s.total:,.1f} | {s.total / len(s.pieces):.2f} | "
            f"**{s.total / n_bytes:.3f}** |" for s in scored]
    return "\n".join(["| model | tokens | bits | bits per token | bits per byte |", "|---|---|---|---|---|", *rows])


def surprisal(registry: ModelRegistry, model_name: str, text: str, other: str | None, wrap: bool = False
              ) -> tuple[str, str, str, pd.DataFrame]:
    """Coloured text for the picked model (and `other`, unless 'none'), the figures, and the largest differences.

    With `wrap` and a chat model here, every model scores the chat prompt around the text (what the chat model
    reads): the models are compared on one text, never each on its own."""
    text, cut = clip_chars(require_text(text))
    two = other not in (None, "", NONE)
    ckpts = load_two(registry, model_name, other) if two else (registry.load(model_name),)
    names = [model_name, other][: len(ckpts)]
    reads = [model_text(ckpt, name, text, wrap) for ckpt, name in zip(ckpts, names, strict=True)]
    chat = next((name for name, read in zip(names, reads, strict=True) if read.wrapped), None)
    bare = [read.notice for read in reads]
    special = False
    if chat is not None:  # every model scores the chat model's prompt, its special tokens as that model reads them
        read = reads[names.index(chat)]
        text, bare, special = read.text, [], read.special
    end = min(readable_end(ckpt, text, special) for ckpt in ckpts)
    if end < len(text):
        cut = (f"Only the first {end:,} of {len(text):,} characters are scored: what fits every model's window "
               f"(and at most {MAX_TOKENS} tokens, fewer for GPT-2's larger sizes, so that a request stays short).")
        text = text[:end]
    scored = [score(ckpt, name, text, special) for ckpt, name in zip(ckpts, names, strict=True)]
    info = summary(scored, len(text.encode("utf-8")))
    table = pd.DataFrame()
    if two:
        by_token = same_tokenizer(ckpts[0].tokenizer, ckpts[1].tokenizer)
        table = differences(*scored, text, by_token)
        info += ("\n\nThe two share a tokenizer: the table compares them token by token." if by_token else
                 f"\n\nThe two models cut the text into different tokens ({len(scored[0].pieces)} and "
                 f"{len(scored[1].pieces)}), so the table compares them word by word: each token's bits go to "
                 f"the word it is part of (a token never spans two words).")
    if chat is not None:
        info += (f"\n\n{'Both models score' if two else 'The model scores'} the chat prompt around your text, as "
                 f"**{chat}** reads it (shown above).")
    code = (surprisal_bits, bits_by_word) + ((wrap_in_chat_prompt,) if chat is not None else ())
    info += f"\n\n{where(*code)}"
    views = [surprisal_html(ckpt, s) for ckpt, s in zip(ckpts, scored, strict=True)] + [""]
    return views[0], views[1], with_notices(info, cut, *bare), table


def build(registry: ModelRegistry, picker: gr.Dropdown, text: gr.Textbox) -> None:
    """An accordion under the attention heatmaps, reading the tab's text."""
    with gr.Accordion("Surprisal: how unexpected each token is", open=False, elem_id="surprisal") as accordion:
        gr.Markdown(EXPLAIN)
        with gr.Row(equal_height=True):
            other = other_dropdown(registry, accordion, "Beside the picked model", "surprisal-other", NONE)
            button = gr.Button("Score the text", variant="primary", elem_id="surprisal-run", scale=1)
        wrap = chat_prompt_option(registry, [picker, other], text, "surprisal", on_when_any=False)
        info = gr.Markdown(elem_id="surprisal-info")
        with gr.Row():
            first = gr.HTML(elem_id="surprisal-a")
            second = gr.HTML(elem_id="surprisal-b")
        table = gr.Dataframe(label="Where they differ most", interactive=False, elem_id="surprisal-table")
    fn = user_errors(functools.partial(surprisal, registry))
    button.click(fn, [picker, text, other, wrap], [first, second, info, table], api_name="surprisal")
