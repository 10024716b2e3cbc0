"""Finetuning a pretrained GPT into a text classifier (the book's chapter 6): the SMS spam detector.

The language-model head is replaced by a `num_classes` head read at the last token of the message
(the only position that has seen the whole message, since attention is causal). Everything is frozen
but the last N blocks, the final norm and the head, so a classifier on disk is just those tensors plus
the sha256 of the base model they were trained on top of.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gpt import spam_data
from gpt.checkpoint import WEIGHTS_FILE, Checkpoint, load_model
from gpt.config import GPT2_SIZES
from gpt.model import GPTModel
from gpt.tokenizer import ASSETS, Tokenizer, sha256_of

SHIPPED_DIR = ASSETS / "models" / "spam"
DEFAULT_BASE = ASSETS / "models" / "base"
CLASSIFIER_WEIGHTS = "classifier.safetensors"  # not model.safetensors: this is a delta, not a checkpoint
CLASSIFIER_CONFIG = "classifier.json"
METRICS_FILE = "test_metrics.json"
CARD_FILE = "MODEL_CARD.md"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ClassifierError(ValueError):
    """A classifier folder that is missing, broken, or made from a different base model."""


# --- configuration ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneConfig:
    """How a classifier is finetuned. `trainable_blocks=None` trains all layers."""

    trainable_blocks: int | None = 1
    epochs: int = 5
    batch_size: int = 8
    lr: float = 5e-5
    weight_decay: float = 0.1
    eval_every: int = 50  # steps between quick validation-loss checks shown on the progress bar
    eval_batches: int = 5  # the quick check's budget: batches of validation data it may read
    seed: int = 123

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
    def preset(cls, name: str, **overrides: Any) -> FinetuneConfig:
        try:
            base = FINETUNE_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown finetuning preset {name!r}; choose one of {sorted(FINETUNE_PRESETS)}") from None
        return replace(base, **overrides)


FINETUNE_PRESETS: dict[str, FinetuneConfig] = {
    # The book's setup for GPT-2 small: last block + final norm + head, 5 epochs at 5e-5.
    "book": FinetuneConfig(),
    # The small shipped base model: two blocks (the most that fit in 4 MB as bfloat16), longer and at
    # twice the rate; of the settings tried it had the best validation accuracy, then loss.
    "shipped": FinetuneConfig(trainable_blocks=2, epochs=8, lr=1e-4),
}


# --- the model ----------------------------------------------------------------------------------

def attach_classifier_head(model: GPTModel, num_classes: int) -> GPTModel:
    """Replace the vocabulary-sized output head (tied to the embedding in GPT-2) by a small new one."""
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    model.out_head = nn.Linear(model.cfg.emb_dim, num_classes)
    nn.init.normal_(model.out_head.weight, std=0.02)
    nn.init.zeros_(model.out_head.bias)
    return model


def trainable_prefixes(n_layers: int, trainable_blocks: int | None) -> tuple[str, ...]:
    """State-dict name prefixes that finetuning changes; None (all layers) is the empty prefix."""
    if trainable_blocks is None:
        return ("",)
    if trainable_blocks > n_layers:
        raise ValueError(f"cannot unfreeze {trainable_blocks} blocks: the model has {n_layers}")
    blocks = tuple(f"trf_blocks.{i}." for i in range(n_layers - trainable_blocks, n_layers))
    return blocks + ("final_norm.", "out_head.")


def freeze_for_finetuning(model: GPTModel, trainable_blocks: int | None) -> list[str]:
    """Freeze everything, then unfreeze the last `trainable_blocks` blocks, final norm and head.

    Returns the names of the parameters left trainable.
    """
    prefixes = trainable_prefixes(model.cfg.n_layers, trainable_blocks)
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
        if param.requires_grad:
            trainable.append(name)
    return trainable


def class_logits(model: GPTModel, idx: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, T) padded ids -> (B, num_classes) logits at each row's last real token.

    Padding only ever follows the message, and causal attention never looks ahead, so the result
    does not depend on how much padding a batch has.
    """
    hidden, _ = model.hidden_states(idx)
    last = (idx != pad_id).sum(dim=1).clamp(min=1) - 1
    return model.out_head(hidden[torch.arange(idx.shape[0], device=idx.device), last])


# --- training -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float  # mean over the epoch's steps (with dropout on)
    train_accuracy: float
    val_loss: float  # on the whole validation split
    val_accuracy: float
    seconds: float

    @property
    def rank_key(self) -> tuple[float, float]:
        """Which epoch is kept: the best validation accuracy, then the lower validation loss."""
        return self.val_accuracy, -self.val_loss


