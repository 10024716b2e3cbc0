"""A GPT turned text classifier (the book's chapter 6): the head, what is frozen, the logits, the files.

The language-model head is replaced by a `num_classes` head read at the last token of the message
(the only position that has seen the whole message, since attention is causal), or, for the book's
experiments, at the first token or the mean over the message's tokens. Everything is frozen but the
last N blocks, the final norm and the head, or, with LoRA (the book's appendix E), everything but
low-rank adapters on the attention and MLP layers and the head. So a classifier on disk is just the
trained tensors (with their own sha256, checked on load) plus the sha256 of the base model they were
trained on top of, and its figures on each held-out test set.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gpt.checkpoint import (
    CHECKSUMS,
    WEIGHTS_FILE,
    Checkpoint,
    CheckpointError,
    checked_checksums,
    unverified,
    verify_checksum,
)
from gpt.classify.data import SMS_TEST
from gpt.config import config_from_dict
from gpt.files import SHIPPED_MODELS, atomic_path, sha256_of, write_text_atomic
from gpt.lora import LoRAConfig, adapter_state, apply_lora, merge_lora
from gpt.model import GPTModel
from gpt.precision import dtype_of
from gpt.pretrained import PRETRAINED, load_model
from gpt.tokenizer import Tokenizer
from gpt.training.freeze import freeze_all_but_last_blocks, trainable_prefixes

SHIPPED_DIR = SHIPPED_MODELS / "spam"
CLASSIFIER_WEIGHTS = "classifier.safetensors"  # not model.safetensors: this is a delta, not a checkpoint
CLASSIFIER_CONFIG = "classifier.json"
METRICS_FILE = "test_metrics.json"
HEAD_TOKENS = ("last", "first", "mean")  # where the head reads the message: its last token, first, or the mean


class ClassifierError(ValueError):
    """A classifier folder that is missing, broken, or made from a different base model."""


# --- the model ----------------------------------------------------------------------------------

def attach_classifier_head(model: GPTModel, num_classes: int) -> GPTModel:
    """Replace the vocabulary-sized output head (tied to the embedding in GPT-2) by a small new one.

    The head is initialised on the CPU, then moved beside the model, so a seed gives the same head on
    every device.
    """
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    head = nn.Linear(model.cfg.emb_dim, num_classes)
    nn.init.normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    model.out_head = head.to(model.tok_emb.weight.device)
    return model


def freeze_for_finetuning(model: GPTModel, trainable_blocks: int | None, lora: LoRAConfig | None = None
                          ) -> list[str]:
    """Freeze everything, then unfreeze the last `trainable_blocks` blocks, final norm and head; or, with
    `lora`, wrap the attention and MLP linears in adapters and train those and the head only.

    Returns the names of the parameters left trainable.
    """
    if lora is not None:
        apply_lora(model, lora)
        model.out_head.requires_grad_(True)
        return [name for name, param in model.named_parameters() if param.requires_grad]
    return freeze_all_but_last_blocks(model, trainable_blocks)


def trained_state(model: GPTModel, trainable_blocks: int | None, lora: bool = False) -> dict[str, torch.Tensor]:
    """The tensors finetuning changes, by state-dict name: what a classifier folder stores."""
    if lora:
        head = {f"out_head.{k}": v for k, v in model.out_head.state_dict().items()}
        return adapter_state(model) | head
    prefixes = trainable_prefixes(model.cfg.n_layers, trainable_blocks)
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}


def pool_hidden(hidden: torch.Tensor, real: torch.Tensor, head_token: str = "last") -> torch.Tensor:
    """(B, T, C) hidden states, (B, T) mask of real tokens -> (B, C): what the head reads."""
    if head_token == "last":
        last = real.sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if head_token == "first":
        return hidden[:, 0]
    if head_token == "mean":
        weights = real.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
    raise ValueError(f"unknown head token {head_token!r}; choose one of {', '.join(HEAD_TOKENS)}")


def class_logits(model: GPTModel, idx: torch.Tensor, pad_id: int, head_token: str = "last") -> torch.Tensor:
    """(B, T) padded ids -> (B, num_classes) logits at each row's last real token (or first, or their mean).

    Padding only ever follows the message, and causal attention never looks ahead, so the result
    does not depend on how much padding a batch has.
    """
    hidden, _ = model.hidden_states(idx)
    return model.out_head(pool_hidden(hidden, idx != pad_id, head_token))


# --- held-out figures ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassifierMetrics:
    """Held-out figures of a classifier on one evaluation set (`test_metrics.json` holds one per set)."""

    labels: list[str]
    accuracy: float
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1, support
    confusion: list[list[int]]  # rows: true label, columns: predicted label
    n_test: int
    data_source: str
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few TEST messages of each class, labelled right

    @classmethod
    def from_predictions(cls, true: list[int], predicted: list[int], labels: list[str], data_source: str,
                         examples: dict[str, list[str]] | None = None) -> ClassifierMetrics:
        k = len(labels)
        confusion = [[0] * k for _ in range(k)]
        for t, p in zip(true, predicted, strict=True):
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
    def from_json(cls, text: str) -> ClassifierMetrics:
        return cls(**json.loads(text))


def dump_test_metrics(evaluations: dict[str, ClassifierMetrics]) -> str:
    """`test_metrics.json`: each evaluation set's figures under its name, in the order they were measured."""
    return json.dumps({name: asdict(m) for name, m in evaluations.items()}, indent=2, ensure_ascii=False) + "\n"


