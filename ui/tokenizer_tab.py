"""Tab 1, Tokenizer: how text becomes token ids, under the picked model's tokenizer (ours, or an open model's
tokenizer.json) beside GPT-2's BPE, a BPE trained here, and characters."""

from __future__ import annotations

import functools

import gradio as gr
import pandas as pd

from gpt.bpe import BytePairEncoder
from gpt.data.corpus import CORPORA, read_text
from gpt.tokenizer import END_OF_TEXT, Tokenizer, TokenPiece, load_tokenizer
from ui import embeddings_view
from ui.common import check_number, clip_chars, join_notices, on_first_open, require_text, user_errors
from ui.labels import MAX_SHOWN_TOKENS, piece_label, tokens_html
from ui.registry import ModelRegistry

MAX_TRAIN_CHARS = 50_000  # training on this much takes a fraction of a second
MIN_VOCAB, MAX_VOCAB = 257, 2_000
EXAMPLE_TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
                "must be in want of a wife.\n\nTokenizers   split 'words', numbers like 2026, and emoji 🙂 "
                "into pieces.<|endoftext|>")


def default_training_text(n_chars: int = 6_000) -> str:
    """The opening of Pride and Prejudice: enough for a few hundred merges."""
    return read_text(CORPORA / "austen-prideprejudice.txt.gz")[:n_chars]


@functools.lru_cache(maxsize=8)
def trained_tokenizer(text: str, vocab_size: int) -> Tokenizer:
    """A BPE trained from scratch on `text`; cached so retyping the main text does not retrain."""
    return BytePairEncoder.train(text, vocab_size).to_tokenizer(f"bpe-{vocab_size}")


def char_pieces(text: str) -> list[TokenPiece]:
    """Characters as tokens, with the code point as id: the vocabulary-free baseline."""
    return [TokenPiece(ord(c), c.encode("utf-8"), i, i + 1) for i, c in enumerate(text)]


def pieces_table(pieces: list[TokenPiece]) -> pd.DataFrame:
    rows = [(pos, p.id, piece_label(p), p.piece.hex(" "), f"{p.start}–{p.end}")
            for pos, p in enumerate(pieces[:MAX_SHOWN_TOKENS])]
    return pd.DataFrame(rows, columns=["position", "id", "piece", "bytes (hex)", "characters"])


def special_tokens(tokenizer: Tokenizer) -> list[tuple[str, int, str]]:
    """(text, id, role) of the tokens a text starts or ends with: the BOS the app puts first, if the tokenizer has
    one, and every stop id."""
    roles = ([(tokenizer.bos_id, "starts every text: the app puts it first")] if tokenizer.bos_id is not None else [])
    roles += [(i, "ends a text: generation stops there") for i in tokenizer.stop_ids]
    return [(tokenizer.decode_bytes([i]).decode("utf-8", "replace"), i, role) for i, role in roles]


def special_tokens_note(tokenizer: Tokenizer, model_name: str, text: str, allow_special: bool) -> str:
    specials = special_tokens(tokenizer)
    if [t for t, _, _ in specials] == [END_OF_TEXT]:
        as_text = tokenizer.encode(END_OF_TEXT)
        note = (f"`{END_OF_TEXT}` is the one special token: id **{tokenizer.eot_id}** for {model_name}, put between "
                f"documents in training so the model learns where a text ends. Typed by a user it is plain text by "
                f"default ({len(as_text)} ordinary tokens: {as_text}), so nobody can fake a document boundary; "
                f"tick the box to read it as the special token.")
    else:
        listed = "; ".join(f"`{t}` (id **{i}**, {role})" for t, i, role in specials)
        note = (f"{model_name}'s tokenizer has special tokens of its own, whose text no ordinary token spells: "
                f"{listed}. A chat template adds more (`<|im_start|>` opens a turn). Typed by a user they are plain "
                f"text by default, so nobody can fake the end of a turn; tick the box to read them as the special "
                f"tokens.")
    if tokenizer.encode(text, allow_special=True) != tokenizer.encode(text):
        mode = "the special tokens" if allow_special else "plain text"
        note += f"\n\nYour text contains special tokens of {model_name}, encoded here as **{mode}**."
    return note


