"""A GRPO run's resumable state: weights, AdamW's moments and the run's record, in one checked file.

The pattern of `gpt.pretrain.state`: safetensors (no pickle) with the settings as JSON metadata and a
sha256 over every tensor and the metadata (`state_sha256`), written atomically, so a kill mid-write
leaves the previous state and a flipped byte is refused rather than resumed into NaN. No RNG state is
kept: a step's problems and samples follow from the seed and the step number alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from gpt.files import atomic_path
from gpt.model import GPTModel
from gpt.pretrain.state import STATE_SHA256, restore_training, state_sha256, training_tensors

STATE_FILE = "rl_state.safetensors"
STATE_META = "rl_state"


def weights_sha256(model: GPTModel) -> str:
    """A digest of the model's weights (name, dtype, shape, bytes): which starting model a state belongs to."""
    return state_sha256(dict(model.state_dict()), "")


def save_rl_state(path: Path, model: GPTModel, optimizer: torch.optim.Optimizer, record: dict[str, Any]) -> None:
    """Weights, AdamW's moments and `record` (config, step, history...) as one file."""
    tensors, param_groups = training_tensors(model, optimizer)
    text = json.dumps({**record, "param_groups": param_groups})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_META: text, STATE_SHA256: state_sha256(tensors, text)})


def load_rl_state(path: Path, model: GPTModel, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights and optimizer in place and return the record; a missing file is FileNotFoundError, a
    damaged one (cut short, edited, from another model) one ValueError."""
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata()
        tensors = load_file(str(path))
        if state_sha256(tensors, header[STATE_META]) != header[STATE_SHA256]:
            raise ValueError("its contents do not match the sha256 saved with them")
        record = json.loads(header[STATE_META])
        restore_training(tensors, record.pop("param_groups"), model, optimizer)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:200]
        raise ValueError(f"{path.name} in {path.parent.name} is damaged and cannot be resumed ({reason}); "
                         "start the run again") from None
    return record