def parse_test_metrics(text: str) -> dict[str, ClassifierMetrics]:
    """`test_metrics.json` by evaluation set. A file from before there were several sets holds one set's
    figures, and that set is the SMS test split: it was the only one."""
    raw = json.loads(text)
    if "accuracy" in raw:
        return {SMS_TEST: ClassifierMetrics(**raw)}
    return {name: ClassifierMetrics(**figures) for name, figures in raw.items()}


# --- a classifier ready to use ------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    label: str
    probs: dict[str, float]


class TextClassifier:
    """A finetuned classifier ready for the app: predict, attention of the read token, figures per test set."""

    def __init__(self, model: GPTModel, tokenizer: Tokenizer, labels: list[str],
                 test_metrics: dict[str, ClassifierMetrics] | None = None, config: dict[str, Any] | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.test_metrics = dict(test_metrics or {})  # evaluation set name -> figures, the SMS test split first
        self.config = config or {}
        self.head_token = self.config.get("head_token", "last")  # folders from before the choice read the last

    def _ids(self, text: str) -> torch.Tensor:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the message is empty: type a message to classify")
        ids = self.tokenizer.encode(text)[: self.model.cfg.context_length]  # keep the start of a long one
        return torch.tensor([ids], dtype=torch.long, device=self.model.tok_emb.weight.device)

    @torch.no_grad()
    def predict(self, text: str) -> Prediction:
        logits = class_logits(self.model, self._ids(text), self.tokenizer.eot_id, self.head_token)[0]
        probs = torch.softmax(logits.float(), dim=-1).tolist()
        return Prediction(self.labels[int(logits.argmax())], dict(zip(self.labels, probs, strict=True)))

    @torch.no_grad()
    def token_attention(self, text: str) -> list[tuple[str, float]]:
        """Each token and how much the position(s) the head reads attend to it in the last layer (mean over
        heads): the last token's row, the first's, or the mean of every row."""
        ids = self._ids(text)
        rows = self.model.attention_maps(ids)[-1][0].mean(dim=0)  # (T, T), last layer, mean over heads
        weights = {"first": rows[0], "mean": rows.mean(dim=0)}.get(self.head_token, rows[-1]).tolist()
        pieces = [self.tokenizer.decode_bytes([i]).decode("utf-8", errors="replace") for i in ids[0].tolist()]
        return list(zip(pieces, weights, strict=True))


# --- files --------------------------------------------------------------------------------------

def weights_sha256(model: GPTModel) -> str:
    """A digest of a model's weights, for bases that are not a file of ours (OpenAI's GPT-2)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_base(model: str | Path, device: torch.device | str = "cpu", progress: bool = True
              ) -> tuple[Checkpoint, dict[str, str]]:
    """A base model by GPT-2 name or checkpoint folder, in float32, with what identifies its exact weights."""
    checkpoint = load_model(model, device=str(device), progress=progress)
    if str(model) in PRETRAINED:
        return checkpoint, {"pretrained": str(model), "weights_sha256": weights_sha256(checkpoint.model)}
    return checkpoint, {"checkpoint": str(model), "sha256": sha256_of(Path(model) / WEIGHTS_FILE)}


def save_classifier(model: GPTModel, directory: str | Path, base_ref: dict[str, str], labels: list[str],
                    trainable_blocks: int | None, dtype: str = "bfloat16", meta: dict[str, Any] | None = None,
                    head_token: str = "last", lora: LoRAConfig | None = None) -> Path:
    """Write only the tensors finetuning changed (with LoRA: the adapters and the head), plus how to find
    (and check) the base model."""
    storage = dtype_of(dtype)
    if head_token not in HEAD_TOKENS:
        raise ValueError(f"unknown head token {head_token!r}; choose one of {', '.join(HEAD_TOKENS)}")
    directory = Path(directory)
    state = {k: v.detach().to("cpu", storage).contiguous()
             for k, v in trained_state(model, trainable_blocks, lora is not None).items()}
    base_ref = dict(base_ref)
    if "checkpoint" in base_ref:  # relative, so the repository can move
        base_ref["checkpoint"] = os.path.relpath(Path(base_ref["checkpoint"]).resolve(), directory.resolve())
    with atomic_path(directory / CLASSIFIER_WEIGHTS) as tmp:
        save_file(state, str(tmp))
    config = {"labels": list(labels), "base": base_ref, "trainable_blocks": trainable_blocks, "dtype": dtype,
              "head_token": head_token, "lora": asdict(lora) if lora is not None else None, "meta": meta or {},
              CHECKSUMS: {CLASSIFIER_WEIGHTS: sha256_of(directory / CLASSIFIER_WEIGHTS)}}
    write_text_atomic(directory / CLASSIFIER_CONFIG, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return directory


def lora_of(config: dict[str, Any]) -> LoRAConfig | None:
    """The LoRA settings a classifier config records; None for a classifier without adapters."""
    lora = config.get("lora")
    return None if lora is None else config_from_dict(LoRAConfig, lora)


def read_classifier_config(directory: str | Path) -> dict[str, Any]:
    """A folder's `classifier.json`, checked for what loading needs (a ClassifierError says what is wrong)."""
    config_path = Path(directory) / CLASSIFIER_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory}: no classifier here ({CLASSIFIER_CONFIG} missing)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        labels, base_ref, trainable_blocks = config["labels"], config["base"], config["trainable_blocks"]
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise TypeError("labels must be a list of at least two names")
        if not (base_ref.get("sha256") or base_ref.get("weights_sha256")):
            raise KeyError("the base model's sha256")
        if not (base_ref.get("pretrained") or base_ref.get("checkpoint")):
            raise KeyError("where the base model is")
        if trainable_blocks is not None and not isinstance(trainable_blocks, int):
            raise TypeError("trainable_blocks must be a number or null")
        if config.setdefault("head_token", "last") not in HEAD_TOKENS:  # older folders read the last token
            raise ValueError(f"head_token must be one of {', '.join(HEAD_TOKENS)}")
        lora_of(config)
        checked_checksums(config, (CLASSIFIER_WEIGHTS,))
        config.setdefault("lora", None)
        config.setdefault("meta", {})
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError, ValueError) as err:
        raise ClassifierError(f"{config_path}: not a valid classifier config ({err})") from err
    return config