def tokenize(registry: ModelRegistry, model_name: str, text: str, allow_special: bool, training_text: str,
             vocab_size: float) -> tuple[str, pd.DataFrame, pd.DataFrame, str, str, str, str, str]:
    """Everything the tab shows for one text.

    Returns the picked model's tokens (HTML and table), the comparison counts, GPT-2 / trained-BPE /
    character tokens (HTML), the special-token note, and any notices.
    """
    text, cut = clip_chars(require_text(text))
    vocab_size = check_number(vocab_size, "Vocabulary size", MIN_VOCAB, MAX_VOCAB, integer=True)
    training_text, train_cut = clip_chars(require_text(training_text, "training text"), MAX_TRAIN_CHARS)
    model_tok = registry.tokenizer(model_name)
    gpt2 = load_tokenizer("gpt2")
    trained = trained_tokenizer(training_text, vocab_size)

    views = {
        f"{model_name}'s tokenizer ({model_tok.n_vocab:,} tokens)": model_tok.pieces(text, allow_special),
        "GPT-2 BPE": gpt2.pieces(text, allow_special),
        f"your BPE ({trained.n_vocab:,} tokens)": trained.pieces(text, allow_special),
        "characters": char_pieces(text),
    }
    counts = pd.DataFrame(
        [(name, len(text), len(p), round(len(text) / max(len(p), 1), 2)) for name, p in views.items()],
        columns=["tokenizer", "characters", "tokens", "characters per token"],
    )
    model_pieces, gpt2_pieces, trained_pieces, chars = views.values()
    notices = [cut, train_cut]
    if trained.n_vocab < vocab_size:
        notices.append(f"The training text allows only {trained.n_vocab:,} tokens (every pair is merged); "
                       f"give it more text for a larger vocabulary.")
    if len(model_pieces) > MAX_SHOWN_TOKENS:
        notices.append(f"Only the first {MAX_SHOWN_TOKENS:,} tokens are drawn.")
    special = special_tokens_note(model_tok, model_name, text, allow_special)
    return (tokens_html(model_pieces), pieces_table(model_pieces), counts, tokens_html(gpt2_pieces),
            tokens_html(trained_pieces), tokens_html(chars), special, join_notices(*notices))


def build(registry: ModelRegistry, picker: gr.Dropdown, demo: gr.Blocks) -> None:
    gr.Markdown("A model never sees letters: the text is cut into **tokens**, each an id in a fixed vocabulary. "
                "Hover a token for its bytes; `␣` is a space, `↵` a new line.")
    with gr.Row():
        text = gr.Textbox(EXAMPLE_TEXT, lines=4, label="Text", scale=3, elem_id="tok-text")
        with gr.Column(scale=1):
            allow_special = gr.Checkbox(False, label=f"Read special tokens ({END_OF_TEXT}, <|im_end|>…) as such")
            button = gr.Button("Tokenize", variant="primary", elem_id="tok-run")
    notices = gr.Markdown()
    gr.Markdown("### The picked model's tokens")
    model_view = gr.HTML(elem_id="tok-model", elem_classes="scroll-x")
    counts = gr.Dataframe(label="Counts", interactive=False, elem_id="tok-counts")
    gr.Markdown("### Side by side")
    with gr.Row():
        with gr.Column():
            gr.Markdown("**GPT-2 BPE** (50,257 tokens)")
            gpt2_view = gr.HTML(elem_id="tok-gpt2")
        with gr.Column():
            gr.Markdown("**Your BPE**, trained on the spot on the text below")
            trained_view = gr.HTML(elem_id="tok-trained")
        with gr.Column():
            gr.Markdown("**Characters** (id = Unicode code point)")
            chars_view = gr.HTML(elem_id="tok-chars")
    with gr.Accordion("Train your BPE", open=False):
        vocab = gr.Slider(MIN_VOCAB, MAX_VOCAB, value=512, step=1, label="Vocabulary size",
                          info="256 bytes + merges + <|endoftext|>")
        training_text = gr.Textbox(default_training_text(), lines=6, max_lines=12,
                                   label=f"Training text (up to {MAX_TRAIN_CHARS:,} characters)")
    special = gr.Markdown()
    with gr.Accordion("Every token: id, bytes, characters", open=False):
        table = gr.Dataframe(interactive=False)

    embeddings_view.build(registry, picker, demo)

    fn = user_errors(functools.partial(tokenize, registry))
    inputs = [picker, text, allow_special, training_text, vocab]
    outputs = [model_view, table, counts, gpt2_view, trained_view, chars_view, special, notices]
    button.click(fn, inputs, outputs, api_name="tokenize")
    text.submit(fn, inputs, outputs, api_visibility="private")
    demo.load(on_first_open(fn, len(outputs)), inputs, outputs, api_visibility="private")  # the example, analysed
