"""GRPO with verifiable rewards (Shao et al. 2024, DeepSeekMath): reinforcement learning on checkable answers.

Each step asks a few problems, samples a group of G replies to each from the model as it is, and
scores every reply with the verifier: 1 when its answer is right, plus a small reward when it is the
bare number the instruction data answers with. No value network: a reply's advantage is its reward
against its own group's, (reward - group mean) / (group std + eps), so the replies that did better
than their siblings are made likelier and the others less likely. A group whose replies all score the
same (all right, or all wrong) teaches nothing and has zero advantages.

The update is PPO's clipped objective, per reply token (the prompt is masked): the ratio
p_new(token) / p_sampling(token) times the advantage, with the ratio clipped to [1 - eps, 1 + eps] so
that one batch cannot move the policy far; with `updates_per_step` > 1 the same replies are reused
and the clip is what keeps the later updates honest. Every reply token counts once in the mean, so a
long reply weighs as much per token as a short one. An optional KL penalty to the starting model
(DeepSeekMath's estimator exp(r) - r - 1, r = log p_ref - log p_new, never negative) holds the policy
near what it knew. Dropout is off throughout: the ratio must compare one function at two moments.

The run reports through a `TrainingMonitor` ("step": loss, mean reward, share right, well formed,
KL, reply length; "eval": greedy accuracy on held-out problems), honours a stop request between
steps, and keeps a resumable state (`gpt.reasoning.state`); the result is a plain checkpoint, so it
appears as a model beside the others.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from gpt.checkpoint import CARD_FILE, Checkpoint, save_checkpoint
from gpt.config import check_options, config_from_dict, option
from gpt.files import write_text_atomic
from gpt.generate import SamplingConfig
from gpt.instruct.prompt import format_prompt
from gpt.model import GPTModel
from gpt.preference.dpo import frozen_copy
from gpt.reasoning.card import rl_model_card
from gpt.reasoning.problems import EASY_KINDS, HARD_KINDS, KINDS, MAX_PROBLEMS, Problem, make_problems
from gpt.reasoning.sampling import MAX_SAMPLES, Sample, sample_replies
from gpt.reasoning.scaling import MAX_REPLY_TOKENS, greedy_answer, percent
from gpt.reasoning.state import STATE_FILE, load_rl_state, save_rl_state, weights_sha256
from gpt.reasoning.verify import verify
from gpt.tokenizer import Tokenizer
from gpt.training.events import TrainEvent, TrainingMonitor
from gpt.training.limits import MAX_LR, MAX_SEED, MAX_STEPS, MIN_LR
from gpt.training.optim import make_optimizer

TASKS = {"hard": HARD_KINDS, "easy": EASY_KINDS, **{kind: (kind,) for kind in KINDS}}  # --task: the kinds trained
ADVANTAGE_EPS = 1e-6


@dataclass(frozen=True)
class RLConfig:
    """Hyperparameters of a GRPO run on checkable arithmetic."""

    task: str = option("hard", "the problems trained on: hard (three-digit sums, two-digit products, two steps), "
                               "easy (the instruction data's own), or one kind", choices=tuple(TASKS))
    steps: int = option(60, "optimizer steps; each asks problems_per_step problems", low=1, high=MAX_STEPS)
    problems_per_step: int = option(8, "problems asked per step", low=1, high=256)
    group_size: int = option(8, "replies sampled per problem: the group each reply is compared with", low=2,
                             high=MAX_SAMPLES)
    temperature: float = option(1.0, "sampling temperature of the replies", low=0.05, high=2.0)
    max_new_tokens: int = option(12, "the longest reply sampled", low=1, high=MAX_REPLY_TOKENS)
    lr: float = option(2e-5, "AdamW learning rate (constant)", low=MIN_LR, high=MAX_LR)
    weight_decay: float = option(0.0, "AdamW weight decay", low=0.0, high=1.0)
    clip_eps: float = option(0.2, "PPO's clip: the policy ratio is held within [1 - eps, 1 + eps]", low=0.01, high=1.0)
    kl_coef: float = option(0.02, "weight of the KL penalty to the starting model; 0: none (and no reference kept)",
                            low=0.0, high=10.0)
    format_reward: float = option(0.1, "reward for a reply that is the bare number, on top of 1 for a right one",
                                  low=0.0, high=1.0)
    updates_per_step: int = option(1, "optimizer updates on each step's replies; more than 1 is where the clip "
                                      "bites", low=1, high=16)
    max_grad_norm: float = option(1.0, "gradients are clipped to this norm", low=0.01, high=100.0)
    train_problems: int = option(2000, "distinct training problems drawn, asked in a seeded order", low=1,
                                 high=MAX_PROBLEMS)
    rehearse: float = option(0.0, "share of the training problems drawn from the families the model already knows "
                                  "(sums, differences, products, quotients in the instruction data's ranges), so "
                                  "that a run does not unlearn them; 0: the task's problems only", low=0.0, high=0.9)
    eval_problems: int = option(50, "held-out problems answered greedily at each evaluation; 0: none", low=0,
                                high=10_000)
    eval_every: int = option(10, "steps between held-out evaluations (0: only before and after)", low=0,
                             high=MAX_STEPS)
    checkpoint_every: int = option(20, "steps between resumable states and checkpoints (0: only at the end)", low=0,
                                   high=MAX_STEPS)
    give_up_after: int = option(5, "stop with a message when no sampled reply was right in this many first steps",
                                low=1, high=MAX_STEPS)
    seed: int = option(123, "seeds the problems, their order and the sampling", low=0, high=MAX_SEED)

    def __post_init__(self) -> None:
        check_options(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLConfig:
        """Settings read from a file (a resumable state, a model's record), typed as the fields say."""
        return config_from_dict(cls, data)


RL_PRESETS: dict[str, RLConfig] = {
    # The shipped 5M chat model, in minutes on two cores: two-step sums are the hard kind it sometimes gets right
    # when sampled, which is the signal GRPO needs; three-digit sums and two-digit products it almost never does.
    # Half its problems rehearse the families it knows: without that, 200 steps at 1e-4 that took two-step sums
    # from 3.5% to 10% took its sums, differences, products and quotients from 94% to 58%.
    "shipped": RLConfig(task="two_step", steps=200, problems_per_step=8, group_size=8, lr=5e-5, rehearse=0.5),
    "hard": RLConfig(task="hard", steps=200, problems_per_step=8, group_size=16, lr=2e-5),
}


# -- rewards and the loss ------------------------------------------------------------------------

def reward(reply: str, expected: int, format_weight: float) -> float:
    """1 for a right answer, plus `format_weight` for a reply that is the bare number."""
    verdict = verify(reply, expected)
    return float(verdict.correct) + format_weight * verdict.well_formed


def group_advantages(rewards: torch.Tensor, eps: float = ADVANTAGE_EPS) -> torch.Tensor:
    """(P, G) rewards -> (P, G) advantages: each reward against its group's mean, over its group's std (the
    population's) + eps. Each row sums to zero; a row of equal rewards is all zeros."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    equal = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)  # exactly zero: a float mean may miss by 1e-9
    return torch.where(equal, torch.zeros_like(rewards), (rewards - mean) / (std + eps))


def kl_to_reference(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per token, DeepSeekMath's estimate of KL(policy || reference): exp(r) - r - 1 with r = ref - policy;
    0 where the two agree, positive elsewhere. (B, T) -> (B, T)."""
    r = ref_logps - logps
    return torch.exp(r) - r - 1


@dataclass(frozen=True)
class LossParts:
    loss: torch.Tensor  # what backward runs from
    kl: float  # mean KL estimate per reply token (0 without a reference)
    clipped: float  # share of reply tokens whose ratio the clip held


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              clip_eps: float, ref_logps: torch.Tensor | None = None, kl_coef: float = 0.0) -> LossParts:
    """The clipped policy-ratio loss, averaged over the reply tokens (`mask`), plus `kl_coef` x the KL estimate.

    logps, old_logps, ref_logps, mask: (B, T), one row per reply; advantages: (B,), one per reply.
    """
    ratio = torch.exp(logps - old_logps)  # (B, T)
    gain = advantages[:, None] * ratio
    clipped_gain = advantages[:, None] * ratio.clamp(1 - clip_eps, 1 + clip_eps)
    per_token = -torch.minimum(gain, clipped_gain)  # the objective is maximised: its negative is the loss
    kl = torch.zeros_like(per_token)
    if ref_logps is not None:
        kl = kl_to_reference(logps, ref_logps)
        per_token = per_token + kl_coef * kl
    mask = mask.to(per_token.dtype)
    tokens = mask.sum().clamp(min=1)
    held = ((clipped_gain < gain).to(mask.dtype) * mask).sum() / tokens  # where min() took the clipped term
    return LossParts((per_token * mask).sum() / tokens, float((kl.detach() * mask).sum() / tokens), float(held))


