"""Model files: `model.safetensors` (weights) + `config.json` (architecture, tokenizer, metadata).

No pickle anywhere: a checkpoint someone hands us can only ever be data. The config records the
sha256 of the weights and tokenizer files, and loading checks them: a flipped byte in the weights,
a tokenizer cut short or a config from another model is named, not loaded silently. Every file the
loader reads must have its entry; a folder with no checksums at all (written before them, or with
them removed) loads with a warning, or is refused where it comes from a stranger
(`require_checksums`). Before the model is built, its size is checked against the free memory, so an
absurd config is refused instead of allocated.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gpt.config import GPTConfig
from gpt.files import atomic_path, remove_stale_temporaries, sha256_of, write_text_atomic
from gpt.hub_tokenizer import (
    CHAT_TEMPLATE_FILE,
    GENERATION_CONFIG,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    HubTokenizer,
    load_hub_tokenizer,
)
from gpt.kernels import accelerate
from gpt.memory import require_memory
from gpt.model import GPTModel
from gpt.positions import position_tables
from gpt.quantize import QuantizedLinear, is_quantized, quantized_skeleton
from gpt.tokenizer import PRETOKENIZERS, Tokenizer, load_tokenizer, write_ranks

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.tiktoken"
CARD_FILE = "MODEL_CARD.md"  # how the model was made: data, command, time, figures; beside any saved model
CHECKSUMS = "sha256"  # config key: file name -> sha256 of the files saved beside the config
PRETOKENIZER = "pretokenizer"  # config key, absent for GPT-2's pattern: "digits" splits numbers into digits
QUANTIZATION = "quantization"  # config key of an int8 checkpoint: {"scheme": "int8", "group_size": null or g}
# A Hub model's tokenizer (config "tokenizer": "tokenizer.json") is saved as the Hub has it: these files, the
# EOS ids in generation_config.json, its name under TOKENIZER_NAME (the folder's name is the run's, not the model's).
HUB_TOKENIZER_FILES = (TOKENIZER_JSON, TOKENIZER_CONFIG, CHAT_TEMPLATE_FILE, GENERATION_CONFIG)
TOKENIZER_NAME = "tokenizer_name"
CHECKPOINT_FILES = (WEIGHTS_FILE, TOKENIZER_FILE, *HUB_TOKENIZER_FILES)  # what a config's sha256 map may name
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or does not match its config."""


class UnverifiedWarning(UserWarning):
    """A model folder without checksums: it loads, but nothing says its files are the ones saved."""


@dataclass
class Checkpoint:
    model: GPTModel
    tokenizer: Tokenizer | HubTokenizer
    meta: dict[str, Any] = field(default_factory=dict)  # free-form: training figures, provenance


