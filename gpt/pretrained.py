"""OpenAI's pretrained GPT-2 (124M to 1558M), fetched from the Hugging Face Hub and mapped onto `GPTModel`;
and `load_model`, which takes a GPT-2 name, one of our checkpoint folders, or an open model of the Llama
layout (`gpt.open_models`: a named one, a Hub repo id or a transformers folder).

The Hub's `model.safetensors` files use transformers' names (`wte`, `h.{i}.attn.c_attn`, `ln_f` ...)
and its Conv1D layers store their weights as (in, out) where our nn.Linear keeps (out, in), so
every matrix is transposed on the way in. The fused `c_attn` is query|key|value with the heads
side by side, exactly our `att.qkv`, so it needs no split. huggingface_hub gives us the cache,
the download (a dropped transfer resumes), offline mode (HF_HUB_OFFLINE=1) and the progress bar;
no TensorFlow, no other download host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from huggingface_hub.utils import httpx, silent_tqdm  # httpx: the HTTP client the hub uses (httpx2)

from gpt.checkpoint import WEIGHTS_FILE, Checkpoint, load_checkpoint, load_state_dict, load_weights_into
from gpt.config import PRESETS, GPTConfig
from gpt.kernels import accelerate
from gpt.memory import require_disk, require_memory
from gpt.model import GPTModel, empty_model
from gpt.open_models import (
    CATALOGUE,
    WeightsUnavailableError,
    hub_cache_folder,
    hub_reachable,
    is_hub_folder,
    is_repo_id,
    load_open_model,
)
from gpt.precision import name_of
from gpt.tokenizer import load_tokenizer


@dataclass(frozen=True)
class PretrainedModel:
    """Where a GPT-2 size lives on the Hub, and the architecture its weights fit."""

    repo_id: str
    config: GPTConfig


PRETRAINED: dict[str, PretrainedModel] = {
    "gpt2-small": PretrainedModel("openai-community/gpt2", PRESETS["gpt2-small"]),
    "gpt2-medium": PretrainedModel("openai-community/gpt2-medium", PRESETS["gpt2-medium"]),
    "gpt2-large": PretrainedModel("openai-community/gpt2-large", PRESETS["gpt2-large"]),
    "gpt2-xl": PretrainedModel("openai-community/gpt2-xl", PRESETS["gpt2-xl"]),
}

# transformers' GPT-2 names -> ours. Names not listed pass through unchanged, so a stray tensor is
# reported by `load_weights_into` under its own name.
_TOP_LEVEL = {
    "wte.weight": "tok_emb.weight",
    "wpe.weight": "pos_emb.weight",
    "ln_f.weight": "final_norm.weight",
    "ln_f.bias": "final_norm.bias",
    "lm_head.weight": "out_head.weight",
}
_IN_BLOCK = {"ln_1": "norm1", "attn.c_attn": "att.qkv", "attn.c_proj": "att.out_proj",
             "ln_2": "norm2", "mlp.c_fc": "ff.fc", "mlp.c_proj": "ff.proj"}
_CONV1D = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}
_BLOCK_TENSOR = re.compile(r"h\.(\d+)\.(.+)\.(weight|bias)")
# The causal masks older transformers saved as buffers (a 1024x1024 matrix per layer in the Hub
# files): constants our attention builds itself, not weights.
_MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")
_HUB_PREFIXES = ("transformer.", "wte.", "wpe.", "h.", "ln_f.")


def pretrained(name: str) -> PretrainedModel:
    try:
        return PRETRAINED[name]
    except KeyError:
        raise ValueError(f"unknown pretrained model {name!r}; choose one of {', '.join(PRETRAINED)}") from None


def memory_needed(name: str, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of memory inference needs (weights + a full-context KV cache), known before any download."""
    return pretrained(name).config.memory_bytes(name_of(dtype))


# What `load_model` takes, for the command lines' --model help
MODEL_NAMES_HELP = (f"a checkpoint folder, one of {', '.join(PRETRAINED)} (OpenAI's weights), one of "
                    f"{', '.join(CATALOGUE)} (open models from the Hugging Face Hub), a Hub repo id (org/name) or a "
                    f"folder in transformers' layout")


def describe(name: str, dtype: torch.dtype = torch.float32) -> str:
    """One line for the user before loading: size, and the memory it will take (and the download, for an open
    model)."""
    if name in CATALOGUE:
        return CATALOGUE[name].describe(dtype)
    cfg = pretrained(name).config
    return (f"{name}: {cfg.n_params() / 1e6:.0f}M parameters, needs at least "
            f"{memory_needed(name, dtype) / 1e9:.1f} GB of memory in {name_of(dtype)}")


def cache_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where huggingface_hub keeps this model's files (HF_HUB_CACHE / HF_HOME decide the root)."""
    return hub_cache_folder(pretrained(name).repo_id, cache_dir)


def not_cached(name: str, cache_dir: str | Path | None = None) -> WeightsUnavailableError:
    """The one-line error for a GPT-2 size neither cached nor downloadable, with what to do."""
    spec = pretrained(name)
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
    return WeightsUnavailableError(
        f"{name}: {spec.repo_id}/{WEIGHTS_FILE} is not in the Hugging Face cache ({cache_folder(name, cache_dir)}) "
        f"and {why}; on a machine with internet run `hf download {spec.repo_id} {WEIGHTS_FILE}` and copy the "
        f"cache here, or pass --weights PATH to a local copy of that file")