def reply_batch(prompts: Sequence[list[int]], replies: Sequence[Sample], pad_id: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt + reply rows, right-padded: inputs (B, T), targets (B, T) shifted by one, and the mask (B, T) of the
    targets that are reply tokens (the stop token included when the reply ended on it)."""
    rows = [prompt + sample.tokens + ([pad_id] if sample.ended else []) for prompt, sample in
            zip(prompts, replies, strict=True)]
    width = max(map(len, rows)) - 1
    inputs = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
        inputs[i, : len(row) - 1] = torch.tensor(row[:-1])
        targets[i, : len(row) - 1] = torch.tensor(row[1:])
        mask[i, len(prompt) - 1 : len(row) - 1] = True  # position len(prompt) - 1 predicts the reply's first token
    return inputs, targets, mask


def token_logprobs(model: GPTModel, inputs: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """log p(target | what came before) at every position, (B, T), under the model's own distribution."""
    logits = model(inputs)[..., :vocab_size].float()  # (B, T, V)
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]


# -- the run -------------------------------------------------------------------------------------

@dataclass
class RLResult:
    """What a run did; it goes into the checkpoint's metadata."""

    steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # each step's figures
    evals: list[dict[str, float]] = field(default_factory=list)  # {"step", "held_out_accuracy", ...}
    seconds: float = 0.0
    stopped: bool = False  # a stop request ended it early
    resumed_from: int = 0  # the step a resumed run started at


