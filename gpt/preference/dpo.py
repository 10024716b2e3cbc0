"""Direct Preference Optimization (Rafailov et al. 2023; the book's chapter 7 bonus): the loss, training, evaluation.

DPO teaches a chat model to prefer one response over another without a reward model. For each pair
it compares how much more likely the policy (the model being trained) makes the chosen response
than the rejected one, against the same comparison by a frozen reference (the model it started
from). The implicit reward of a response is beta * (log p_policy - log p_reference), and the loss
-log sigmoid(reward_chosen - reward_rejected) pushes the chosen reward up and the rejected one down;
because both are measured against the reference, the policy is held near what it already knew,
and beta sets how near (a larger beta makes each nat of change count for more).

Log-probabilities are sums over the response tokens only, with the end-of-text that ends each
response: the prompt is the same for both, and padding is no text.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from gpt.checkpoint import Checkpoint, save_checkpoint
from gpt.config import check_options, config_from_dict, option
from gpt.instruct.data import Entry
from gpt.instruct.finetune import collate
from gpt.instruct.prompt import format_prompt
from gpt.model import GPTModel
from gpt.precision import AUTOCAST_CHOICES, autocast
from gpt.preference.data import Pair, how_counts
from gpt.tokenizer import Tokenizer
from gpt.training.events import TrainingMonitor
from gpt.training.limits import MAX_BATCH, MAX_EPOCHS, MAX_EVAL_EVERY, MAX_LR, MAX_SEED, MIN_LR
from gpt.training.loop import EpochLoop, StepOutput
from gpt.training.loss import IGNORE_INDEX, lm_loss
from gpt.training.optim import OPTIMIZERS, make_optimizer

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, targets), both (2B, T): B chosen rows, then B rejected

# -- data ----------------------------------------------------------------------------------------


class PreferenceDataset(Dataset):
    """Pre-tokenized pairs: (prompt + chosen ids, prompt + rejected ids, prompt length).

    Prompt and responses are encoded apart, as `gpt.instruct.finetune.InstructionDataset` does, so
    the response tokens are exactly those after the prompt's.
    """

    def __init__(self, pairs: Sequence[Pair], tokenizer: Tokenizer):
        self.items = []
        for pair in pairs:
            prompt = tokenizer.encode(format_prompt(pair))
            self.items.append((prompt + tokenizer.encode(pair["chosen"]), prompt + tokenizer.encode(pair["rejected"]),
                               len(prompt)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], list[int], int]:
        return self.items[i]


def collate_pairs(batch: Sequence[tuple[list[int], list[int], int]], pad_token_id: int,
                  allowed_max_length: int | None = None) -> Batch:
    """The chosen sequences, then the rejected ones, padded together by the instruction collate with the
    prompt masked: one forward pass scores both, and only response targets stay."""
    rows = [(chosen, n) for chosen, _, n in batch] + [(rejected, n) for _, rejected, n in batch]
    return collate(rows, pad_token_id, allowed_max_length=allowed_max_length, mask_prompt=True, round_width=True)


def make_pair_loader(pairs: Sequence[Pair], tokenizer: Tokenizer, context_length: int, batch_size: int,
                     shuffle: bool, seed: int = 123) -> DataLoader:
    """Batches of pairs; a shuffled (training) loader drops its last partial batch."""
    def collate_batch(batch: Sequence[tuple[list[int], list[int], int]]) -> Batch:
        return collate_pairs(batch, tokenizer.eot_id, context_length)

    return DataLoader(PreferenceDataset(pairs, tokenizer), batch_size=batch_size, shuffle=shuffle, drop_last=shuffle,
                      collate_fn=collate_batch, generator=torch.Generator().manual_seed(seed))


# -- the loss ------------------------------------------------------------------------------------

def sequence_logprobs(model: GPTModel, batch: Batch) -> torch.Tensor:
    """log p(response | prompt) per row, (2B,): the sum over the targets the collate kept (the
    cross-entropy is 0 at masked prompt and padding targets)."""
    inputs, targets = batch
    return -lm_loss(model(inputs), targets, reduction="none").view(targets.shape).sum(-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss (the paper's equation 7), averaged over the batch, and each pair's implicit rewards.

    With the policy equal to the reference every reward is 0 and the loss is log 2.
    """
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()


