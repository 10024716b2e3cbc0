"""How a token is shown everywhere in the app: its text with whitespace made visible, colours, ids.

Every tab and view that draws tokens reads these, so a token looks the same in the Tokenizer tab,
the Train tab's windows, the attention heatmaps and the views inside the model.
"""

from __future__ import annotations

import html
import unicodedata

from gpt.tokenizer import Tokenizer, TokenPiece

MAX_SHOWN_TOKENS = 1_000  # coloured spans beyond this slow the page down and teach nothing new
# Pale, distinct backgrounds: neighbouring tokens always differ, the text stays readable.
COLOURS = ("#fde68a", "#bbf7d0", "#bfdbfe", "#fbcfe8", "#ddd6fe", "#fed7aa", "#a5f3fc", "#e5e7eb")
VISIBLE_WHITESPACE = {" ": "␣", "\n": "↵", "\t": "→", "\r": "␍"}
# Styles live in the page (app.py passes CSS to launch), not on each of a thousand spans.
CSS = (".tokens {line-height: 2.2}\n"
       ".tok {display: inline-flex; flex-direction: column; align-items: center; margin: 1px; padding: 1px 3px; "
       "border-radius: 4px; font-family: monospace; white-space: pre; color: #111}\n"
       ".tok small {font-size: 0.7em; color: #555}\n"
       + "".join(f".tok.c{i} {{background: {colour}}}\n" for i, colour in enumerate(COLOURS)))


def piece_label(piece: TokenPiece) -> str:
    """What a token shows: its text with whitespace made visible, or its bytes if they are not a whole character."""
    try:
        text = piece.piece.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or any(unicodedata.category(c) == "Cc" and c not in VISIBLE_WHITESPACE for c in text):
        return " ".join(f"<{b:02x}>" for b in piece.piece)  # a part of a character, or an invisible one
    return "".join(VISIBLE_WHITESPACE.get(c, c) for c in text)


def tokens_html(pieces: list[TokenPiece]) -> str:
    """Coloured tokens, each with its id beneath; hovering shows the bytes."""
    spans = []
    for pos, piece in enumerate(pieces[:MAX_SHOWN_TOKENS]):
        title = f"#{pos} · id {piece.id} · bytes {piece.piece.hex(' ')}"
        spans.append(f'<span class="tok c{pos % len(COLOURS)}" title="{title}">{html.escape(piece_label(piece))}'
                     f'<small>{piece.id}</small></span>')
        if piece.piece.endswith(b"\n"):
            spans.append("<br>")
    more = len(pieces) - MAX_SHOWN_TOKENS
    tail = f"<p><em>… and {more:,} more tokens (counted below, not drawn)</em></p>" if more > 0 else ""
    return f'<div class="tokens">{"".join(spans)}</div>{tail}'


def id_label(tokenizer: Tokenizer, token_id: int) -> str:
    """A token id as the Tokenizer tab shows it: its text, whitespace made visible (␣ ↵), or its bytes."""
    return bytes_label(tokenizer.decode_bytes([token_id]))


def bytes_label(piece: bytes) -> str:
    return piece_label(TokenPiece(-1, piece, 0, 0))