class NoRewardError(ValueError):
    """No sampled reply was right in the first steps: every advantage was zero, so nothing would train."""


def held_out_accuracy(model: GPTModel, tokenizer: Tokenizer, problems: Sequence[Problem], max_new_tokens: int
                      ) -> tuple[dict[str, float], str]:
    """Greedy accuracy and the share of well formed replies on the problems (percent), and one example
    question with its reply."""
    right = formed = 0
    example = ""
    for problem in problems:
        reply, _ = greedy_answer(model, tokenizer, problem.question, max_new_tokens)
        verdict = verify(reply, problem.answer)
        right += verdict.correct
        formed += verdict.well_formed
        example = example or f"{problem.question} -> {reply!r} (right: {problem.answer})"
    return {"held_out_accuracy": percent(right, len(problems)),
            "held_out_well_formed": percent(formed, len(problems))}, example


def step_seed(seed: int, step: int) -> int:
    """The sampling seed of a step: a resumed run draws what an uninterrupted one would have."""
    return (seed * 1_000_003 + step) % (MAX_SEED + 1)


def problem_order(cfg: RLConfig, n: int, step: int) -> list[int]:
    """The training problems a step asks: a seeded permutation per pass over them, so a step's problems
    depend on nothing but the seed and the step."""
    first = step * cfg.problems_per_step
    picked = []
    for i in range(first, first + cfg.problems_per_step):
        generator = torch.Generator().manual_seed(step_seed(cfg.seed, i // n))
        picked.append(int(torch.randperm(n, generator=generator)[i % n]))
    return picked


def training_problems(cfg: RLConfig) -> list[Problem]:
    """`cfg.train_problems` problems of the task, of which a `cfg.rehearse` share are of the known families.

    Without rehearsal the only pull back towards what the model knew is the KL penalty, which acts on the task's
    replies alone: a run that learns two-step sums drifts on the sums it asks in the same words (the shipped model
    lost a third of its easy answers in 200 steps). Rehearsed problems are rewarded like the task's, so a family
    that starts to fail gives mixed groups and is pulled back; one the model still gets right costs a sample
    and gives no gradient.
    """
    rehearsed = min(round(cfg.train_problems * cfg.rehearse), cfg.train_problems - 1)
    rehearsed = 0 if TASKS[cfg.task] == EASY_KINDS else rehearsed
    task = make_problems(TASKS[cfg.task], cfg.train_problems - rehearsed, "train", cfg.seed)
    return task + (make_problems(EASY_KINDS, rehearsed, "train", cfg.seed) if rehearsed else [])


def finetune_rl(checkpoint: Checkpoint, cfg: RLConfig, out_dir: str | Path | None = None,
                monitor: TrainingMonitor | None = None, meta: dict[str, Any] | None = None, resume: bool = False,
                problems: Sequence[Problem] | None = None, held_out: Sequence[Problem] | None = None,
                save_dtype: torch.dtype | None = torch.bfloat16, device: torch.device | str = "cpu") -> RLResult:
    """GRPO on `checkpoint.model`, in place, for `cfg.steps` steps; `problems` and `held_out` default to
    `cfg.train_problems` problems of `cfg.task` and `cfg.eval_problems` held-out ones.

    With `out_dir` a resumable state (`rl_state.safetensors`) and the checkpoint are written every
    `cfg.checkpoint_every` steps, at a stop request and at the end; `resume` goes on from the state there,
    which must come from the same starting weights and settings (only `steps` may differ).
    """
    device = torch.device(device)
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    kinds = TASKS[cfg.task]
    problems = list(training_problems(cfg) if problems is None else problems)
    held_out = list((make_problems(kinds, cfg.eval_problems, "held_out", cfg.seed) if cfg.eval_problems else [])
                    if held_out is None else held_out)
    if not problems:
        raise ValueError("the problem set is empty: give at least one training problem")
    if resume and out_dir is None:
        raise ValueError("resume needs the run's folder (out_dir)")
    model.to(device=device, dtype=torch.float32).eval().requires_grad_(True)  # dropout off: see the module's doc
    start_sha256 = weights_sha256(model)
    reference = None
    if cfg.kl_coef > 0:
        reference = frozen_copy(model)
    optimizer = make_optimizer("adamw", model, cfg.lr, cfg.weight_decay, decay_everything=True)
    result = RLResult()
    if resume:
        state = load_rl_state(Path(out_dir) / STATE_FILE, model, optimizer)
        if state["start_sha256"] != start_sha256:
            raise ValueError(f"{STATE_FILE} in {out_dir} continues a run from other starting weights: resume it "
                             "from the model it started from")
        if replace(RLConfig.from_dict(state["config"]), steps=cfg.steps) != cfg:
            raise ValueError(f"{STATE_FILE} in {out_dir} was made with other settings than these (only --steps may "
                             "change on a resume)")
        result.steps = result.resumed_from = state["step"]
        result.history, result.evals = state["history"], state["evals"]
    prompts = [tokenizer.encode(format_prompt(p.entry())) for p in problems]
    monitor = monitor or TrainingMonitor()
    started = time.perf_counter()
    elapsed_before = result.seconds = float(state["elapsed_s"]) if resume else 0.0

    def emit(kind: str, **kwargs: Any) -> None:
        monitor.emit(TrainEvent(kind, result.steps, cfg.steps, **kwargs))

    def evaluate() -> None:
        if not held_out:
            return
        figures, example = held_out_accuracy(model, tokenizer, held_out, cfg.max_new_tokens)
        result.evals.append({"step": result.steps, **figures})
        emit("eval", metrics=figures)
        emit("sample", text=example)

    def save() -> None:
        if out_dir is None:
            return
        result.seconds = elapsed_before + time.perf_counter() - started
        save_rl_state(Path(out_dir) / STATE_FILE, model, optimizer, {
            "config": asdict(cfg), "step": result.steps, "elapsed_s": result.seconds, "start_sha256": start_sha256,
            "history": result.history, "evals": result.evals})
        record = {**(meta or {}), "rl": asdict(cfg), **asdict(result)}
        save_checkpoint(model, out_dir, tokenizer, record, dtype=save_dtype)
        card = rl_model_card(cfg, result, str((meta or {}).get("base_model", "the starting model")), str(out_dir),
                             (meta or {}).get("base_source"))
        write_text_atomic(Path(out_dir) / CARD_FILE, card)
        emit("checkpoint", path=str(out_dir))

    emit("start", metrics={"train_problems": len(problems), "held_out_problems": len(held_out)})
    if not resume:
        evaluate()
    while result.steps < cfg.steps:
        if monitor.stop_requested:
            result.stopped = True
            break
        figures = grpo_step(model, reference, tokenizer, optimizer, cfg, problems, prompts, result.steps)
        result.steps += 1
        result.history.append(figures)
        emit("step", metrics=figures)
        if result.steps == cfg.give_up_after and not any(h["accuracy"] for h in result.history):
            replies = cfg.give_up_after * cfg.problems_per_step * cfg.group_size
            raise NoRewardError(
                f"no sampled reply was right in the first {cfg.give_up_after} steps ({replies:,} replies): every "
                "advantage is zero, so nothing would train; choose easier problems (--task), a larger "
                "--group-size or another --temperature")
        if cfg.eval_every and result.steps % cfg.eval_every == 0 and result.steps < cfg.steps:
            evaluate()
        if cfg.checkpoint_every and result.steps % cfg.checkpoint_every == 0 and result.steps < cfg.steps:
            save()
    if not result.stopped:
        evaluate()
    save()
    result.seconds = elapsed_before + time.perf_counter() - started
    if result.stopped:
        emit("stopped", text=f"stopped at step {result.steps} of {cfg.steps}: stop requested",
             metrics={"elapsed_s": result.seconds})
    else:
        emit("done", text=f"finished {cfg.steps} steps", metrics={"elapsed_s": result.seconds})
    return result


def grpo_step(model: GPTModel, reference: GPTModel | None, tokenizer: Tokenizer, optimizer: torch.optim.Optimizer,
              cfg: RLConfig, problems: Sequence[Problem], prompts: Sequence[list[int]], step: int) -> dict[str, float]:
    """One step: sample a group per problem, reward, advantages, `cfg.updates_per_step` updates; its figures."""
    picked = problem_order(cfg, len(problems), step)
    sampling = SamplingConfig(cfg.max_new_tokens, cfg.temperature, seed=step_seed(cfg.seed, step))
    rows_prompts, replies, rewards, right, formed = [], [], [], 0, 0
    for index in picked:
        group = sample_replies(model, tokenizer, prompts[index], cfg.group_size, sampling)
        for sample in group:
            verdict = verify(sample.text, problems[index].answer)
            right += verdict.correct
            formed += verdict.well_formed
            rewards.append(float(verdict.correct) + cfg.format_reward * verdict.well_formed)
        rows_prompts += [prompts[index]] * len(group)
        replies += group
    reward_table = torch.tensor(rewards).view(len(picked), cfg.group_size)  # (P, G)
    advantages = group_advantages(reward_table).flatten()  # (P * G,)
    device = model.tok_emb.weight.device
    inputs, targets, mask = (t.to(device) for t in reply_batch(rows_prompts, replies, tokenizer.eot_id))
    with torch.no_grad():
        old_logps = token_logprobs(model, inputs, targets, tokenizer.n_vocab)
        ref_logps = token_logprobs(reference, inputs, targets, tokenizer.n_vocab) if reference is not None else None
    parts = None
    learns = bool(advantages.abs().max() > 0)  # all-equal groups everywhere: no signal, and no update
    for _ in range(cfg.updates_per_step if learns else 0):
        parts = grpo_loss(token_logprobs(model, inputs, targets, tokenizer.n_vocab), old_logps,
                          advantages.to(device), mask, cfg.clip_eps, ref_logps, cfg.kl_coef)
        optimizer.zero_grad(set_to_none=True)
        parts.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
    n = len(replies)
    return {"train_loss": parts.loss.item() if parts else 0.0, "reward": sum(rewards) / n,
            "accuracy": percent(right, n), "well_formed": percent(formed, n), "kl": parts.kl if parts else 0.0,
            "clipped": parts.clipped if parts else 0.0, "reply_tokens": sum(len(s.tokens) for s in replies) / n,
            "groups_learning": percent(int((reward_table.std(dim=1) > 0).sum()), len(picked))}
