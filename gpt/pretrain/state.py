"""What a pretraining run keeps on disk besides its model: the resumable state, the log and the loss figure.

`train_state.safetensors` holds the weights, AdamW's moments, every process's RNG state and the
run's settings (JSON metadata: no pickle), with a sha256 of all of it: flipped bytes in a tensor
still parse, and would resume into NaN losses. The log is written before the state it belongs to,
so a kill between the two leaves a log that runs ahead of the state, and resuming drops those rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from gpt.files import atomic_path, write_text_atomic
from gpt.model import GPTModel

STATE_FILE = "train_state.safetensors"
STATE_META, STATE_SHA256 = "train_state", "sha256"  # the file's metadata keys: the settings, and the digest
LOG_FILE = "log.csv"
INTEGER_FIELDS = ("step", "tokens_seen")  # counts: a resumed log writes them back as counts, not as 100.0
LOG_FIELDS = ("step", "tokens_seen", "train_loss", "val_loss", "val_perplexity", "lr", "tokens_per_s", "elapsed_s")


def save_train_state(path: Path, model: GPTModel, optimizer: torch.optim.Optimizer, config: dict[str, Any],
                     step: int, tokens_seen: int, elapsed_s: float, rng_states: list[torch.Tensor],
                     data_sha256: str = "") -> None:
    """One safetensors file with weights, AdamW moments and RNG states; JSON metadata for the rest.

    `data_sha256` identifies the text trained on: a resume on other text would mix two runs.
    """
    tensors, param_groups = training_tensors(model, optimizer)
    for rank, rng in enumerate(rng_states):
        tensors[f"rng.cpu.{rank}"] = rng.cpu()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state().cpu()
    meta = {"config": config, "step": step, "tokens_seen": tokens_seen, "elapsed_s": elapsed_s,
            "data_sha256": data_sha256, "param_groups": param_groups,
            "scheduler": {"kind": "warmup+cosine", "step": step}}
    text = json.dumps(meta)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_META: text, STATE_SHA256: state_sha256(tensors, text)})


def training_tensors(model: GPTModel, optimizer: torch.optim.Optimizer
                     ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """What a resumable state keeps of a training, on the CPU: the weights (`model.*`, a tied head once) and the
    optimizer's moments (`optim.<param>.<name>`); and the optimizer's param groups, which go in the JSON."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
               if not (model.cfg.tie_weights and k == "out_head.weight")}
    opt_state = optimizer.state_dict()
    for idx, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
    return tensors, opt_state["param_groups"]


def restore_training(tensors: dict[str, torch.Tensor], param_groups: list[dict[str, Any]], model: GPTModel,
                     optimizer: torch.optim.Optimizer) -> None:
    """Put `training_tensors`' weights and moments back into `model` and `optimizer`, in place."""
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    if model.cfg.tie_weights:
        weights["out_head.weight"] = weights["tok_emb.weight"]
    model.load_state_dict(weights)
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            moments.setdefault(int(idx), {})[key] = v  # load_state_dict moves it to its parameter's device
    optimizer.load_state_dict({"state": moments, "param_groups": param_groups})


def state_sha256(tensors: dict[str, torch.Tensor], meta: str) -> str:
    """A digest of every tensor (name, dtype, shape, raw bytes, in name order) and of the settings' JSON."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # raw bytes, bfloat16 included
    digest.update(meta.encode())
    return digest.hexdigest()


def load_train_state(path: Path, model: GPTModel, optimizer: torch.optim.Optimizer
                     ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore weights and optimizer in place; return the metadata and the RNG tensors.

    A damaged file (cut short, overwritten, from another model) is one clear `ValueError`.
    """
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata()
        meta = json.loads(header[STATE_META])
        tensors = load_file(str(path))
        if STATE_SHA256 in header and state_sha256(tensors, header[STATE_META]) != header[STATE_SHA256]:
            raise ValueError("its contents do not match the sha256 saved with them")  # states before it have none
        restore_training(tensors, meta["param_groups"], model, optimizer)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:200]
        raise ValueError(f"{path.name} in {path.parent.name} is damaged and cannot be resumed ({reason}); "
                         "start the run again, or resume from a copy of the folder") from None
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    return meta, rng


def read_log(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: int(float(v)) if k in INTEGER_FIELDS else float(v) for k, v in row.items() if v != ""}
                for row in csv.DictReader(f)]


def write_log(path: Path, rows: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})


def loss_figure(rows: list[dict[str, float]], title: str = "Pretraining loss"):
    """Train and validation loss against tokens seen (what the app's training tab shows)."""
    import plotly.graph_objects as go

    train = [r for r in rows if "train_loss" in r]
    val = [r for r in rows if "val_loss" in r]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[r["tokens_seen"] for r in train], y=[r["train_loss"] for r in train],
                             mode="lines", name="train"))
    fig.add_trace(go.Scatter(x=[r["tokens_seen"] for r in val], y=[r["val_loss"] for r in val],
                             mode="lines+markers", name="validation (held out)"))
    fig.update_layout(title=title, xaxis_title="tokens seen", yaxis_title="cross-entropy loss (nats)",
                      template="plotly_white")
    return fig


def write_figure(out_dir: Path, rows: list[dict[str, float]]) -> None:
    fig = loss_figure(rows)
    with atomic_path(out_dir / "loss.html") as tmp:
        fig.write_html(str(tmp), include_plotlyjs="cdn")
    write_text_atomic(out_dir / "loss.json", fig.to_json())
