"""Inference-time scaling: spend more compute on a question by sampling N replies and choosing among them.

Two ways to choose, neither of which knows the right answer:
- **majority** (self-consistency, Wang et al. 2022): the answer most replies give. Right answers
  agree with each other; wrong ones scatter, so the vote beats a single greedy reply when the model
  is right more often than it is wrong in any one way.
- **best-of-N by the model's own score**: the answer of the reply whose mean log-probability per
  token is highest, the reply the model itself is surest of.

Beside them the table shows `any_correct`: the share of questions where at least one of the N
replies is right, what best-of-N with a perfect verifier would reach (the verifier here knows the
answer, which is why it is a ceiling, not a method). Replies without a number cast no vote and are
never chosen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gpt.config import check_options, option
from gpt.generate import SamplingConfig
from gpt.instruct.prompt import format_prompt
from gpt.model import GPTModel
from gpt.reasoning.problems import Problem
from gpt.reasoning.sampling import MAX_SAMPLES, sample_replies
from gpt.reasoning.verify import Number, extract_answer
from gpt.tokenizer import Tokenizer
from gpt.training.limits import MAX_SEED

MAX_REPLY_TOKENS = 64  # a numeric answer is a few tokens; the bound keeps a batch of replies small


@dataclass(frozen=True)
class VoteConfig:
    """How many replies are sampled per question, and how."""

    n: int = option(16, "replies sampled per question; the table reports N = 1, 2, 4, ... up to it",
                    low=1, high=MAX_SAMPLES)
    temperature: float = option(1.0, "divides the logits before sampling (0 would give N copies of the greedy "
                                     "reply)", low=0.05, high=2.0)
    top_k: int | None = option(None, "sample among the k most likely tokens only; none: all", low=1, high=10_000)
    max_new_tokens: int = option(12, "the longest reply", low=1, high=MAX_REPLY_TOKENS)
    seed: int = option(0, "question i is sampled with seed + i: the same table for the same seed", low=0,
                       high=MAX_SEED)

    def __post_init__(self) -> None:
        check_options(self)

    def sampling(self, seed: int | None = None) -> SamplingConfig:
        return SamplingConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
                              seed=seed)

    @property
    def ns(self) -> list[int]:
        """The N of the table's rows: powers of two below `n`, and `n`."""
        return sorted({2**i for i in range(self.n.bit_length()) if 2**i < self.n} | {self.n})


