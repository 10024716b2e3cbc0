"""Decoding: greedy, temperature, top-k, top-p sampling as a token stream, and beam search (every beam kept)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

import torch

from gpt.config import option
from gpt.model import GPTModel
from gpt.tokenizer import Tokenizer, TokenPiece

Stops = int | Collection[int] | None  # the token, or tokens, that end a text (a Hub tokenizer's `stop_ids`)


def stop_set(stops: Stops) -> frozenset[int]:
    """The ids that end a text, as a set: one id (GPT-2's `<|endoftext|>`), several (`<|im_end|>` and
    `<|endoftext|>`), or none."""
    if stops is None:
        return frozenset()
    return frozenset([stops] if isinstance(stops, int) else stops)


def encode_prompt(tokenizer: Tokenizer, text: str, allow_special: bool = False) -> list[int]:
    """The ids a model reads for a plain text: the tokenizer's BOS first where it has one (Llama's `<s>` or
    `<|begin_of_text|>`, which every text it was trained on began with), else the text's tokens alone.
    `allow_special` reads special tokens in the text as such (a prompt a chat template wrote)."""
    ids = tokenizer.encode(text, allow_special=allow_special)
    return ids if tokenizer.bos_id is None or ids[:1] == [tokenizer.bos_id] else [tokenizer.bos_id, *ids]


def prompt_pieces(tokenizer: Tokenizer, text: str, allow_special: bool = False) -> list[TokenPiece]:
    """`encode_prompt`'s tokens with their bytes and character spans, for the views that show each token: the
    BOS a tokenizer puts first is a token of its own, covering no character."""
    pieces = tokenizer.pieces(text, allow_special=allow_special)
    if tokenizer.bos_id is None or [p.id for p in pieces[:1]] == [tokenizer.bos_id]:
        return pieces
    return [TokenPiece(tokenizer.bos_id, tokenizer.decode_bytes([tokenizer.bos_id]), 0, 0), *pieces]


# Below this temperature sampling is greedy: logits / 1e-38 overflow to inf, and softmax of them is nan. At 1e-3 a
# logit gap of 0.1 is already e^100 to one, so nothing a sampler could draw is lost.
GREEDY_BELOW = 1e-3


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is picked. temperature 0 (or any below `GREEDY_BELOW`) means greedy (argmax)."""

    max_new_tokens: int = option(50, "tokens to generate at most")
    temperature: float = option(1.0, f"divides the logits before sampling; 0 (or below {GREEDY_BELOW:g}) is greedy")
    top_k: int | None = option(None, "keep the k most likely tokens; none or 0 keeps all")
    top_p: float | None = option(None, "keep the smallest set whose probability reaches p; none or 1 keeps all")
    seed: int | None = option(None, "a fixed seed makes sampling reproducible")
    stop_at_eot: bool = option(True, "stop at the end-of-text token")

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Scale by temperature, then set every token outside top-k / top-p to -inf. (..., V) -> (..., V).

    A temperature below `GREEDY_BELOW` (0 included) keeps only the argmax: dividing by it would overflow."""
    if temperature < GREEDY_BELOW:
        top = logits.argmax(-1, keepdim=True)
        logits = torch.full_like(logits, float("-inf")).scatter(-1, top, logits.gather(-1, top))
    else:
        logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p (the first always stays).
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token_probs(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """The distribution the sampler draws from (a one-hot at the argmax when greedy)."""
    if cfg.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    return torch.softmax(filter_logits(logits.float(), cfg.temperature, cfg.top_k, cfg.top_p), dim=-1)


def pick(logits: torch.Tensor, cfg: SamplingConfig, gen: torch.Generator) -> int:
    """One token id from (V,) logits: the argmax when greedy, else a draw from `next_token_probs`."""
    if cfg.greedy:
        return int(logits.float().argmax())  # exact widening; CPU argmax is several times slower in bfloat16
    return int(torch.multinomial(next_token_probs(logits, cfg), 1, generator=gen))


def _prompt_tensor(model: GPTModel, prompt_ids: list[int]) -> torch.Tensor:
    if not prompt_ids:
        raise ValueError("the prompt is empty: give at least one token")
    window = prompt_ids[-model.cfg.context_length :]  # crop to the context window
    return torch.tensor([window], dtype=torch.long, device=model.tok_emb.weight.device)


@torch.inference_mode()
def stream(
    model: GPTModel, prompt_ids: list[int], cfg: SamplingConfig, eot_id: Stops = None, use_cache: bool = True,
    vocab_size: int | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time. Stops at `eot_id` (not yielded) when `cfg.stop_at_eot`: one id, or every
    id of a tokenizer's `stop_ids`.

    `vocab_size` (the tokenizer's) keeps a model whose output rows are padded past it from ever
    drawing a row that has no text.

    With the cache each step feeds one token. Once the window is full, every step recomputes the
    last `context_length` tokens: the same result as never caching, the way the book crops.
    """
    model.eval()
    stops = stop_set(eot_id)
    ctx = model.cfg.context_length
    gen = torch.Generator(device=model.tok_emb.weight.device)
    if cfg.seed is not None:
        gen.manual_seed(cfg.seed)
    else:
        gen.seed()  # fresh entropy for this generator only: the global RNG (training's) is untouched
    idx = _prompt_tensor(model, prompt_ids)
    ids = idx[0].tolist()
    cache = model.new_cache(1) if use_cache else None
    logits = model(idx, cache, last_only=True)[0, -1]
    for step in range(cfg.max_new_tokens):
        token = pick(logits[:vocab_size], cfg, gen)
        if cfg.stop_at_eot and token in stops:
            return
        yield token
        if step == cfg.max_new_tokens - 1:
            return
        ids.append(token)
        if cache is not None and cache.pos < ctx:
            logits = model(idx.new_tensor([[token]]), cache, last_only=True)[0, -1]
        else:
            logits = model(idx.new_tensor([ids[-ctx:]]), last_only=True)[0, -1]


