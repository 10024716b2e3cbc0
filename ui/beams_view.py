"""Every beam, in the Generate tab: what beam search kept, the scores, and where each beam leaves the best."""

from __future__ import annotations

import dataclasses
import functools
import html

import gradio as gr

from gpt.generate import SamplingConfig, common_prefix, continuation_logprob, search_beams, stream
from gpt.tokenizer import Tokenizer
from ui.common import user_errors, with_notices
from ui.forms import reads_form
from ui.generation import Settings, beam_request
from ui.inside import where
from ui.labels import id_label
from ui.registry import ModelRegistry

EXPLAIN = ("**Beam search** keeps the `Beams` most likely continuations at each step instead of one: every beam "
           "is extended by every token, and the best of all those survive. Faded tokens are the ones a beam "
           "shares with the best; the outlined token is where it splits off. Greedy (one beam) and a sample "
           "with the settings above are scored the same way: log-probability, and that per token.")


def tokens_row(tokenizer: Tokenizer, tokens: list[int], best: list[int]) -> str:
    """A continuation as token chips: faded while it matches `best`, the first token that differs outlined
    (the best itself, and a continuation equal to it, are not faded)."""
    split = common_prefix(tokens, best) if tokens != best else -1
    chips = []
    for i, token in enumerate(tokens):
        style = "opacity: 0.4" if i < split else "outline: 2px solid #dc2626" if i == split else ""
        chips.append(f'<span class="tok c{i % 8}" style="{style}">{html.escape(id_label(tokenizer, token))}</span>')
    return "".join(chips) or "<em>(nothing: the text ends at once)</em>"


def beam_table(tokenizer: Tokenizer, rows: list[tuple[str, float, int, list[int]]], best: list[int]) -> str:
    """rows: (name, log-probability, length, tokens). An HTML table, one continuation a row."""
    body = "".join(
        f"<tr><td><b>{html.escape(name)}</b></td><td>{logprob / max(length, 1):.3f}</td><td>{logprob:.2f}</td>"
        f'<td class="tokens">{tokens_row(tokenizer, tokens, best)}</td></tr>'
        for name, logprob, length, tokens in rows)
    return ('<table style="width: 100%"><tr><th></th><th>log-prob per token</th><th>log-prob</th>'
            f"<th>continuation</th></tr>{body}</table>")


def beam_tree(registry: ModelRegistry, settings: Settings, model_name: str, prompt: str, num_beams: float
              ) -> tuple[str, str]:
    """The beams of `search_beams`, then greedy and a sample with the tab's `settings`, as one table; and a line on
    what it shows. Beams, greedy and sample all run to `settings.max_new_tokens`."""
    req = beam_request(registry, model_name, prompt, num_beams, settings.max_new_tokens, settings.wrap)
    ids, new_tokens = req.ids, req.new_tokens
    model, tokenizer = req.ckpt.model, req.ckpt.tokenizer
    eot, n_vocab = tokenizer.stop_ids, tokenizer.n_vocab
    found = search_beams(model, ids, req.n_beams, new_tokens, eot_id=eot, vocab_size=n_vocab)
    sampling = dataclasses.replace(settings, max_new_tokens=new_tokens).sampling()
    greedy_cfg = SamplingConfig(max_new_tokens=new_tokens, temperature=0)
    others = {"greedy": list(stream(model, ids, greedy_cfg, eot_id=eot, vocab_size=n_vocab)),
              f"sampled (T={sampling.temperature:g}, seed {sampling.seed})":
                  list(stream(model, ids, sampling, eot_id=eot, vocab_size=n_vocab))}

    def logprob(tokens: list[int]) -> float:  # of the continuation after the prompt (and its end, if it ended)
        return continuation_logprob(model, ids, tokens + ([eot] if len(tokens) < new_tokens else []), n_vocab)

    rows = [(f"beam {r}" + (" (best)" if r == 1 else "") + (" (ended)" if b.ended else ""), b.logprob,
             len(b.tokens) + b.ended, b.tokens) for r, b in enumerate(found, 1)]
    rows += [(name + (" = beam 1" if tokens == found[0].tokens else ""), logprob(tokens),
              len(tokens) + (len(tokens) < new_tokens), tokens) for name, tokens in others.items()]
    info = (f"{req.n_beams} beams of up to {new_tokens} tokens; *(ended)* marks a beam that ended with <|endoftext|>. "
            f"Beams are ranked by log-probability per token (length penalty 1).\n\n"
            f"{where(search_beams, continuation_logprob, common_prefix)}")
    return beam_table(tokenizer, rows, found[0].tokens), with_notices(info, *req.notices)


def build(registry: ModelRegistry, picker: gr.Dropdown, prompt: gr.Textbox, n_beams: gr.Slider,
          settings: dict[str, gr.components.Component]) -> None:
    """`settings`: the tab's inputs of each `Settings` field by name (their order is the API's): the sampled row's,
    the new tokens of every row, and whether a chat model reads the prompt in its chat prompt."""
    with gr.Accordion("Beam search: every beam, and where it splits", open=False, elem_id="beams"):
        gr.Markdown(EXPLAIN)
        button = gr.Button("Show the beams", variant="primary", elem_id="beams-run")
        info = gr.Markdown(elem_id="beams-info")
        table = gr.HTML(elem_id="beams-table")
    fn = user_errors(reads_form(Settings, functools.partial(beam_tree, registry)))
    button.click(fn, [picker, prompt, n_beams], [table, info], inputs_kwargs=settings, api_name="beam_tree")