def majority_answer(answers: Sequence[Number | None], mean_logprobs: Sequence[float]) -> Number | None:
    """The answer most replies give. A tie goes to the tied answer with the likeliest reply (the highest mean
    log-probability among its replies), and a tie of that to the answer given first; None when no reply
    gives a number."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None
    best_reply = {}
    for answer, score in zip(answers, mean_logprobs, strict=True):
        if answer is not None and (answer not in best_reply or score > best_reply[answer]):
            best_reply[answer] = score
    most = max(votes.values())
    tied = [a for a in best_reply if votes[a] == most]  # in the order first given
    return max(tied, key=lambda a: best_reply[a])  # max keeps the first of equal scores


def best_of_n_answer(answers: Sequence[Number | None], mean_logprobs: Sequence[float]) -> Number | None:
    """The answer of the likeliest reply that gives one (the first of equally likely ones); None when none does."""
    scored = [(score, -i, a) for i, (a, score) in enumerate(zip(answers, mean_logprobs, strict=True))
              if a is not None]
    return max(scored, key=lambda t: t[:2])[2] if scored else None


@dataclass(frozen=True)
class Vote:
    """N replies to one question, what each answers, and what each way of choosing picks."""

    question: str
    replies: list[str]
    answers: list[Number | None]  # the verifier's reading of each reply
    mean_logprobs: list[float]  # the model's mean log-probability per token of each reply
    votes: dict[Number, int]  # answer -> replies that give it, most first
    majority: Number | None
    best_of_n: Number | None
    expected: int | None = None  # the right answer, when known

    def correct(self, answer: Number | None) -> bool:
        return answer is not None and answer == self.expected

    def first(self, n: int) -> Vote:
        """The vote of the first `n` replies only: one sampling of N answers every smaller N."""
        return tally(self.question, self.replies[:n], self.mean_logprobs[:n], self.expected)


def tally(question: str, replies: Sequence[str], mean_logprobs: Sequence[float], expected: int | None = None
          ) -> Vote:
    """The vote over replies already sampled."""
    answers = [extract_answer(r) for r in replies]
    votes = dict(Counter(a for a in answers if a is not None).most_common())
    return Vote(question, list(replies), answers, list(mean_logprobs), votes,
                majority_answer(answers, mean_logprobs), best_of_n_answer(answers, mean_logprobs), expected)


def vote(model: GPTModel, tokenizer: Tokenizer, question: str, cfg: VoteConfig, expected: int | None = None,
         seed: int | None = None) -> Vote:
    """Sample `cfg.n` replies to the question in one batch (a chat model's prompt) and tally them."""
    prompt = tokenizer.encode(format_prompt({"instruction": question, "input": ""}))
    samples = sample_replies(model, tokenizer, prompt, cfg.n, cfg.sampling(cfg.seed if seed is None else seed))
    return tally(question, [s.text for s in samples], [s.mean_logprob for s in samples], expected)


def greedy_answer(model: GPTModel, tokenizer: Tokenizer, question: str, max_new_tokens: int
                  ) -> tuple[str, Number | None]:
    """The greedy reply to the question, and the verifier's reading of it."""
    prompt = tokenizer.encode(format_prompt({"instruction": question, "input": ""}))
    reply = sample_replies(model, tokenizer, prompt, 1, SamplingConfig(max_new_tokens, temperature=0.0))[0].text
    return reply, extract_answer(reply)


@dataclass(frozen=True)
class ScalingRow:
    n: int
    majority: float  # percent of problems right
    best_of_n: float
    any_correct: float  # a perfect verifier's best-of-N: the ceiling


@dataclass(frozen=True)
class ScalingTable:
    """Accuracy against N on a problem set, beside the greedy reply's."""

    n_problems: int
    greedy: float  # percent right with one greedy reply
    rows: list[ScalingRow]
    votes: list[Vote] = field(default_factory=list)  # each problem's vote at the largest N

    def markdown(self) -> str:
        lines = ["| N | majority vote | best-of-N (model's log-prob) | any of N right (ceiling) |",
                 "|---|---|---|---|", f"| greedy | {self.greedy:.1f} | {self.greedy:.1f} | {self.greedy:.1f} |"]
        lines += [f"| {r.n} | {r.majority:.1f} | {r.best_of_n:.1f} | {r.any_correct:.1f} |" for r in self.rows]
        return "\n".join(lines)


def percent(hits: int, total: int) -> float:
    return round(100 * hits / total, 1) if total else 0.0


def scaling_table(model: GPTModel, tokenizer: Tokenizer, problems: Sequence[Problem], cfg: VoteConfig,
                  on_problem: Callable[[Vote], None] | None = None) -> ScalingTable:
    """Greedy accuracy, then `cfg.n` replies per problem (problem i seeded `cfg.seed + i`) whose first N give
    each row of N; `on_problem` sees each problem's vote as it is done (the command line's progress bar)."""
    if not problems:
        raise ValueError("the problem set is empty: nothing to measure")
    greedy_right = 0
    votes = []
    for i, problem in enumerate(problems):
        _, answer = greedy_answer(model, tokenizer, problem.question, cfg.max_new_tokens)
        greedy_right += answer == problem.answer
        votes.append(vote(model, tokenizer, problem.question, cfg, problem.answer, seed=cfg.seed + i))
        if on_problem is not None:
            on_problem(votes[-1])
    rows = []
    for n in cfg.ns:
        firsts = [v.first(n) for v in votes]
        rows.append(ScalingRow(n, percent(sum(v.correct(v.majority) for v in firsts), len(votes)),
                               percent(sum(v.correct(v.best_of_n) for v in firsts), len(votes)),
                               percent(sum(any(v.correct(a) for a in v.answers) for v in firsts), len(votes))))
    return ScalingTable(len(problems), percent(greedy_right, len(problems)), rows, votes)
