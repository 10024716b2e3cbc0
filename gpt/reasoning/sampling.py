"""N replies to one prompt in one batch, each with the model's own log-probability of every token.

Voting and GRPO both ask a model the same question many times. One by one that is N passes over the
prompt and N decoding loops; here the prompt is read once, its keys and values copied to N rows of
the cache (`KVCache.reorder` with N zeros), and the N replies decode together, one batched forward
pass per token. A reply that ends early rides along until the last one ends: its later tokens are
dropped, which costs a little compute and keeps the loop plain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpt.generate import SamplingConfig, next_token_probs, stop_set
from gpt.instruct.prompt import extract_response
from gpt.model import GPTModel
from gpt.tokenizer import Tokenizer

MAX_SAMPLES = 256  # replies to one prompt at once: the batch of the cache


@dataclass(frozen=True)
class Sample:
    """One sampled reply."""

    tokens: list[int]  # the reply's tokens, without the stop token
    text: str  # the reply as the chat shows it (`extract_response`: cut where a new ### section starts)
    logprobs: list[float]  # log p of each token under the model's own distribution (temperature 1, no top-k),
    # the stop token's last when the reply ended: how likely the model itself finds the reply
    ended: bool  # stopped at end-of-text, rather than at max_new_tokens

    @property
    def mean_logprob(self) -> float:
        """The mean log-probability per token: what best-of-N ranks replies by (a sum would favour short ones)."""
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0


@torch.inference_mode()
def sample_replies(model: GPTModel, tokenizer: Tokenizer, prompt_ids: list[int], n: int, cfg: SamplingConfig
                   ) -> list[Sample]:
    """`n` replies to the prompt drawn as `cfg` says (temperature 0: n copies of the greedy reply); `cfg.seed`
    makes them reproducible. Prompt and reply must fit the context window: nothing is cropped."""
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"the number of samples must be between 1 and {MAX_SAMPLES}, got {n}")
    if not prompt_ids:
        raise ValueError("the prompt is empty: give at least one token")
    if cfg.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1 to sample a reply, got {cfg.max_new_tokens}")
    if len(prompt_ids) + cfg.max_new_tokens > model.cfg.context_length:
        raise ValueError(f"a prompt of {len(prompt_ids)} tokens and {cfg.max_new_tokens} new ones exceed the "
                         f"context length {model.cfg.context_length}")
    model.eval()
    device = model.tok_emb.weight.device
    stops = torch.tensor(sorted(stop_set(tokenizer.stop_ids)) if cfg.stop_at_eot else [], dtype=torch.long,
                         device=device)
    generator = torch.Generator(device=device)
    if cfg.seed is not None:
        generator.manual_seed(cfg.seed)
    else:
        generator.seed()
    cache = model.new_cache(1)
    logits = model(torch.tensor([prompt_ids], device=device), cache, last_only=True)[:, -1, :tokenizer.n_vocab]
    cache.reorder(torch.zeros(n, dtype=torch.long, device=device))  # the prompt's keys and values, once per row
    logits = logits.expand(n, -1)  # (n, V)
    drawn, own_logprobs = [], []  # per step: (n,) token ids, (n,) their log-probabilities
    alive = torch.ones(n, dtype=torch.bool, device=device)
    lengths = torch.full((n,), cfg.max_new_tokens, dtype=torch.long, device=device)  # tokens kept, stop included
    for step in range(cfg.max_new_tokens):
        token = torch.multinomial(next_token_probs(logits, cfg), 1, generator=generator)  # (n, 1)
        drawn.append(token[:, 0])
        own_logprobs.append(torch.log_softmax(logits.float(), dim=-1).gather(1, token)[:, 0])
        ends = alive & torch.isin(token[:, 0], stops)
        lengths[ends] = step + 1
        alive &= ~ends
        if not alive.any() or step == cfg.max_new_tokens - 1:
            break
        logits = model(token, cache, last_only=True)[:, -1, :tokenizer.n_vocab]
    tokens = torch.stack(drawn, dim=1).tolist()  # (n, steps)
    logprobs = torch.stack(own_logprobs, dim=1).tolist()
    samples = []
    for row, length in enumerate(lengths.tolist()):
        ended = not alive[row].item()
        reply = tokens[row][: length - 1 if ended else length]
        samples.append(Sample(reply, extract_response(tokenizer.decode(reply)), logprobs[row][:length], ended))
    return samples