@dataclass
class PairScores:
    """A batch through both models: the loss, and per pair the rewards and the policy's log-probabilities."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """Batch means: the loss, the reward margin, the reward accuracy (percent of pairs whose chosen reward
        is above the rejected one) and the policy's log-probabilities."""
        margins = self.chosen_rewards - self.rejected_rewards
        return {"loss": self.loss.item(), "reward_margin": margins.mean().item(),
                "reward_accuracy": 100 * (margins > 0).float().mean().item(),
                "chosen_logp": self.chosen_logps.mean().item(), "rejected_logp": self.rejected_logps.mean().item()}


def score_batch(policy: GPTModel, reference: GPTModel, batch: Batch, beta: float,
                precision: str = "float32") -> PairScores:
    """The policy's log-probabilities (with gradients when enabled) and the reference's (never any)."""
    device = next(policy.parameters()).device
    batch = (batch[0].to(device), batch[1].to(device))
    with autocast(precision, device):
        policy_logps = sequence_logprobs(policy, batch)
        with torch.no_grad():
            ref_logps = sequence_logprobs(reference, batch)
    n = len(policy_logps) // 2
    loss, chosen_rewards, rejected_rewards = dpo_loss(policy_logps[:n], policy_logps[n:], ref_logps[:n],
                                                      ref_logps[n:], beta)
    return PairScores(loss, chosen_rewards, rejected_rewards, policy_logps[:n].detach(), policy_logps[n:].detach())


def frozen_copy(model: GPTModel) -> GPTModel:
    """The reference: a copy that never trains (no gradients, eval mode)."""
    return copy.deepcopy(model).requires_grad_(False).eval()


# -- evaluation ----------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_preferences(model: GPTModel, reference: GPTModel, tokenizer: Tokenizer, pairs: Sequence[Pair],
                         beta: float = 0.1, batch_size: int = 16, precision: str = "float32") -> dict[str, Any]:
    """Held-out figures: the DPO loss, the reward accuracy (percent of pairs whose chosen reward is above
    the rejected one) and mean margin, and the percent of pairs whose chosen response the model itself
    finds more likely (`prefers_chosen`), overall and per `how`.

    Before training (model = reference) every reward is 0: accuracy 0, margin 0, loss log 2;
    `prefers_chosen` is the one figure that says something about the untuned model.
    """
    was_training = model.training
    model.eval()
    loader = make_pair_loader(pairs, tokenizer, model.cfg.context_length, batch_size, shuffle=False)
    columns: dict[str, list[torch.Tensor]] = defaultdict(list)
    for batch in loader:
        scores = score_batch(model, reference, batch, beta, precision)
        n = len(scores.chosen_rewards)
        losses = -F.logsigmoid(scores.chosen_rewards - scores.rejected_rewards)
        for name, value in (("loss", losses), ("chosen_reward", scores.chosen_rewards),
                            ("rejected_reward", scores.rejected_rewards), ("chosen_logp", scores.chosen_logps),
                            ("rejected_logp", scores.rejected_logps)):
            columns[name].append(value.float().cpu().view(n))
    model.train(was_training)
    table = {name: torch.cat(values) for name, values in columns.items()}

    def stats(rows: torch.Tensor) -> dict[str, float]:
        t = {name: values[rows] for name, values in table.items()}
        margins = t["chosen_reward"] - t["rejected_reward"]
        means = {name: values.mean().item() for name, values in t.items()}
        return {"n": len(margins), **means, "reward_margin": margins.mean().item(),
                "reward_accuracy": 100 * (margins > 0).float().mean().item(),
                "prefers_chosen": 100 * (t["chosen_logp"] > t["rejected_logp"]).float().mean().item()}

    hows = [p["how"] for p in pairs]
    return {**stats(torch.ones(len(pairs), dtype=torch.bool)),
            "by_how": {how: stats(torch.tensor([h == how for h in hows])) for how in how_counts(pairs)}}