def fetch(name: str, progress: bool = True, cache_dir: str | Path | None = None) -> Path:
    """The local path of the model's Hub file: from the cache (without asking the Hub), or downloaded into it
    (resumable) when the Hub answers (`hub_reachable`).

    A download first checks the disk: the file is float32, four bytes a parameter.
    """
    spec = pretrained(name)
    cached = try_to_load_from_cache(spec.repo_id, WEIGHTS_FILE, cache_dir=cache_dir)
    if isinstance(cached, str):
        return Path(cached)
    require_disk(4 * spec.config.n_params(), cache_folder(name, cache_dir), f"downloading {name}")
    if not hub_reachable():
        raise not_cached(name, cache_dir)
    try:
        return Path(hf_hub_download(spec.repo_id, WEIGHTS_FILE, cache_dir=cache_dir,
                                    tqdm_class=None if progress else silent_tqdm))
    except LocalEntryNotFoundError:
        raise not_cached(name, cache_dir) from None
    except (HfHubHTTPError, httpx.HTTPError, OSError) as err:  # the Hub answered with an error, or the transfer broke
        reason = " ".join(str(err).split())  # hub messages span several lines; ours is one
        raise WeightsUnavailableError(
            f"{name}: could not download {spec.repo_id}/{WEIGHTS_FILE} ({reason}); "
            f"try again (the download resumes), or pass --weights PATH to a local copy of that file"
        ) from None


def is_hub_layout(state: dict[str, torch.Tensor]) -> bool:
    """True for transformers' GPT-2 names (a Hub file or `save_pretrained`), False for ours."""
    return any(name.startswith(_HUB_PREFIXES) for name in state)


def hub_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename transformers' GPT-2 tensors to ours and transpose the Conv1D weights to (out, in)."""
    ours: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        name = name.removeprefix("transformer.")  # GPT2LMHeadModel nests the body; GPT2Model does not
        if _MASK_BUFFER.fullmatch(name):
            continue
        block = _BLOCK_TENSOR.fullmatch(name)
        if name in _TOP_LEVEL:
            name = _TOP_LEVEL[name]
        elif block and block[2] in _IN_BLOCK:
            layer, module, kind = block.groups()
            if module in _CONV1D and kind == "weight":
                tensor = tensor.t()
            name = f"trf_blocks.{layer}.{_IN_BLOCK[module]}.{kind}"
        ours[name] = tensor
    return ours


def load_gpt2_file(path: str | Path, cfg: GPTConfig, dtype: torch.dtype = torch.float32) -> GPTModel:
    """Our model (with its fast modules, `gpt.kernels.accelerate`) from a local safetensors file in the Hub's
    layout or ours; mismatches name the tensor."""
    name_of(dtype)  # refuse an unsupported dtype before reading gigabytes
    state = load_state_dict(path)
    source = str(path)
    if is_hub_layout(state):
        state = hub_to_ours(state)
        source += " (GPT-2 Hub layout, names and shapes mapped to ours)"
    model = empty_model(cfg, dtype)
    load_weights_into(model, state, source)
    return accelerate(model).eval()


def load_pretrained(name: str, dtype: torch.dtype = torch.float32, progress: bool = True,
                    weights: str | Path | None = None, cache_dir: str | Path | None = None) -> Checkpoint:
    """OpenAI's GPT-2 `name` (gpt2-small ... gpt2-xl) with its tokenizer, from the Hub or a local file.

    `weights` skips the Hub for a local safetensors file (or a folder holding `model.safetensors`);
    `cache_dir` overrides the Hub cache root.
    Raises WeightsUnavailableError when offline without a cached copy.
    """
    spec = pretrained(name)
    name_of(dtype)  # before a download, not after
    require_memory(memory_needed(name, dtype), f"{name} in {name_of(dtype)}")
    if weights is None:
        path = fetch(name, progress, cache_dir)
    else:
        path = Path(weights)
        if path.is_dir():  # a `save_pretrained` folder, or one of our checkpoints
            path = path / WEIGHTS_FILE
    model = load_gpt2_file(path, spec.config, dtype)
    meta = {"pretrained": name, "repo_id": spec.repo_id, "weights": str(path)}
    return Checkpoint(model, load_tokenizer("gpt2"), meta)


def load_model(name_or_path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu",
               progress: bool = True, weights: str | Path | None = None, context_length: int | None = None,
               cache_dir: str | Path | None = None, max_params: int | None = None) -> Checkpoint:
    """The one way in to every model: a GPT-2 size (from the Hub cache, a download, or the local file `weights`),
    one of our checkpoint folders, or an open model of the Llama layout (`gpt.open_models`): a catalogue name
    (qwen3-0.6b ...), a Hub repo id (org/name) or a local folder in transformers' layout.

    Ours and transformers' folders both hold a config.json: ours has a "model" key, theirs a "model_type".
    `context_length` (open models only) sets the context the KV cache is allocated for; `cache_dir` overrides
    the Hub cache root; `max_params` (open models only) refuses a larger one before its weights are fetched.
    """
    name = str(name_or_path)
    if name in PRETRAINED:
        checkpoint = load_pretrained(name, dtype=dtype, progress=progress, weights=weights, cache_dir=cache_dir)
    elif weights is not None:
        raise ValueError(f"a weights file goes with a GPT-2 size ({', '.join(PRETRAINED)}), not with {name}")
    elif Path(name).is_dir() and not is_hub_folder(name):
        return load_checkpoint(name, dtype, device)
    elif name in CATALOGUE or Path(name).is_dir() or is_repo_id(name):
        checkpoint = load_open_model(name, dtype, context_length, cache_dir, progress, max_params)
    else:
        raise ValueError(f"model {name!r} is none of {', '.join(PRETRAINED)}, {', '.join(CATALOGUE)}, a Hub repo id "
                         f"(org/name) or a model folder")
    checkpoint.model.to(device)
    return checkpoint
