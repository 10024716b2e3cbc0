"""Reading a model's predictions from inside: the logit lens over the residual stream, and surprisal.

The logit lens (nostalgebraist, 2020) reads the residual stream after every block through the final
LayerNorm and the output head, as if the model stopped there: the early layers' guesses, and the
layer at which the final prediction appears. Surprisal is what each token costs the model, in bits:
its sum is the model's loss on the text, and over the text's bytes it compares any two tokenizers.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

import torch

from gpt.model import GPTModel
from gpt.tokenizer import TokenPiece
from gpt.training.loss import lm_loss


def _inputs(model: GPTModel, ids: list[int]) -> torch.Tensor:
    if not ids:
        raise ValueError("no tokens: give at least one")
    if len(ids) > model.cfg.context_length:
        raise ValueError(f"{len(ids)} tokens exceed the context length {model.cfg.context_length}")
    return torch.tensor([ids], dtype=torch.long, device=model.tok_emb.weight.device)


@torch.inference_mode()
def residual_stream(model: GPTModel, ids: list[int]) -> torch.Tensor:
    """The residual stream (L+1, T, C): after the embeddings, then after each block.

    The same steps as `GPTModel.hidden_states`, through the model's own modules, keeping each
    block's output. Not forward hooks: the app shares one model between its visitors, and a hook
    would also see the passes other requests run at the same time.
    """
    model.eval()
    idx = _inputs(model, ids)  # (1, T)
    T = idx.shape[1]
    pos = torch.arange(T, device=idx.device)
    x = model.drop_emb(model.tok_emb(idx) * model.emb_scale + model.position_vectors(pos))  # (1, T, C)
    # rotary positions add nothing above (zeros): every block's attention turns its queries and keys instead
    rotary = model.rotary(0, T)
    streams = [x]
    for block in model.trf_blocks:
        x, _ = block(x, rotary=rotary)
        streams.append(x)
    return torch.cat(streams)  # (L+1, T, C): batch of one


@dataclass(frozen=True)
class LogitLens:
    """Each layer's reading of the stream, (L+1, T) each; row 0 is the embeddings, row L the model's output."""

    top_ids: torch.Tensor  # the token each layer finds most likely next
    top_probs: torch.Tensor  # its probability
    final_ids: torch.Tensor  # (T,) the last layer's prediction: what the model says
    final_ranks: torch.Tensor  # that prediction's rank under each layer (0 = the top)
    final_probs: torch.Tensor  # and its probability


@torch.inference_mode()
def logit_lens(model: GPTModel, ids: list[int], vocab_size: int | None = None) -> LogitLens:
    """Read every layer's stream through `final_norm` and `out_head`; `vocab_size` cuts padded rows.

    One layer at a time: (T, V) logits per layer, never (L+1, T, V) at once (GPT-2 xl would need gigabytes).
    """
    streams = residual_stream(model, ids)  # (L+1, T, C)

    def layer_probs(layer: int) -> torch.Tensor:  # (T, V)
        return torch.softmax(model.out_head(model.final_norm(streams[layer]))[:, :vocab_size].float(), dim=-1)

    final_ids = layer_probs(len(streams) - 1).argmax(-1)  # (T,)
    rows = []
    for layer in range(len(streams)):
        probs = layer_probs(layer)
        top = probs.max(-1)
        final_p = probs.gather(-1, final_ids[:, None])[:, 0]  # (T,)
        rows.append((top.indices, top.values, (probs > final_p[:, None]).sum(-1), final_p))
    top_ids, top_probs, ranks, final_probs = (torch.stack(column) for column in zip(*rows, strict=True))
    return LogitLens(top_ids, top_probs, final_ids, ranks, final_probs)


@torch.inference_mode()
def surprisal_bits(model: GPTModel, ids: list[int], bos_id: int, vocab_size: int | None = None) -> torch.Tensor:
    """(T,) bits each token costs: -log2 p(ids[t] | bos, ids[:t]), the first token conditioned on `bos` alone.

    `bos` is the end-of-text token, which separates documents in training: 'a text starts here'.
    The mean over tokens, in nats, is the model's loss on the text (`gpt.training.loss.lm_loss`).
    """
    model.eval()
    inputs = _inputs(model, [bos_id] + ids[:-1])  # (1, T): predict ids[t] from what precedes it
    logits = model(inputs)[:, :, :vocab_size]  # (1, T, V)
    nats = lm_loss(logits, inputs.new_tensor([ids]), reduction="none")  # (T,)
    return nats / math.log(2)


@dataclass(frozen=True)
class Span:
    """A word of the text (characters start..end) and the bits its tokens cost."""

    start: int
    end: int
    bits: float


WORD = re.compile(r"\S+")


def bits_by_word(text: str, pieces: list[TokenPiece], bits: list[float]) -> list[Span]:
    """Each token's bits added to the word it belongs to: what two models with different tokenizers share.

    A token joins the word holding its last character (GPT-2's pre-tokenizer never lets a token span
    two words; " cat" belongs to "cat"); a token of spaces alone joins the next word.
    """
    words = [m.span() for m in WORD.finditer(text)]
    if not words:
        return []
    ends = [end for _, end in words]
    totals = [0.0] * len(words)
    for piece, b in zip(pieces, bits, strict=True):
        last = max(piece.start, piece.end - 1)
        totals[min(bisect.bisect_right(ends, last), len(words) - 1)] += b
    return [Span(s, e, t) for (s, e), t in zip(words, totals, strict=True)]