@torch.no_grad()
def pair_logprobs(model: GPTModel, tokenizer: Tokenizer, prompt_entry: Entry, chosen: str, rejected: str
                  ) -> dict[str, float]:
    """The model's log-probability of each response to one prompt (sums over its tokens and the
    end-of-text), and how many tokens each has: what the app shows before and after tuning."""
    pair = {"instruction": prompt_entry["instruction"], "input": prompt_entry.get("input", ""), "chosen": chosen,
            "rejected": rejected}
    was_training = model.training
    model.eval()
    batch = next(iter(make_pair_loader([pair], tokenizer, model.cfg.context_length, 1, shuffle=False)))
    device = next(model.parameters()).device
    logps = sequence_logprobs(model, (batch[0].to(device), batch[1].to(device))).float().cpu()
    model.train(was_training)
    tokens = (batch[1] != IGNORE_INDEX).sum(-1)
    return {"chosen": logps[0].item(), "rejected": logps[1].item(), "chosen_tokens": int(tokens[0]),
            "rejected_tokens": int(tokens[1])}


# -- training ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PreferenceConfig:
    """Hyperparameters of a DPO run."""

    epochs: int = option(1, "passes over the training pairs", low=1, high=MAX_EPOCHS)
    batch_size: int = option(8, "pairs per optimizer step", low=1, high=MAX_BATCH)
    lr: float = option(5e-6, "AdamW learning rate (constant)", low=MIN_LR, high=MAX_LR)
    beta: float = option(0.1, "DPO's beta: how strongly the policy's change from the reference counts; larger "
                              "keeps it nearer the reference for the same preference", low=0.01, high=10.0)
    weight_decay: float = option(0.01, "AdamW weight decay", low=0.0, high=1.0)
    optimizer: str = option("adamw", "adamw, or muon for the blocks' matrices with AdamW for the rest",
                            choices=OPTIMIZERS)
    max_pairs: int | None = option(None, "train on at most the first N training pairs (none: all)",
                                   low=1, high=1_000_000)
    eval_every: int = option(0, "steps between held-out reward figures within an epoch (0: only at its end)",
                             low=0, high=MAX_EVAL_EVERY)
    seed: int = option(123, "seeds the pair order and, on the command line, the split of untagged pairs",
                       low=0, high=MAX_SEED)
    autocast: str = option("float32", "float32: exact log-probabilities; bfloat16: matmuls in bf16",
                           choices=AUTOCAST_CHOICES)

    def __post_init__(self) -> None:
        check_options(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreferenceConfig:
        """Settings read from a file (a DPO model's record), typed as the fields say."""
        return config_from_dict(cls, data)


PREFERENCE_PRESETS: dict[str, PreferenceConfig] = {
    # The small shipped model: a larger beta and rate than the book's, measured on the shipped pairs
    # (assets/models/chat-dpo/MODEL_CARD.md): the held-out reward figures rise most without a loss
    # of instruction score.
    "shipped": PreferenceConfig(epochs=1, batch_size=8, lr=2e-5, beta=0.5),
    "gpt2": PreferenceConfig(epochs=1, batch_size=8, lr=5e-6, beta=0.1),  # the book's settings
}


@dataclass
class PreferenceResult:
    """What a run did; it goes into the checkpoint's metadata."""

    train_losses: list[float] = field(default_factory=list)  # mean DPO loss of each finished epoch
    val: list[dict[str, float]] = field(default_factory=list)  # held-out figures at each epoch's end
    steps: int = 0
    pairs_seen: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0
    stopped: bool = False  # a stop request ended the run early
    pairs: dict[str, int] = field(default_factory=dict)  # training pairs of each `how`


def finetune_preference(checkpoint: Checkpoint, train_pairs: Sequence[Pair], val_pairs: Sequence[Pair],
                        cfg: PreferenceConfig, out_dir: str | Path | None = None, meta: dict[str, Any] | None = None,
                        monitor: TrainingMonitor | None = None, save_dtype: torch.dtype | None = torch.bfloat16,
                        device: torch.device | str = "cpu") -> PreferenceResult:
    """DPO on `train_pairs` for `cfg.epochs` epochs, `checkpoint.model` the policy, a frozen copy of it the
    reference; held-out figures on `val_pairs` at each epoch's end (and every `cfg.eval_every` steps).

    One checkpoint at the end, its metadata `meta`, the config (under "preference"), the training pairs
    of each `how` and the figures. A stop request is honoured between batches: the weights so far are
    saved and the result comes back with `stopped` set.
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    policy, tokenizer = checkpoint.model, checkpoint.tokenizer
    train_pairs = list(train_pairs[: cfg.max_pairs] if cfg.max_pairs else train_pairs)
    loader = make_pair_loader(train_pairs, tokenizer, policy.cfg.context_length, cfg.batch_size, True, cfg.seed)
    if len(loader) == 0:
        raise ValueError(f"{len(train_pairs)} training pairs make no full batch of {cfg.batch_size}")
    policy.to(device=device, dtype=torch.float32).requires_grad_(True)
    reference = frozen_copy(policy)
    optimizer = make_optimizer(cfg.optimizer, policy, cfg.lr, cfg.weight_decay, decay_everything=True)
    loop = EpochLoop(policy, loader, optimizer, cfg.epochs, monitor)
    result = PreferenceResult(pairs=how_counts(train_pairs))
    start = time.perf_counter()

    def step(batch: Batch) -> StepOutput:
        scores = score_batch(policy, reference, batch, cfg.beta, cfg.autocast)
        result.pairs_seen += len(scores.chosen_rewards)
        m = scores.metrics()
        return StepOutput(scores.loss, {"train_loss": m.pop("loss"), **m}, batch[0].numel())

    def held_out() -> dict[str, float]:
        report = evaluate_preferences(policy, reference, tokenizer, val_pairs, cfg.beta, cfg.batch_size, cfg.autocast)
        return {f"val_{k}": v for k, v in report.items() if k in ("loss", "reward_accuracy", "reward_margin")}

    loop.emit("start", metrics={"train_pairs": len(train_pairs), "val_pairs": len(val_pairs)})
    for epoch, train_loss in loop.epochs(step, held_out if val_pairs else None, cfg.eval_every):
        result.train_losses.append(train_loss)
        result.val.append(held_out() if val_pairs else {})
        loop.end_epoch(epoch, {"train_loss": train_loss, **result.val[-1]})
    policy.eval()
    result.steps, result.tokens_seen, result.stopped = loop.step, loop.tokens_seen, loop.stopped
    result.seconds = time.perf_counter() - start
    if out_dir is not None and result.steps:
        run = {**(meta or {}), "preference": asdict(cfg), **asdict(result)}
        save_checkpoint(policy, out_dir, tokenizer, run, dtype=save_dtype)
        loop.emit("checkpoint", len(result.train_losses), path=str(out_dir))
    loop.finish(result.seconds)
    return result


def reward_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A markdown table of held-out preference figures before and after tuning, overall and per `how`."""
    lines = ["| pairs | n | reward accuracy before | after | margin before | after | prefers chosen before | after |",
             "|---|---|---|---|---|---|---|---|"]
    for name, b, a in [("all", before, after), *((how, before["by_how"][how], after["by_how"][how])
                                                  for how in after["by_how"])]:
        lines.append(f"| {name} | {a['n']} | {b['reward_accuracy']:.1f} | **{a['reward_accuracy']:.1f}** | "
                     f"{b['reward_margin']:.3f} | **{a['reward_margin']:.3f}** | {b['prefers_chosen']:.1f} | "
                     f"**{a['prefers_chosen']:.1f}** |")
    return "\n".join(lines)