def save_checkpoint(model: GPTModel, directory: str | Path, tokenizer: Tokenizer | HubTokenizer,
                    meta: dict[str, Any] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write the model (optionally cast, e.g. to bfloat16 to halve the file), config and tokenizer."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if isinstance(tokenizer, HubTokenizer):
        tokenizer_ref, tokenizer_files = TOKENIZER_JSON, save_hub_tokenizer(tokenizer, directory)
        extra[TOKENIZER_NAME] = tokenizer.name
    elif tokenizer.name == "gpt2":
        tokenizer_ref, tokenizer_files = "gpt2", []
    else:
        tokenizer_ref, tokenizer_files = TOKENIZER_FILE, [TOKENIZER_FILE]
        write_ranks(tokenizer.ranks, directory / TOKENIZER_FILE)
    if not isinstance(tokenizer, HubTokenizer) and tokenizer.pretokenizer != "gpt2":
        extra[PRETOKENIZER] = tokenizer.pretokenizer
    remove_stale_temporaries(directory)  # an earlier save killed mid-write left its half file
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state_for_saving(model, dtype), str(tmp))
    files = [WEIGHTS_FILE, *tokenizer_files]
    config = {"model": model.cfg.to_dict(), "tokenizer": tokenizer_ref, "meta": meta or {},
              CHECKSUMS: {name: sha256_of(directory / name) for name in files}, **extra}
    if is_quantized(model):
        config[QUANTIZATION] = quantization_of(model)
    write_text_atomic(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return directory


def save_hub_tokenizer(tokenizer: HubTokenizer, directory: Path) -> list[str]:
    """Write a Hub tokenizer's files into the checkpoint (the source folder may be a cache that goes away);
    the names of the files written."""
    write_text_atomic(directory / TOKENIZER_JSON, tokenizer.tokenizer_json)
    write_text_atomic(directory / TOKENIZER_CONFIG, json.dumps(tokenizer.tokenizer_config, indent=2) + "\n")
    write_text_atomic(directory / GENERATION_CONFIG, json.dumps({"eos_token_id": list(tokenizer.stop_ids)}) + "\n")
    written = [TOKENIZER_JSON, TOKENIZER_CONFIG, GENERATION_CONFIG]
    template = tokenizer.chat_template
    if template is not None and template != tokenizer.tokenizer_config.get("chat_template"):
        write_text_atomic(directory / CHAT_TEMPLATE_FILE, template)
        written.append(CHAT_TEMPLATE_FILE)
    else:  # a template file left by an earlier save would win over tokenizer_config.json's
        (directory / CHAT_TEMPLATE_FILE).unlink(missing_ok=True)
    return written


def state_for_saving(model: GPTModel, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The state dict as safetensors wants it: contiguous, a tied head stored once (as tok_emb), int8
    weights kept int8 whatever `dtype` the float tensors are cast to."""
    state = model.state_dict()
    if model.cfg.tie_weights:
        state.pop("out_head.weight", None)
    return {k: (v if dtype is None or not v.is_floating_point() else v.to(dtype)).contiguous()
            for k, v in state.items()}


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: config file missing")
    try:
        config = json.loads(path.read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        config["model"] = GPTConfig.from_dict(config["model"])
        checked_checksums(config, CHECKPOINT_FILES)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a valid model config ({err})") from err
    return config


def checked_checksums(config: dict[str, Any], names: tuple[str, ...]) -> dict[str, str] | None:
    """The config's sha256 map (None where it has none), refused unless it maps some of `names` to sha256 digests.

    A malformed map must not read as "nothing to check": `"sha256": "abc"` would switch every check off.
    """
    if CHECKSUMS not in config:
        return None
    checksums = config[CHECKSUMS]
    if not isinstance(checksums, dict):
        raise ValueError(f"{CHECKSUMS} must map file names to sha256 digests, got {type(checksums).__name__}")
    for name, digest in checksums.items():
        if name not in names:
            raise ValueError(f"{CHECKSUMS} names {str(name)[:60]!r}, which is none of this folder's files "
                             f"({', '.join(names)})")
        if not (isinstance(digest, str) and SHA256_HEX.fullmatch(digest)):
            raise ValueError(f"{CHECKSUMS} of {name} must be 64 lowercase hex digits, got {str(digest)[:70]!r}")
    return checksums


def unverified(directory: Path, recorded_in: str, require_checksums: bool, error: type[ValueError]) -> None:
    """A folder whose config records no checksums: refused where it comes from a stranger, else a warning."""
    what = f"{directory.name}/{recorded_in} records no sha256 checksums, so its files cannot be verified"
    if require_checksums:
        raise error(f"{what}: a model from elsewhere must carry them (export it again where it was trained)")
    warnings.warn(f"{what} (a folder from before checksums, or edited by hand); loading it anyway",
                  UnverifiedWarning, stacklevel=3)


def verify_checksum(directory: Path, checksums: dict[str, str] | None, name: str,
                    recorded_in: str = CONFIG_FILE) -> None:
    """Compare a file the loader reads with the sha256 its config records; with a map, every such file needs one.

    `checksums` None is a folder without them (`unverified` said so). A missing file gets its own message from
    the loader.
    """
    if checksums is None or not (directory / name).is_file():
        return
    if name not in checksums:
        raise CheckpointError(f"{directory.name}/{name}: {recorded_in} records no sha256 for this file, so it cannot "
                              f"be verified; save or download the model again")
    if sha256_of(directory / name) != checksums[name]:
        raise CheckpointError(f"{directory.name}/{name}: the file is damaged or was changed after saving "
                              f"(its sha256 is not the one {recorded_in} records); save or download the model again")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file, maybe truncated ({err})") from err


def load_weights_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Copy `state` into `model`, naming the first tensor that is missing, unexpected or misshapen."""
    expected = model.state_dict()
    # A tied output head is saved once (as the embedding); accept files with or without the copy.
    if getattr(getattr(model, "cfg", None), "tie_weights", False):
        state = {k: v for k, v in state.items() if k != "out_head.weight"}
        expected = {k: v for k, v in expected.items() if k != "out_head.weight"}
    for name, tensor in expected.items():
        if name not in state:
            raise CheckpointError(f"{source}: tensor {name!r} missing (expected shape {tuple(tensor.shape)})")
        if state[name].shape != tensor.shape:
            raise CheckpointError(f"{source}: tensor {name!r} has shape {tuple(state[name].shape)}, "
                                  f"expected {tuple(tensor.shape)}")
        # Floats load into any float dtype (cast on the way in); int8 weights must be int8 exactly, not wrapped.
        if state[name].dtype != tensor.dtype and not (state[name].is_floating_point() and tensor.is_floating_point()):
            raise CheckpointError(f"{source}: tensor {name!r} is {state[name].dtype}, expected {tensor.dtype}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor {extra[0]!r} (not part of this model)")
    with torch.no_grad():
        for name, tensor in state.items():
            expected[name].copy_(tensor)


def quantization_of(model: GPTModel) -> dict[str, Any]:
    sizes = {m.group_size for m in model.modules() if isinstance(m, QuantizedLinear)}
    if len(sizes) != 1:
        raise ValueError("every int8 layer of a saved model must share one group size")
    return {"scheme": "int8", "group_size": sizes.pop()}


def int8_skeleton(cfg: GPTConfig, quantization: Any, source: Path) -> GPTModel:
    """The model with empty int8 layers, built on the meta device: no float copy of the weights is ever made."""
    group_size = quantization.get("group_size") if isinstance(quantization, dict) else None
    if (not isinstance(quantization, dict) or quantization.get("scheme") != "int8"
            or not (group_size is None or isinstance(group_size, int) and group_size > 0)):
        raise CheckpointError(f"{source}: quantization must be {{\"scheme\": \"int8\", \"group_size\": null or "
                              f"a positive integer}}, got {quantization!r}")
    try:
        with torch.device("meta"):
            model = quantized_skeleton(GPTModel(cfg), group_size)
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from err
    model = model.to_empty(device="cpu")
    for name, table in position_tables(cfg).items():  # constants, not saved: rebuilt as GPTModel builds them
        setattr(model, name, table)
    return model


def _hub_tokenizer_of(directory: Path, config: dict[str, Any]) -> HubTokenizer:
    """The Hub tokenizer saved beside the weights, each of its files checked against the config's sha256."""
    checksums = config.get(CHECKSUMS)
    for name in HUB_TOKENIZER_FILES:
        if checksums is not None and name in checksums and not (directory / name).is_file():
            raise CheckpointError(f"{directory / name}: tokenizer file missing ({CONFIG_FILE} records it)")
        verify_checksum(directory, checksums, name)
    name = config.get(TOKENIZER_NAME)
    try:
        return load_hub_tokenizer(directory, name if isinstance(name, str) and name else None)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{directory / TOKENIZER_JSON}: not a readable tokenizer ({err})") from err


def _tokenizer_of(directory: Path, config: dict[str, Any]) -> Tokenizer | HubTokenizer:
    """GPT-2's BPE, the folder's own ranks file or its Hub tokenizer.json: a config someone hands us cannot
    point at other files."""
    ref = config.get("tokenizer", "gpt2")
    if ref not in ("gpt2", TOKENIZER_FILE, TOKENIZER_JSON):
        raise CheckpointError(f"{directory / CONFIG_FILE}: tokenizer must be 'gpt2' or {TOKENIZER_FILE!r} "
                              f"(or {TOKENIZER_JSON!r} for a Hub model's), got {ref!r}")
    if ref == TOKENIZER_JSON:
        return _hub_tokenizer_of(directory, config)
    pretokenizer = config.get(PRETOKENIZER, "gpt2")
    if pretokenizer not in PRETOKENIZERS:
        raise CheckpointError(f"{directory / CONFIG_FILE}: {PRETOKENIZER} must be one of "
                              f"{', '.join(PRETOKENIZERS)}, got {pretokenizer!r}")
    if ref == "gpt2":
        return load_tokenizer("gpt2", pretokenizer)
    verify_checksum(directory, config.get(CHECKSUMS), TOKENIZER_FILE)
    try:
        return load_tokenizer(str(directory / TOKENIZER_FILE), pretokenizer)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{directory / TOKENIZER_FILE}: not a readable tokenizer ({err})") from err


def _verified_config(directory: Path, require_checksums: bool) -> dict[str, Any]:
    """The folder's config, after a warning (or, from a stranger, a refusal) if it records no checksums."""
    config = read_config(directory)
    if config.get(CHECKSUMS) is None:
        unverified(directory, CONFIG_FILE, require_checksums, CheckpointError)
    return config


def load_checkpoint_tokenizer(directory: str | Path, require_checksums: bool = False) -> Tokenizer | HubTokenizer:
    """A checkpoint's tokenizer without reading its weights (the Tokenizer tab needs only this)."""
    return _tokenizer_of(Path(directory), _verified_config(Path(directory), require_checksums))


def load_checkpoint(directory: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu",
                    require_checksums: bool = False) -> Checkpoint:
    """The saved model with its fast modules swapped in (`gpt.kernels.accelerate`), its tokenizer and metadata.

    `require_checksums`: refuse a folder whose config records no checksums (an upload: anyone can remove them)
    instead of loading it with an `UnverifiedWarning`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint folder not found")
    config = _verified_config(directory, require_checksums)
    tokenizer = _tokenizer_of(directory, config)
    cfg: GPTConfig = config["model"]
    if tokenizer.n_vocab > cfg.vocab_size:
        raise CheckpointError(f"{directory}: tokenizer has {tokenizer.n_vocab} tokens, model only {cfg.vocab_size}")
    quantization = config.get(QUANTIZATION)
    bytes_per_weight = 1 if quantization else 4
    require_memory(cfg.n_elements() * bytes_per_weight,
                   f"the model in {directory.name} ({cfg.n_params() / 1e6:,.0f}M parameters)")
    verify_checksum(directory, config.get(CHECKSUMS), WEIGHTS_FILE)
    model = GPTModel(cfg) if quantization is None else int8_skeleton(cfg, quantization, directory / CONFIG_FILE)
    load_weights_into(model, load_state_dict(directory / WEIGHTS_FILE), directory / WEIGHTS_FILE)
    accelerate(model).to(device=device, dtype=dtype).eval()
    return Checkpoint(model, tokenizer, config.get("meta", {}))