def load_classifier(directory: str | Path = SHIPPED_DIR, base: str | Path | None = None,
                    device: torch.device | str = "cpu", require_checksums: bool = False) -> TextClassifier:
    """Base model + stored delta (LoRA adapters are merged into the weights). Refuses a base whose weights
    differ from the one it was trained on, and stored tensors whose sha256 is not the recorded one (flipped
    bytes would load as a classifier that guesses). A folder from before that record loads with a warning, or
    is refused with `require_checksums` (an upload)."""
    directory = Path(directory)
    config = read_classifier_config(directory)
    checksums = config.get(CHECKSUMS)
    try:
        if checksums is None:
            unverified(directory, CLASSIFIER_CONFIG, require_checksums, ClassifierError)
        verify_checksum(directory, checksums, CLASSIFIER_WEIGHTS, CLASSIFIER_CONFIG)
    except CheckpointError as err:
        raise ClassifierError(str(err)) from err
    labels, base_ref, trainable_blocks, lora = config["labels"], config["base"], config["trainable_blocks"], \
        lora_of(config)
    expected = base_ref.get("sha256") or base_ref["weights_sha256"]
    if base is None:
        base = base_ref.get("pretrained") or directory / base_ref["checkpoint"]
    checkpoint, found = load_base(base, device)
    got = found.get("sha256") or found.get("weights_sha256")
    if got != expected:
        raise ClassifierError(f"{directory}: trained on a base model with sha256 {expected[:12]}…, but {base} "
                              f"has {got[:12]}…; finetune again on this base (python -m gpt finetune-classifier)")
    model = attach_classifier_head(checkpoint.model, len(labels))
    if lora is not None:
        apply_lora(model, lora)
    try:
        state = load_file(str(directory / CLASSIFIER_WEIGHTS))
    except (SafetensorError, OSError, ValueError) as err:
        raise ClassifierError(f"{directory / CLASSIFIER_WEIGHTS}: missing or unreadable ({err})") from err
    expected_state = trained_state(model, trainable_blocks, lora is not None)
    if set(state) != set(expected_state):
        odd = sorted(set(state) ^ set(expected_state))[0]
        raise ClassifierError(f"{directory / CLASSIFIER_WEIGHTS}: tensor {odd!r} missing or unexpected")
    for name, tensor in state.items():
        if tensor.shape != expected_state[name].shape:
            raise ClassifierError(f"{directory / CLASSIFIER_WEIGHTS}: tensor {name!r} has shape "
                                  f"{tuple(tensor.shape)}, expected {tuple(expected_state[name].shape)}")
    model.load_state_dict(state, strict=False)
    if lora is not None:
        merge_lora(model)  # inference costs what the base costs
    metrics_path = directory / METRICS_FILE
    try:
        metrics = parse_test_metrics(metrics_path.read_text()) if metrics_path.is_file() else {}
    except (json.JSONDecodeError, TypeError, AttributeError) as err:
        raise ClassifierError(f"{metrics_path}: not valid test figures ({err})") from err
    return TextClassifier(model.float().eval(), checkpoint.tokenizer, labels, metrics, config)
