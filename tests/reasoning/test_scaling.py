"""The batched sampler, majority voting and best-of-N: on a tiny model, and on a stub whose replies are known."""

from __future__ import annotations

import math

import pytest

from gpt.generate import SamplingConfig, continuation_logprob, generate
from gpt.instruct.prompt import format_prompt
from gpt.reasoning import scaling
from gpt.reasoning.problems import Problem
from gpt.reasoning.sampling import Sample, sample_replies
from gpt.reasoning.scaling import VoteConfig, best_of_n_answer, majority_answer, scaling_table, tally


def prompt_of(tokenizer, question="What is 7 + 5 - 3?"):
    return tokenizer.encode(format_prompt({"instruction": question, "input": ""}))


def test_samples_are_seeded_and_the_greedy_one_is_generate_s(make_checkpoint, tokenizer):
    model = make_checkpoint().model
    prompt = prompt_of(tokenizer)
    cfg = SamplingConfig(max_new_tokens=6, temperature=1.0, seed=7)
    first = sample_replies(model, tokenizer, prompt, 5, cfg)
    assert first == sample_replies(model, tokenizer, prompt, 5, cfg) and len(first) == 5
    assert len({tuple(s.tokens) for s in first}) > 1  # a random model's samples differ
    greedy = sample_replies(model, tokenizer, prompt, 3, SamplingConfig(max_new_tokens=6, temperature=0.0))
    expected = generate(model, prompt, SamplingConfig(max_new_tokens=6, temperature=0.0), tokenizer.stop_ids,
                        vocab_size=tokenizer.n_vocab)
    assert all(s.tokens == expected for s in greedy)


def test_each_sample_s_logprobs_are_the_model_s_own(make_checkpoint, tokenizer):
    model = make_checkpoint().model
    prompt = prompt_of(tokenizer)
    for sample in sample_replies(model, tokenizer, prompt, 4, SamplingConfig(max_new_tokens=5, seed=1)):
        scored = sample.tokens + ([tokenizer.eot_id] if sample.ended else [])
        assert len(sample.logprobs) == len(scored)
        assert math.isclose(sum(sample.logprobs), continuation_logprob(model, prompt, scored, tokenizer.n_vocab),
                            rel_tol=1e-4, abs_tol=1e-4)
        assert sample.mean_logprob == pytest.approx(sum(sample.logprobs) / len(sample.logprobs))


@pytest.mark.parametrize(("n", "cfg", "message"), [
    (0, SamplingConfig(max_new_tokens=4), "between 1 and 256, got 0"),
    (5000, SamplingConfig(max_new_tokens=4), "got 5000"),
    (2, SamplingConfig(max_new_tokens=0), "max_new_tokens must be at least 1"),
    (2, SamplingConfig(max_new_tokens=120), "exceed the context length 128"),
])
def test_sample_replies_refuses_bad_requests(make_checkpoint, tokenizer, n, cfg, message):
    with pytest.raises(ValueError, match=message):
        sample_replies(make_checkpoint().model, tokenizer, prompt_of(tokenizer), n, cfg)


def test_majority_counts_votes_and_breaks_ties_by_the_likeliest_reply():
    assert majority_answer([3, 4, 4, None, None, None], [0.0] * 6) == 4  # no number: no vote
    assert majority_answer([3, 4, 4, 3], [-2.0, -1.0, -3.0, -0.5]) == 3  # tie: 3's best reply, -0.5, is likelier
    assert majority_answer([3, 4], [-1.0, -1.0]) == 3  # a tie of that too: the answer given first
    assert majority_answer([None, None], [0.0, 0.0]) is None


def test_best_of_n_takes_the_likeliest_reply_that_gives_a_number():
    assert best_of_n_answer([3, 4, None], [-2.0, -1.0, -0.1]) == 4
    assert best_of_n_answer([5, 6], [-1.0, -1.0]) == 5
    assert best_of_n_answer([None], [0.0]) is None


def test_a_vote_tallies_and_its_prefix_is_a_smaller_n():
    vote = tally("q", ["7", "The answer is 8.", "8", "no"], [-0.1, -2.0, -1.0, -0.05], expected=8)
    assert vote.answers == [7, 8, 8, None] and vote.votes == {8: 2, 7: 1}
    assert (vote.majority, vote.best_of_n) == (8, 7) and vote.correct(vote.majority)
    assert vote.first(1).majority == 7 and vote.first(1).votes == {7: 1}


def test_table_ns_are_powers_of_two_up_to_n():
    assert VoteConfig(n=16).ns == [1, 2, 4, 8, 16] and VoteConfig(n=6).ns == [1, 2, 4, 6] and VoteConfig(n=1).ns == [1]


@pytest.mark.parametrize("field", [{"n": 0}, {"n": 1000}, {"temperature": 0.0}, {"max_new_tokens": 500}])
def test_vote_config_bounds(field):
    with pytest.raises(ValueError):
        VoteConfig(**field)


def test_scaling_table_on_a_stub_whose_replies_are_known(monkeypatch, make_checkpoint, tokenizer):
    """Problem 1: greedy wrong, 3 of 4 samples right; problem 2: greedy right, 1 of 4 samples right and the
    likeliest. N=1 sees each problem's first sample only."""
    replies = {"What is 1 + 1?": (["3", "2", "2", "2"], [-0.1, -1.0, -1.0, -1.0], "3"),
               "What is 2 + 2?": (["5", "4", "5", "6"], [-2.0, -0.2, -1.5, -3.0], "4")}

    def stub(model, tok, prompt_ids, n, cfg):
        question = next(q for q in replies if tok.encode(format_prompt({"instruction": q, "input": ""})) == prompt_ids)
        texts, logprobs, greedy = replies[question]
        if cfg.temperature == 0:
            return [Sample([], greedy, [-0.5], True)] * n
        return [Sample([], t, [lp], True) for t, lp in zip(texts[:n], logprobs[:n], strict=True)]

    monkeypatch.setattr(scaling, "sample_replies", stub)
    problems = [Problem("What is 1 + 1?", 2, "sum", "add:1+1"), Problem("What is 2 + 2?", 4, "sum", "add:2+2")]
    seen = []
    table = scaling_table(make_checkpoint().model, tokenizer, problems, VoteConfig(n=4), on_problem=seen.append)
    assert table.greedy == 50.0 and len(seen) == 2
    assert [(r.n, r.majority, r.best_of_n, r.any_correct) for r in table.rows] == [
        (1, 0.0, 0.0, 0.0), (2, 50.0, 50.0, 100.0), (4, 50.0, 50.0, 100.0)]
    assert table.votes[0].votes == {2: 3, 3: 1} and table.votes[1].majority == 5
    assert "| greedy | 50.0 |" in table.markdown() and "| 4 | 50.0 | 50.0 | 100.0 |" in table.markdown()


def test_scaling_table_refuses_an_empty_problem_set(make_checkpoint, tokenizer):
    with pytest.raises(ValueError, match="the problem set is empty"):
        scaling_table(make_checkpoint().model, tokenizer, [], VoteConfig(n=2))
