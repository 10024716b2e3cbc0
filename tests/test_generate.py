from __future__ import annotations

import pytest
import torch

from gpt.generate import SamplingConfig, beam_search, filter_logits, generate, next_token_probs, stream
from gpt.model import GPTModel

PROMPTS = [[1], [5, 6, 7, 8], list(range(100, 160))]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_with_kv_cache_equals_recomputing(tiny_model: GPTModel, prompt: list[int]) -> None:
    # 100 new tokens on a 64-token context also crosses the window, where the cache must give way.
    greedy = SamplingConfig(max_new_tokens=100, temperature=0)
    cached = generate(tiny_model, prompt, greedy)
    assert len(cached) == 100
    assert cached == generate(tiny_model, prompt, greedy, use_cache=False)


def test_seeded_sampling_is_reproducible(tiny_model: GPTModel) -> None:
    cfg = SamplingConfig(max_new_tokens=30, temperature=1.3, top_k=40, top_p=0.9, seed=7)
    first = generate(tiny_model, [1, 2, 3], cfg)
    assert first == generate(tiny_model, [1, 2, 3], cfg)
    assert first == generate(tiny_model, [1, 2, 3], cfg, use_cache=False)
    others = {tuple(generate(tiny_model, [1, 2, 3], SamplingConfig(max_new_tokens=30, seed=s))) for s in range(5)}
    assert len(others) > 1


def test_stream_stops_at_end_of_text(tiny_model: GPTModel) -> None:
    greedy = SamplingConfig(max_new_tokens=20, temperature=0)
    tokens = generate(tiny_model, [3, 4], greedy)
    eot = tokens[5]
    stopped = list(stream(tiny_model, [3, 4], greedy, eot_id=eot))
    assert stopped == tokens[: tokens.index(eot)]
    no_stop = SamplingConfig(max_new_tokens=20, temperature=0, stop_at_eot=False)
    assert generate(tiny_model, [3, 4], no_stop, eot_id=eot) == tokens


def test_long_prompt_is_cropped_to_the_window(tiny_model: GPTModel) -> None:
    prompt = list(range(200))
    cfg = SamplingConfig(max_new_tokens=5, temperature=0)
    assert generate(tiny_model, prompt, cfg) == generate(tiny_model, prompt[-64:], cfg)


def test_filters() -> None:
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    kept = filter_logits(logits, top_k=2)
    assert torch.isfinite(kept).tolist() == [True, True, False, False, False]
    probs = torch.softmax(logits, -1)  # 0.64, 0.24, 0.09, ...
    nucleus = filter_logits(logits, top_p=0.8)
    assert torch.isfinite(nucleus).tolist() == [True, True, False, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).sum() == 1  # the top token always stays
    assert probs[0] < torch.softmax(filter_logits(logits, temperature=0.5), -1)[0]
    greedy = next_token_probs(logits, SamplingConfig(temperature=0))
    assert greedy.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_k=-3), dict(top_p=0.0), dict(top_p=1.5),
                                 dict(max_new_tokens=-1)])
def test_bad_sampling_values_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        SamplingConfig(**bad)


def test_empty_prompt_is_refused(tiny_model: GPTModel) -> None:
    with pytest.raises(ValueError, match="empty"):
        generate(tiny_model, [], SamplingConfig())


def sequence_logprob(model: GPTModel, prompt: list[int], continuation: list[int]) -> float:
    ids = torch.tensor([prompt + continuation])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids)[0, :-1], -1)
    picked = logprobs[torch.arange(len(prompt) - 1, ids.shape[1] - 1), torch.tensor(continuation)]
    return float(picked.sum())


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy(tiny_model: GPTModel) -> None:
    prompt = [10, 20, 30]
    greedy = generate(tiny_model, prompt, SamplingConfig(max_new_tokens=6, temperature=0))
    beam = beam_search(tiny_model, prompt, num_beams=5, max_new_tokens=6, length_penalty=0.0)
    assert len(beam) == 6
    assert sequence_logprob(tiny_model, prompt, beam) >= sequence_logprob(tiny_model, prompt, greedy) - 1e-5
    assert beam_search(tiny_model, prompt, num_beams=1, max_new_tokens=6, length_penalty=0.0) == greedy


def test_unseeded_sampling_leaves_the_global_rng_alone(tiny_model: GPTModel) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate(tiny_model, [1, 2], SamplingConfig(max_new_tokens=3))
    assert torch.equal(torch.rand(3), expected)