@torch.no_grad()
def loss_and_accuracy(model: GPTModel, loader: DataLoader, pad_id: int, max_batches: int | None = None
                      ) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for i, (ids, labels) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        logits = class_logits(model, ids, pad_id)
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
        seen += len(labels)
    model.train(was_training)
    if seen == 0:
        raise ValueError("no batches to evaluate")
    return total_loss / seen, correct / seen


def train_classifier(model: GPTModel, train_loader: DataLoader, val_loader: DataLoader, cfg: FinetuneConfig,
                     pad_id: int, progress: bool = True) -> list[EpochStats]:
    """AdamW on the trainable parameters; keeps the weights of the epoch with the best validation accuracy."""
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[EpochStats] = []
    best, best_state = None, None
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        postfix: dict[str, str] = {}
        for ids, labels in bar:
            logits = class_logits(model, ids, pad_id)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(-1) == labels).sum().item()
            seen += len(labels)
            postfix["loss"] = f"{loss.item():.3f}"
            if cfg.eval_every and step % cfg.eval_every == 0:
                quick_val, _ = loss_and_accuracy(model, val_loader, pad_id, cfg.eval_batches)
                postfix["val_loss"] = f"{quick_val:.3f}"
            bar.set_postfix(postfix)
        val_loss, val_accuracy = loss_and_accuracy(model, val_loader, pad_id)
        stats = EpochStats(epoch, loss_sum / max(seen, 1), correct / max(seen, 1), val_loss, val_accuracy,
                           time.perf_counter() - start)
        history.append(stats)
        if progress:
            tqdm.write(f"epoch {epoch}: train loss {stats.train_loss:.3f} acc {stats.train_accuracy:.1%} | "
                       f"val loss {val_loss:.3f} acc {val_accuracy:.1%} | {stats.seconds:.0f}s")
        if best is None or stats.rank_key > best.rank_key:
            best = stats
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return history


# --- evaluation ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TestMetrics:
    """Held-out figures of a classifier, as stored next to it (`test_metrics.json`)."""

    labels: list[str]
    accuracy: float
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1, support
    confusion: list[list[int]]  # rows: true label, columns: predicted label
    n_test: int
    data_source: str
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few TEST messages of each class

    @classmethod
    def from_predictions(cls, true: list[int], predicted: list[int], labels: list[str], data_source: str,
                         examples: dict[str, list[str]] | None = None) -> TestMetrics:
        k = len(labels)
        confusion = [[0] * k for _ in range(k)]
        for t, p in zip(true, predicted):
            confusion[t][p] += 1
        per_class = {}
        for c, label in enumerate(labels):
            tp = confusion[c][c]
            predicted_c = sum(confusion[r][c] for r in range(k))
            actual_c = sum(confusion[c])
            precision = tp / predicted_c if predicted_c else 0.0
            recall = tp / actual_c if actual_c else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual_c}
        accuracy = sum(confusion[c][c] for c in range(k)) / max(len(true), 1)
        return cls(list(labels), accuracy, per_class, confusion, len(true), data_source, examples or {})

    def per_class_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.per_class).T.astype({"support": int})

    def confusion_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.confusion, index=[f"true {x}" for x in self.labels],
                            columns=[f"predicted {x}" for x in self.labels])

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TestMetrics:
        return cls(**json.loads(text))


@torch.no_grad()
def evaluate(model: GPTModel, messages: list[spam_data.Message], tokenizer: Tokenizer, labels: list[str],
             data_source: str, batch_size: int = 16, n_examples: int = 4) -> TestMetrics:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on `messages` (the test split)."""
    model.eval()
    dataset = spam_data.SpamDataset(messages, tokenizer, model.cfg.context_length)
    predicted: list[int] = []
    for ids, _ in DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate):
        predicted.extend(class_logits(model, ids, dataset.pad_id).argmax(-1).tolist())
    examples = {label: [m.text for m in messages if m.label == c][:n_examples] for c, label in enumerate(labels)}
    return TestMetrics.from_predictions([m.label for m in messages], predicted, labels, data_source, examples)


# --- the shipped classifier ---------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    label: str
    probs: dict[str, float]


def weights_sha256(model: GPTModel) -> str:
    """A digest of a model's weights, for bases that are not a file of ours (OpenAI's GPT-2)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_base(model: str | Path) -> tuple[Checkpoint, dict[str, str]]:
    """A base model by GPT-2 name or checkpoint folder, with what identifies its exact weights."""
    checkpoint = load_model(model)
    if str(model) in GPT2_SIZES:
        return checkpoint, {"pretrained": str(model), "weights_sha256": weights_sha256(checkpoint.model)}
    return checkpoint, {"checkpoint": str(model), "sha256": sha256_of(Path(model) / WEIGHTS_FILE)}