def generate(model: GPTModel, prompt_ids: list[int], cfg: SamplingConfig, eot_id: Stops = None,
             use_cache: bool = True, vocab_size: int | None = None) -> list[int]:
    """The new tokens (without the prompt)."""
    return list(stream(model, prompt_ids, cfg, eot_id, use_cache, vocab_size))


@torch.inference_mode()
def next_token_logits(model: GPTModel, prompt_ids: list[int], vocab_size: int | None = None) -> torch.Tensor:
    """(V,) float logits for the token after the prompt (cropped to the window), cut to `vocab_size`."""
    model.eval()
    return model(_prompt_tensor(model, prompt_ids), last_only=True)[0, -1, :vocab_size].float()


@dataclass(frozen=True)
class Beam:
    """One continuation a beam search kept: its tokens, their summed log-probability and its score."""

    tokens: list[int]
    logprob: float  # natural log of the probability of these tokens (and of the end-of-text, if `ended`)
    score: float  # logprob / length**length_penalty: what the beams are ranked by
    ended: bool  # stopped at an end-of-text token


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two continuations share: where one beam splits from another."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


@torch.inference_mode()
def continuation_logprob(model: GPTModel, prompt_ids: list[int], tokens: list[int], vocab_size: int | None = None
                         ) -> float:
    """log p(tokens | prompt) in nats: what beam search ranks by, for any continuation (greedy, sampled)."""
    if not tokens:
        return 0.0
    model.eval()
    idx = _prompt_tensor(model, prompt_ids + tokens[:-1])  # (1, T): the last token is predicted, never read
    if idx.shape[1] < len(prompt_ids) + len(tokens) - 1:
        raise ValueError(f"prompt and continuation exceed the context length {model.cfg.context_length}")
    logprobs = torch.log_softmax(model(idx)[0, len(prompt_ids) - 1 :, :vocab_size].float(), dim=-1)  # (n, V)
    return float(logprobs.gather(-1, idx.new_tensor(tokens)[:, None]).sum())


def beam_search(
    model: GPTModel, prompt_ids: list[int], num_beams: int = 4, max_new_tokens: int = 50,
    eot_id: Stops = None, length_penalty: float = 1.0, vocab_size: int | None = None,
) -> list[int]:
    """The most likely continuation under a beam of `num_beams` (the best of `search_beams`)."""
    return search_beams(model, prompt_ids, num_beams, max_new_tokens, eot_id, length_penalty, vocab_size)[0].tokens


@torch.inference_mode()
def search_beams(
    model: GPTModel, prompt_ids: list[int], num_beams: int = 4, max_new_tokens: int = 50,
    eot_id: Stops = None, length_penalty: float = 1.0, vocab_size: int | None = None,
) -> list[Beam]:
    """The `num_beams` best continuations, best first, scored by log-prob / length**penalty.

    The prompt is cropped so that prompt + new tokens fit the context window, letting all beams share
    one KV cache, reordered each step. `vocab_size` (the tokenizer's) keeps padded output rows out.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if not 0 < max_new_tokens < model.cfg.context_length:
        raise ValueError(f"max_new_tokens must be in [1, {model.cfg.context_length - 1}], got {max_new_tokens}")
    model.eval()
    stops = stop_set(eot_id)
    idx = _prompt_tensor(model, prompt_ids[-(model.cfg.context_length - max_new_tokens) :])
    device = idx.device
    cache = model.new_cache(1)

    def next_logprobs(inputs: torch.Tensor) -> torch.Tensor:  # (beams, T) -> (beams, V)
        return torch.log_softmax(model(inputs, cache, last_only=True)[:, -1, :vocab_size].float(), dim=-1)

    def normalized(score: float, length: int) -> float:
        return score / max(length, 1) ** length_penalty

    logprobs = next_logprobs(idx)
    alive: list[list[int]] = [[]]
    scores = torch.zeros(1, device=device)
    finished: list[Beam] = []
    for step in range(max_new_tokens):
        candidates = (scores[:, None] + logprobs).flatten()  # (beams * V,)
        top_scores, top_idx = candidates.topk(min(2 * num_beams, candidates.numel()))
        next_beams, next_scores, parents = [], [], []
        for score, flat in zip(top_scores.tolist(), top_idx.tolist(), strict=True):
            parent, token = divmod(flat, logprobs.shape[-1])
            if token in stops:
                tokens = alive[parent]
                finished.append(Beam(tokens, score, normalized(score, len(tokens) + 1), ended=True))
                continue
            next_beams.append(alive[parent] + [token])
            next_scores.append(score)
            parents.append(parent)
            if len(next_beams) == num_beams:
                break
        if not next_beams:
            break
        alive, scores = next_beams, torch.tensor(next_scores, device=device)
        best_alive = max(normalized(s, len(b)) for s, b in zip(next_scores, alive, strict=True))
        if len(finished) >= num_beams and max(f.score for f in finished) >= best_alive:
            break
        if step == max_new_tokens - 1:
            break
        cache.reorder(torch.tensor(parents, device=device))
        logprobs = next_logprobs(torch.tensor([[b[-1]] for b in alive], device=device))
    finished.extend(Beam(b, s, normalized(s, len(b)), ended=False) for s, b in zip(scores.tolist(), alive, strict=True))
    return sorted(finished, key=lambda beam: beam.score, reverse=True)[:num_beams]  # stable: ties keep their order