class SpamClassifier:
    """A finetuned classifier ready for the app: predict, attention of the last token, test figures."""

    def __init__(self, model: GPTModel, tokenizer: Tokenizer, labels: list[str],
                 test_metrics: TestMetrics | None = None, config: dict[str, Any] | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.test_metrics = test_metrics
        self.config = config or {}

    def _ids(self, text: str) -> torch.Tensor:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the message is empty: type a message to classify")
        ids = self.tokenizer.encode(text)[: self.model.cfg.context_length]  # keep the start of a long one
        return torch.tensor([ids], dtype=torch.long)

    @torch.no_grad()
    def predict(self, text: str) -> Prediction:
        logits = class_logits(self.model, self._ids(text), self.tokenizer.eot_id)[0]
        probs = torch.softmax(logits.float(), dim=-1).tolist()
        return Prediction(self.labels[int(logits.argmax())], dict(zip(self.labels, probs)))

    @torch.no_grad()
    def token_attention(self, text: str) -> list[tuple[str, float]]:
        """Each token and how much the last token attends to it in the last layer (mean over heads)."""
        ids = self._ids(text)
        last_layer = self.model.attention_maps(ids)[-1]  # (1, H, T, T)
        weights = last_layer[0].mean(dim=0)[-1].tolist()
        pieces = [self.tokenizer.decode_bytes([i]).decode("utf-8", errors="replace") for i in ids[0].tolist()]
        return list(zip(pieces, weights))


def save_classifier(model: GPTModel, directory: str | Path, base_ref: dict[str, str], labels: list[str],
                    trainable_blocks: int | None, dtype: str = "bfloat16", meta: dict[str, Any] | None = None) -> Path:
    """Write only the tensors finetuning changed, plus how to find (and check) the base model."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prefixes = trainable_prefixes(model.cfg.n_layers, trainable_blocks)
    state = {k: v.detach().to(DTYPES[dtype]).contiguous() for k, v in model.state_dict().items()
             if k.startswith(prefixes)}
    base_ref = dict(base_ref)
    if "checkpoint" in base_ref:  # relative, so the repository can move
        base_ref["checkpoint"] = os.path.relpath(Path(base_ref["checkpoint"]).resolve(), directory.resolve())
    tmp = directory / (CLASSIFIER_WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, directory / CLASSIFIER_WEIGHTS)
    config = {"labels": list(labels), "base": base_ref, "trainable_blocks": trainable_blocks, "dtype": dtype,
              "meta": meta or {}}
    (directory / CLASSIFIER_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return directory


def load_classifier(directory: str | Path = SHIPPED_DIR, base: str | Path | None = None) -> SpamClassifier:
    """Base model + stored delta. Refuses a base whose weights differ from the one it was trained on."""
    directory = Path(directory)
    config_path = directory / CLASSIFIER_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory}: no classifier here ({CLASSIFIER_CONFIG} missing)")
    try:
        config = json.loads(config_path.read_text())
        labels, base_ref, trainable_blocks = config["labels"], config["base"], config["trainable_blocks"]
        expected = base_ref.get("sha256") or base_ref["weights_sha256"]
        if base is None:
            base = base_ref.get("pretrained") or directory / base_ref["checkpoint"]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ClassifierError(f"{config_path}: not a valid classifier config ({err})") from err
    checkpoint, found = load_base(base)
    got = found.get("sha256") or found.get("weights_sha256")
    if got != expected:
        raise ClassifierError(f"{directory}: trained on a base model with sha256 {expected[:12]}…, but {base} "
                              f"has {got[:12]}…; finetune again on this base (python -m gpt finetune-classifier)")
    model = attach_classifier_head(checkpoint.model, len(labels))
    try:
        state = load_file(str(directory / CLASSIFIER_WEIGHTS))
    except (SafetensorError, OSError, ValueError) as err:
        raise ClassifierError(f"{directory / CLASSIFIER_WEIGHTS}: missing or unreadable ({err})") from err
    prefixes = trainable_prefixes(model.cfg.n_layers, trainable_blocks)
    expected_state = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    if set(state) != set(expected_state):
        odd = sorted(set(state) ^ set(expected_state))[0]
        raise ClassifierError(f"{directory / CLASSIFIER_WEIGHTS}: tensor {odd!r} missing or unexpected")
    for name, tensor in state.items():
        if tensor.shape != expected_state[name].shape:
            raise ClassifierError(f"{directory / CLASSIFIER_WEIGHTS}: tensor {name!r} has shape "
                                  f"{tuple(tensor.shape)}, expected {tuple(expected_state[name].shape)}")
    model.load_state_dict(state, strict=False)
    metrics_path = directory / METRICS_FILE
    metrics = TestMetrics.from_json(metrics_path.read_text()) if metrics_path.is_file() else None
    return SpamClassifier(model.float().eval(), checkpoint.tokenizer, labels, metrics, config)


# --- the pipeline and the command ---------------------------------------------------------------

def finetune(base: str | Path, cfg: FinetuneConfig, out: str | Path, data_source: str = "auto",
             dtype: str = "bfloat16", progress: bool = True) -> SpamClassifier:
    """Data, head swap, freezing, training, saving; then the saved classifier's test figures and card."""
    checkpoint, base_ref = load_base(base)
    corpus = spam_data.load_corpus(data_source)
    splits = spam_data.balanced_split(corpus)
    torch.manual_seed(cfg.seed)
    model = attach_classifier_head(checkpoint.model, len(spam_data.LABELS))
    freeze_for_finetuning(model, cfg.trainable_blocks)
    context = model.cfg.context_length
    train_set = spam_data.SpamDataset(splits.train, checkpoint.tokenizer, context)
    val_set = spam_data.SpamDataset(splits.val, checkpoint.tokenizer, context)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                              collate_fn=train_set.collate, generator=torch.Generator().manual_seed(cfg.seed))
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, collate_fn=val_set.collate)
    history = train_classifier(model, train_loader, val_loader, cfg, train_set.pad_id, progress)
    meta = {
        "finetune": asdict(cfg),
        "data": {"kind": corpus.kind, "source": corpus.source, "split_seed": spam_data.SPLIT_SEED,
                 "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}},
        "history": [asdict(h) for h in history],
    }
    save_classifier(model, out, base_ref, list(spam_data.LABELS), cfg.trainable_blocks, dtype, meta)
    classifier = load_classifier(out)  # measure exactly what ships, after the cast to `dtype`
    metrics = evaluate(classifier.model, list(splits.test), classifier.tokenizer, classifier.labels, corpus.source)
    (Path(out) / METRICS_FILE).write_text(metrics.to_json())
    (Path(out) / CARD_FILE).write_text(model_card(classifier.config, metrics, Path(out)))
    classifier.test_metrics = metrics
    return classifier


def measure(directory: str | Path = SHIPPED_DIR) -> TestMetrics:
    """Re-measure a saved classifier on the test split of the data it was trained on."""
    classifier = load_classifier(directory)
    data = classifier.config.get("meta", {}).get("data", {})
    corpus = spam_data.load_corpus(data.get("kind", "offline"))
    splits = spam_data.balanced_split(corpus, seed=data.get("split_seed", spam_data.SPLIT_SEED))
    return evaluate(classifier.model, list(splits.test), classifier.tokenizer, classifier.labels, corpus.source)


def _markdown_table(frame: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    def cell(value: Any) -> str:
        return float_format.format(value) if isinstance(value, float) else str(value)

    header = "| | " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|---" * (len(frame.columns) + 1) + "|"
    rows = ["| " + str(index) + " | " + " | ".join(cell(v) for v in row) + " |" for index, row in
            zip(frame.index, frame.itertuples(index=False))]
    return "\n".join([header, rule, *rows])


def model_card(config: dict[str, Any], metrics: TestMetrics, directory: Path) -> str:
    """The card's figures come from the same run that wrote the classifier: nothing typed by hand."""
    meta = config.get("meta", {})
    ft, data, base = meta.get("finetune", {}), meta.get("data", {}), config["base"]
    n_blocks = ft.get("trainable_blocks")
    blocks = "all layers are" if n_blocks is None else f"the last {n_blocks} transformer block(s),"
    if "pretrained" in base:
        base_name, base_hash = f"OpenAI's {base['pretrained']}", base["weights_sha256"]
        model_arg = base["pretrained"]
    else:
        base_name, base_hash = f"`{base['checkpoint']}` (relative to this folder)", base["sha256"]
        model_arg = os.path.relpath((directory / base["checkpoint"]).resolve())
    history = [EpochStats(**h) for h in meta.get("history", [])]
    kept = max(history, key=lambda h: h.rank_key).epoch if history else None
    history_table = pd.DataFrame([asdict(h) for h in history]).set_index("epoch").round({"seconds": 0}).astype({"seconds": int})
    size = (directory / CLASSIFIER_WEIGHTS).stat().st_size
    sizes = data.get("sizes", {})
    blocks_arg = "all" if n_blocks is None else n_blocks
    command = (f"python -m gpt finetune-classifier --model {model_arg} --trainable-blocks {blocks_arg} "
               f"--epochs {ft.get('epochs')} --lr {ft.get('lr')} --batch-size {ft.get('batch_size')} "
               f"--seed {ft.get('seed')} --data {data.get('kind')} --dtype {config['dtype']} --out {directory}")
    return f"""# SMS spam classifier

Finetuned from the base model {base_name}, weights sha256
`{base_hash}`, as in chapter 6 of *Build a Large Language Model (From Scratch)*: the output head
is replaced by a {len(metrics.labels)}-class head read at the last token of the message; {blocks}
the final norm and the head are trained, the rest is frozen. Only the trained tensors are stored
(`{CLASSIFIER_WEIGHTS}`, {config['dtype']}, {size / 1e6:.2f} MB); loading checks the base model's sha256 and
refuses any other base.

## Data

{data.get('source', metrics.data_source)}.
The SMS Spam Collection is by Tiago A. Almeida and José María Gómez Hidalgo, UCI Machine Learning
Repository, CC BY 4.0 (doi:10.24432/C5CC84). Ham is undersampled to the number of spam messages,
then split 70/10/20 with seed {data.get('split_seed')}: {sizes.get('train')} train, {sizes.get('val')} validation,
{sizes.get('test')} test messages.

## Training

AdamW, lr {ft.get('lr')}, weight decay {ft.get('weight_decay')}, batch size {ft.get('batch_size')}, {ft.get('epochs')} epochs,
seed {ft.get('seed')}. Train figures are running means over each epoch (dropout on); validation figures
cover the whole validation split. The epoch with the best validation accuracy (then loss) is kept:
epoch {kept}.

{_markdown_table(history_table)}

## Test split ({metrics.n_test} messages, measured on the stored {config['dtype']} weights)

Accuracy: **{metrics.accuracy:.1%}** (one message is {1 / max(metrics.n_test, 1):.1%})

{_markdown_table(metrics.per_class_frame())}

Confusion matrix:

{_markdown_table(metrics.confusion_frame())}

Re-measure these figures: `python -m gpt finetune-classifier --evaluate {directory}`

Reproduce the classifier: `{command}`
"""


def _blocks(value: str) -> int | None:
    if value == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of blocks or 'all', got {value!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(DEFAULT_BASE),
                        help=f"base model: a checkpoint folder or one of {', '.join(GPT2_SIZES)}")
    parser.add_argument("--out", help="folder to write the classifier to")
    parser.add_argument("--preset", default="book", choices=sorted(FINETUNE_PRESETS),
                        help="finetuning settings; the options below override them")
    parser.add_argument("--trainable-blocks", type=_blocks, default=argparse.SUPPRESS,
                        help="how many last transformer blocks to train, or 'all' (every layer)")
    for name, kind in (("epochs", int), ("lr", float), ("batch-size", int), ("seed", int)):
        parser.add_argument(f"--{name}", type=kind, default=argparse.SUPPRESS)
    parser.add_argument("--data", default="auto", choices=spam_data.SOURCES,
                        help="auto: download the full collection (cached), else the part shipped in assets/")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES), help="storage dtype of the classifier")
    parser.add_argument("--evaluate", metavar="DIR", help="only re-measure the test figures of a saved classifier")


def _print_metrics(metrics: TestMetrics) -> None:
    print(f"data: {metrics.data_source}")
    print(f"test accuracy: {metrics.accuracy:.2%} on {metrics.n_test} messages")
    print(metrics.per_class_frame().to_string(float_format="{:.3f}".format))
    print(metrics.confusion_frame().to_string())


def run(args: argparse.Namespace) -> None:
    if args.evaluate:
        _print_metrics(measure(args.evaluate))
        return
    if not args.out:
        raise ValueError("--out is required (the folder to write the classifier to)")
    overrides = {k: getattr(args, k) for k in ("trainable_blocks", "epochs", "lr", "batch_size", "seed")
                 if hasattr(args, k)}
    cfg = FinetuneConfig.preset(args.preset, **overrides)
    classifier = finetune(args.model, cfg, args.out, args.data, args.dtype)
    print(f"saved {args.out}")
    _print_metrics(classifier.test_metrics)
