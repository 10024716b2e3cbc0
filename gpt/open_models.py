"""Today's open models of the Llama layout (Qwen3, SmolLM2, Llama 3, Qwen2, Mistral), from the Hugging Face Hub
or a local folder, loaded into our `GPTModel`.

The Llama layout is GPT-2's decoder with the switches of `gpt.config` on: token embedding, then per
block RMSNorm -> attention (q_proj, k_proj, v_proj, o_proj; rotary positions, whose pairs are the two
halves of a head; fewer key/value heads than query heads) -> residual, RMSNorm -> SwiGLU MLP (gate_proj,
up_proj, down_proj) -> residual; a final RMSNorm and `lm_head`, often tied to the embedding. Qwen3
adds an RMSNorm on each head's queries and keys and heads wider than hidden_size / heads; Qwen2 has
biases on q, k and v; Llama 3.1 stretches its rotary frequencies (`rope_type: llama3`).

Ours keeps q|k|v in one fused `att.qkv` and gate|up in one `ff.fc`, as GPT-2's `c_attn` fuses q|k|v:
one matrix product instead of three, and the fused layers are the ones LoRA, int8 and the fast kernels
act on. So every Hub tensor goes into its rows of a fused tensor: `destination` is the one place that
says where. The weights are safetensors only, read shard by shard and tensor by tensor straight into
the model's preallocated tensors: never unpickled, and at no time a second copy of the model in memory.

The model's shape is known from config.json alone, so memory and disk are checked before anything
large is downloaded or allocated; the catalogue's named models know theirs before any download.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import get_session, httpx  # the HTTP client the hub uses (httpx2)
from huggingface_hub.utils import tqdm as hub_tqdm
from safetensors import SafetensorError, safe_open

from gpt.checkpoint import Checkpoint, CheckpointError
from gpt.config import GPTConfig
from gpt.hub_tokenizer import load_hub_tokenizer
from gpt.kernels import accelerate
from gpt.memory import require_disk, require_memory
from gpt.model import GPTModel, empty_model
from gpt.precision import name_of

CONFIG_FILE = "config.json"
SHARD_INDEX = "model.safetensors.index.json"
WEIGHT_FILES = "model*.safetensors"  # transformers' names; Mistral's repos also hold a consolidated.safetensors
# What a download fetches: the model's config, its weights, its tokenizer and chat template; nothing pickled.
HUB_FILES = [CONFIG_FILE, "generation_config.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "chat_template.jinja", WEIGHT_FILES, SHARD_INDEX,
             "README.md"]  # the model card: its licence and description, for the app's card view
PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt")  # weights as pickles: loading one can run any code it holds
DEFAULT_CONTEXT = 2048  # the KV cache is allocated for the whole context: Qwen3's 40,960 would take gigabytes
FAMILIES = {"llama": "Llama", "qwen3": "Qwen3", "qwen2": "Qwen2", "mistral": "Mistral"}  # model_type -> family
# What transformers assumes when config.json leaves a field out, per model_type.
MAX_POSITIONS = {"llama": 2048, "qwen3": 32768, "qwen2": 32768, "mistral": 131072}
STORED_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  # config.json's torch_dtype: the files' bytes per weight
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class WeightsUnavailableError(FileNotFoundError):
    """The weights are neither in the local cache nor downloadable (offline, or the Hub unreachable)."""


class ModelNotFoundError(WeightsUnavailableError):
    """No such repository on the Hub (or a private one this machine is not logged in to)."""


class GatedModelError(WeightsUnavailableError):
    """A repository whose licence must be accepted on the Hub, with a token, before it can be downloaded."""


class IncompleteModelError(WeightsUnavailableError):
    """A folder or cached download that lacks a file the model needs (a shard, the config)."""


class UnsupportedModelError(ValueError):
    """A checkpoint whose architecture, or one of whose settings, `GPTModel` cannot represent."""


# -- config.json -> GPTConfig --------------------------------------------------------------------------

def _rope(hub: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, the scaling's settings or None). transformers 5 writes both in `rope_parameters`; the
    Hub's older files have `rope_theta` and `rope_scaling` (whose type was once called `type`)."""
    params = hub.get("rope_parameters") if isinstance(hub.get("rope_parameters"), dict) else {}
    theta = float(params.get("rope_theta", hub.get("rope_theta", 10000.0)))
    scaling = hub.get("rope_scaling") if isinstance(hub.get("rope_scaling"), dict) else params
    kind = scaling.get("rope_type", scaling.get("type", "default")) if scaling else "default"
    return theta, None if kind == "default" else {**scaling, "rope_type": kind}


def _biases(hub: dict[str, Any]) -> tuple[bool, bool] | None:
    """(qkv_bias, bias) of the model_type, None where its biases do not fit our two switches.

    Qwen2 has biases on q, k and v only. Elsewhere `attention_bias` puts one on o_proj too, and our `bias`
    covers o_proj and the MLP together, so it must go with `mlp_bias`.
    """
    if hub["model_type"] == "qwen2":
        return True, False
    attention, mlp = bool(hub.get("attention_bias", False)), bool(hub.get("mlp_bias", False))
    if attention != mlp or (attention and hub["model_type"] == "qwen3"):  # Qwen3's MLP has no bias
        return None
    return attention, attention


def _sliding_window(hub: dict[str, Any]) -> int | None:
    """The attention window of a model that uses one (Mistral v0.1, Qwen with use_sliding_window), else None."""
    window = hub.get("sliding_window")
    if not isinstance(window, int) or window <= 0:
        return None
    used = (hub["model_type"] == "mistral" or hub.get("use_sliding_window")
            or "sliding_attention" in (hub.get("layer_types") or ()))
    return window if used else None


def unsupported_settings(hub: dict[str, Any], context_length: int) -> list[str]:
    """Each setting of config.json that `GPTModel` cannot represent at `context_length`, in words; empty if none."""
    model_type = hub.get("model_type")
    if model_type not in FAMILIES:
        return [f"model_type {model_type!r} (supported: {', '.join(sorted(FAMILIES))})"]
    found = []
    activation = hub.get("hidden_act", hub.get("hidden_activation", "silu"))
    if activation != "silu":
        found.append(f"hidden_act {activation!r} (only silu: the SwiGLU MLP)")
    _, scaling = _rope(hub)
    if scaling is not None and scaling["rope_type"] != "llama3":
        found.append(f"rope_scaling of type {scaling['rope_type']!r} (only llama3)")
    if hub.get("partial_rotary_factor", 1.0) != 1.0:
        found.append(f"partial_rotary_factor {hub['partial_rotary_factor']} (rotary positions turn whole heads)")
    if hub.get("rope_interleaved"):
        found.append("rope_interleaved true (our rotary pairs are the two halves of a head)")
    if _biases(hub) is None:
        found.append(f"attention_bias {hub.get('attention_bias')} with mlp_bias {hub.get('mlp_bias')} (a bias on "
                     f"o_proj goes with biases in the MLP here)")
    window = _sliding_window(hub)
    if window is not None and window < context_length:
        found.append(f"sliding_window {window} (attention here sees the whole context: ask for at most {window} "
                     f"tokens of context)")
    if hub.get("quantization_config"):
        found.append("quantization_config (a quantized checkpoint: load its float version)")
    missing = [key for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "vocab_size") if not isinstance(hub.get(key), int)]
    found += [f"{key} missing" for key in missing]
    return found


def max_context(hub: dict[str, Any]) -> int:
    """The longest context the model was trained for (its `max_position_embeddings`)."""
    return int(hub.get("max_position_embeddings") or MAX_POSITIONS.get(hub.get("model_type"), 2048))


def config_from_hub(hub: dict[str, Any], context_length: int | None = None, source: str = CONFIG_FILE) -> GPTConfig:
    """Our GPTConfig for a Hub model's config.json, with `context_length` positions (default: the model's own,
    capped at DEFAULT_CONTEXT, since the KV cache is allocated for all of them).

    UnsupportedModelError lists every setting it cannot represent, in one line.
    """
    longest = max_context(hub)
    context = min(longest, DEFAULT_CONTEXT) if context_length is None else context_length
    if context > longest:
        raise UnsupportedModelError(f"{source}: a context of {context} tokens is longer than the model's "
                                    f"max_position_embeddings ({longest})")
    problems = unsupported_settings(hub, context)
    if problems:
        raise UnsupportedModelError(f"{source}: unsupported: {'; '.join(problems)}")
    hidden, heads = hub["hidden_size"], hub["num_attention_heads"]
    head_dim = hub.get("head_dim") or hidden // heads
    kv_heads = hub.get("num_key_value_heads") or heads
    theta, scaling = _rope(hub)
    qkv_bias, bias = _biases(hub)
    llama3 = {} if scaling is None else {
        "rope_scaling": float(scaling["factor"]), "rope_low_freq_factor": float(scaling["low_freq_factor"]),
        "rope_high_freq_factor": float(scaling["high_freq_factor"]),
        "rope_original_context": int(scaling["original_max_position_embeddings"])}
    try:
        return GPTConfig(
            vocab_size=hub["vocab_size"], context_length=context, emb_dim=hidden, n_heads=heads,
            n_layers=hub["num_hidden_layers"], drop_rate=0.0, qkv_bias=qkv_bias, bias=bias,
            tie_weights=bool(hub.get("tie_word_embeddings", False)), positions="rotary", rope_base=theta,
            norm="rmsnorm", mlp="swiglu", mlp_hidden=hub["intermediate_size"],
            n_kv_heads=None if kv_heads == heads else kv_heads, qk_norm=hub["model_type"] == "qwen3",
            head_width=None if head_dim * heads == hidden else head_dim,
            norm_eps=float(hub.get("rms_norm_eps", 1e-6)), **llama3)
    except (ValueError, KeyError, TypeError) as err:
        raise UnsupportedModelError(f"{source}: unsupported: {err}") from None


def stored_bytes(hub: dict[str, Any], cfg: GPTConfig) -> int:
    """Bytes of the weight files of `cfg` (made from `hub`): its parameters in the dtype config.json says they are
    stored in (four bytes where it says none)."""
    dtype = hub.get("torch_dtype", hub.get("dtype"))
    return STORED_BYTES.get(dtype, 4) * cfg.n_params()


# -- the catalogue ---------------------------------------------------------------------------------

def _llama(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int, theta: float,
           eps: float, positions: int, model_type: str = "llama", head_dim: int | None = None) -> dict[str, Any]:
    """The shape fields of a config.json, as the repository has them."""
    return {"model_type": model_type, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv_heads, "intermediate_size": intermediate,
            "vocab_size": vocab, "rope_theta": theta, "rms_norm_eps": eps, "max_position_embeddings": positions,
            "head_dim": head_dim or hidden // heads, "tie_word_embeddings": True, "hidden_act": "silu",
            "torch_dtype": "bfloat16"}


@dataclass(frozen=True)
class OpenModel:
    """A named open model: where it lives on the Hub, and its config.json's shape, known before any download."""

    name: str
    repo_id: str
    family: str
    hub_config: dict[str, Any]
    chat: bool  # instruction-tuned, with a chat template

    def config(self, context_length: int | None = None) -> GPTConfig:
        return config_from_hub(self.hub_config, context_length, self.repo_id)

    def memory_needed(self, dtype: torch.dtype = torch.float32, context_length: int | None = None) -> int:
        """Bytes inference needs (weights + a full-context KV cache) in `dtype`."""
        return self.config(context_length).memory_bytes(name_of(dtype))

    def download_bytes(self) -> int:
        return stored_bytes(self.hub_config, self.config())

    def describe(self, dtype: torch.dtype = torch.float32) -> str:
        """One line for the user before loading: size, memory, download."""
        return (f"{self.name} ({self.repo_id}): {self.config().n_params() / 1e6:,.0f}M parameters, needs at least "
                f"{self.memory_needed(dtype) / 1e9:.1f} GB of memory in {name_of(dtype)}, downloads "
                f"{self.download_bytes() / 1e9:.2f} GB")


_SMOLLM2_135M = _llama(576, 30, 9, 3, 1536, 49152, 100000.0, 1e-5, 8192)
_SMOLLM2_360M = _llama(960, 32, 15, 5, 2560, 49152, 100000.0, 1e-5, 8192)
CATALOGUE: dict[str, OpenModel] = {m.name: m for m in (
    OpenModel("smollm2-135m", "HuggingFaceTB/SmolLM2-135M", "SmolLM2", _SMOLLM2_135M, chat=False),
    OpenModel("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2", _SMOLLM2_135M, chat=True),
    OpenModel("smollm2-360m", "HuggingFaceTB/SmolLM2-360M", "SmolLM2", _SMOLLM2_360M, chat=False),
    OpenModel("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2", _SMOLLM2_360M, chat=True),
    # Qwen3's base and chat model are one: its template switches thinking on or off.
    OpenModel("qwen3-0.6b", "Qwen/Qwen3-0.6B", "Qwen3",
              _llama(1024, 28, 16, 8, 3072, 151936, 1e6, 1e-6, 40960, "qwen3", head_dim=128), chat=True),
    OpenModel("qwen3-1.7b", "Qwen/Qwen3-1.7B", "Qwen3",
              _llama(2048, 28, 16, 8, 6144, 151936, 1e6, 1e-6, 40960, "qwen3", head_dim=128), chat=True),
)}


# -- Hub names -> ours ---------------------------------------------------------------------------------

# Per block: the Hub's module -> ours, and which part of our fused tensor it fills (None: all of it).
_IN_BLOCK: dict[str, tuple[str, str | None]] = {
    "self_attn.q_proj": ("att.qkv", "q"), "self_attn.k_proj": ("att.qkv", "k"), "self_attn.v_proj": ("att.qkv", "v"),
    "self_attn.o_proj": ("att.out_proj", None),
    "self_attn.q_norm": ("att.q_norm", None), "self_attn.k_norm": ("att.k_norm", None),
    "mlp.gate_proj": ("ff.fc", "gate"), "mlp.up_proj": ("ff.fc", "up"), "mlp.down_proj": ("ff.proj", None),
    "input_layernorm": ("norm1", None), "post_attention_layernorm": ("norm2", None),
}
_TOP_LEVEL = {"embed_tokens.weight": "tok_emb.weight", "norm.weight": "final_norm.weight",
              "lm_head.weight": "out_head.weight"}
_BLOCK_TENSOR = re.compile(r"layers\.(\d+)\.(.+)\.(weight|bias)")
_NOT_WEIGHTS = re.compile(r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq")  # a constant older files saved


def _part_rows(part: str | None, cfg: GPTConfig) -> slice:
    """The rows of a fused tensor that one Hub tensor fills: q | k | v in att.qkv, gate | up in ff.fc."""
    spans = {"q": (0, cfg.q_dim), "k": (cfg.q_dim, cfg.q_dim + cfg.kv_dim),
             "v": (cfg.q_dim + cfg.kv_dim, cfg.q_dim + 2 * cfg.kv_dim),
             "gate": (0, cfg.hidden_dim), "up": (cfg.hidden_dim, 2 * cfg.hidden_dim)}
    return slice(None) if part is None else slice(*spans[part])


def destination(hub_name: str, cfg: GPTConfig) -> tuple[str, str | None] | None:
    """(our tensor, the part of it) a Hub tensor fills, or None for one that is no weight (or a tied head's copy).

    A name this does not know maps to itself, so that the loader reports it by its own name.
    """
    name = hub_name.removeprefix("model.")
    if _NOT_WEIGHTS.fullmatch(name) or (name == "lm_head.weight" and cfg.tie_weights):
        return None
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name], None
    block = _BLOCK_TENSOR.fullmatch(name)
    if block and block[2] in _IN_BLOCK:
        module, part = _IN_BLOCK[block[2]]
        return f"trf_blocks.{block[1]}.{module}.{block[3]}", part
    return hub_name, None


def hub_name(ours: str, part: str | None) -> str:
    """The Hub's name for our tensor (or part of one): what a message about a missing tensor says."""
    top = {v: k for k, v in _TOP_LEVEL.items()}
    if ours in top:
        return ("" if ours == "out_head.weight" else "model.") + top[ours]
    _, layer, rest = ours.split(".", 2)
    module, kind = rest.rsplit(".", 1)
    hub_module = next(h for h, (m, p) in _IN_BLOCK.items() if m == module and p == part)
    return f"model.layers.{layer}.{hub_module}.{kind}"


def _fused_parts(name: str, cfg: GPTConfig) -> tuple[str | None, ...]:
    """The parts of our tensor `name` that separate Hub tensors fill; (None,) for a tensor filled whole."""
    if ".att.qkv." in name:
        return "q", "k", "v"
    if ".ff.fc." in name and cfg.mlp == "swiglu":
        return "gate", "up"
    return (None,)


def _expected(model: GPTModel) -> dict[tuple[str, str | None], torch.Tensor]:
    """Every (our tensor, part) a Hub checkpoint must fill, with the view of our tensor it fills."""
    parts: dict[tuple[str, str | None], torch.Tensor] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if name == "out_head.weight" and model.cfg.tie_weights:
            continue
        for part in _fused_parts(name, model.cfg):
            parts[name, part] = tensor.data[_part_rows(part, model.cfg)]
    return parts


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors files: the shards its index names (each must be there), or model.safetensors.

    A folder whose weights are pickles (pytorch_model.bin ...) is refused: unpickling runs whatever code the
    file holds.
    """
    index = folder / SHARD_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as err:
            raise CheckpointError(f"{index}: not a readable shard index ({err})") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise IncompleteModelError(f"{folder}: shard {missing[0]} of {len(shards)} is missing (named in "
                                       f"{SHARD_INDEX}); download the model again, it resumes where it stopped")
        return [folder / s for s in shards]
    files = sorted(folder.glob(WEIGHT_FILES))
    if files:
        return files
    pickled = sorted(p.name for pattern in PICKLED for p in folder.glob(pattern))
    if pickled:
        raise UnsupportedModelError(f"{folder}: its weights are pickles ({', '.join(pickled)}), which are never "
                                    f"loaded here (unpickling can run any code); use a safetensors version "
                                    f"(model.safetensors)")
    raise IncompleteModelError(f"{folder}: no model.safetensors (nor shards named in {SHARD_INDEX})")


def load_hub_weights(model: GPTModel, files: list[Path], source: str) -> None:
    """Copy the Hub tensors of `files` into `model`, one at a time, each into its part of our tensor (cast to the
    model's dtype); name the first tensor that is unexpected, misshapen or missing."""
    expected = _expected(model)
    filled: set[tuple[str, str | None]] = set()
    with torch.no_grad():
        for path in files:
            try:
                with safe_open(str(path), framework="pt") as f:
                    for name in f.keys():  # noqa: SIM118 (a safe_open file is no dict)
                        target = destination(name, model.cfg)
                        if target is None:
                            continue
                        if target not in expected:
                            raise CheckpointError(f"{path}: unexpected tensor {name!r} (not part of this model)")
                        tensor = f.get_tensor(name)
                        view = expected[target]
                        if tensor.shape != view.shape or not tensor.is_floating_point():
                            raise CheckpointError(f"{path}: tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, "
                                                  f"expected float {tuple(view.shape)}")
                        view.copy_(tensor)
                        filled.add(target)
            except (SafetensorError, OSError) as err:
                raise CheckpointError(f"{path}: not a readable safetensors file, maybe truncated ({err})") from None
    missing = [key for key in expected if key not in filled]
    if missing:
        shape = tuple(expected[missing[0]].shape)
        raise CheckpointError(f"{source}: tensor {hub_name(*missing[0])!r} missing (expected shape {shape})")


# -- folders and the Hub -------------------------------------------------------------------------------

def read_hub_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise IncompleteModelError(f"{folder}: no {CONFIG_FILE}")
    try:
        hub = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable config ({err})") from None
    if not isinstance(hub, dict):
        raise CheckpointError(f"{path}: not a readable config (not a JSON object)")
    return hub


def is_hub_folder(path: str | Path) -> bool:
    """Whether `path` is a folder in transformers' layout (config.json with a `model_type`), not one of our
    checkpoints (whose config.json has a "model" key)."""
    try:
        hub = json.loads((Path(path) / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(hub, dict) and "model_type" in hub and "model" not in hub


def is_repo_id(name: str) -> bool:
    """`org/name`, the shape of a Hub repository id."""
    return bool(REPO_ID.fullmatch(name)) and ".." not in name


def hub_cache_folder(repo_id: str, cache_dir: str | Path | None = None) -> Path:
    """Where huggingface_hub keeps a model repository's files (HF_HUB_CACHE / HF_HOME decide the root)."""
    root = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE).expanduser()
    return root / repo_folder_name(repo_id=repo_id, repo_type="model")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _hub_error(repo_id: str, err: Exception, cache_dir: str | Path | None) -> Exception:
    """The one-line error, with what to do, for a failure of huggingface_hub on `repo_id`."""
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, GatedRepoError) or status == 403:
        return GatedModelError(f"{repo_id} is gated: accept its licence on its Hugging Face page, then log in here "
                               f"with `hf auth login` (or set HF_TOKEN)")
    if isinstance(err, RepositoryNotFoundError) or status == 401:
        return ModelNotFoundError(f"{repo_id}: no such model on the Hugging Face Hub (or a private one: log in "
                                  f"with `hf auth login`)")
    if isinstance(err, LocalEntryNotFoundError):
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
        return WeightsUnavailableError(
            f"{repo_id} is not in the Hugging Face cache ({hub_cache_folder(repo_id, cache_dir)}) and {why}; on a "
            f"machine with internet run `hf download {repo_id}` (or `huggingface-cli download {repo_id}`) and "
            f"copy the cache here, or pass the path of a folder holding its config.json, tokenizer.json and "
            f"*.safetensors")
    return WeightsUnavailableError(f"{repo_id}: could not download ({_one_line(err)}); try again (the download "
                                   f"resumes where it stopped)")


class _SilentBar(hub_tqdm):
    """A progress bar that shows nothing, with every attribute a real one has (snapshot_download's aggregated bar
    adds to its parent's `total`, which huggingface_hub's `silent_tqdm` lacks)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **{**kwargs, "disable": True})


_HUB_FAILURES = (HfHubHTTPError, httpx.HTTPError, OSError, HFValidationError)
REACH_TIMEOUT_S = 3.0  # a Hub that has not answered by then is taken as unreachable


def hub_reachable() -> bool:
    """Whether the Hub answers at all, asked once with a short timeout.

    Without network, huggingface_hub retries a request with backoff for tens of seconds before it gives up: a
    person who picks a model offline would wait that long for the message. Any answer counts (an error page too);
    HF_HUB_OFFLINE means no.
    """
    if constants.HF_HUB_OFFLINE:
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=REACH_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return True


def _cached_snapshot(repo_id: str, cache_dir: str | Path | None) -> Path | None:
    """The cached snapshot of `repo_id` if it holds every weight file, without asking the Hub; else None."""
    try:
        folder = Path(snapshot_download(repo_id, cache_dir=cache_dir, allow_patterns=HUB_FILES, local_files_only=True))
        weight_files(folder)
    except (*_HUB_FAILURES, ValueError):
        return None
    return folder


class TooLargeError(UnsupportedModelError):
    """A model with more parameters than the caller admits (a shared server bounds what one visitor loads)."""


def count_text(n: int) -> str:
    """A parameter count as people say it: 1.7B, 135M, 4,096."""
    return f"{n / 1e9:.1f}B" if n >= 10**9 else f"{n / 1e6:,.0f}M" if n >= 10**6 else f"{n:,}"


def check_size(cfg: GPTConfig, max_params: int | None, label: str) -> None:
    """Refuse a model above `max_params` parameters (None: any size) before its weights are fetched or built."""
    if max_params is not None and cfg.n_params() > max_params:
        raise TooLargeError(f"{label} has {count_text(cfg.n_params())} parameters; here models of up to "
                            f"{count_text(max_params)} load (run larger ones with `python -m gpt generate --model "
                            f"{label}` on a machine with the memory)")


def fetch_hub_model(repo_id: str, dtype: torch.dtype = torch.float32, context_length: int | None = None,
                    cache_dir: str | Path | None = None, progress: bool = True, max_params: int | None = None) -> Path:
    """The local snapshot folder of `repo_id`: from the cache (a whole snapshot is used without asking the Hub), or
    downloaded into it (resumable) when the Hub answers (`hub_reachable`).

    config.json comes first (a few kilobytes): the model's size then tells whether it fits in memory and on
    disk before the weights are fetched. Nothing half-written is left where the next try would read it:
    huggingface_hub writes each file beside the cache and moves it in once whole.
    """
    cached = _cached_snapshot(repo_id, cache_dir)
    if cached is not None:  # whole in the cache: no question to the Hub, so no wait when offline
        return cached
    if not hub_reachable():
        raise _hub_error(repo_id, LocalEntryNotFoundError("the Hub did not answer"), cache_dir)
    tqdm_class = None if progress else _SilentBar
    try:
        config_path = Path(hf_hub_download(repo_id, CONFIG_FILE, cache_dir=cache_dir, tqdm_class=tqdm_class))
    except RemoteEntryNotFoundError:
        raise UnsupportedModelError(f"{repo_id}: no {CONFIG_FILE} on the Hub: not a transformers model") from None
    except _HUB_FAILURES as err:
        raise _hub_error(repo_id, err, cache_dir) from None
    hub = read_hub_config(config_path.parent)
    cfg = config_from_hub(hub, context_length, repo_id)
    check_size(cfg, max_params, repo_id)
    require_memory(cfg.memory_bytes(name_of(dtype)), f"{repo_id} in {name_of(dtype)}")
    require_disk(stored_bytes(hub, cfg), hub_cache_folder(repo_id, cache_dir), f"downloading {repo_id}")
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, allow_patterns=HUB_FILES, tqdm_class=tqdm_class))
    except _HUB_FAILURES as err:
        raise _hub_error(repo_id, err, cache_dir) from None


def load_hub_folder(folder: str | Path, dtype: torch.dtype = torch.float32, context_length: int | None = None,
                    label: str | None = None, meta: dict[str, Any] | None = None,
                    max_params: int | None = None) -> Checkpoint:
    """A local folder in transformers' layout as our model (with its fast modules) and its tokenizer.

    The size (`max_params`) and the memory are checked from config.json before the model is built; the tokenizer
    is read before the weights.
    """
    folder = Path(folder)
    label = label or str(folder)
    hub = read_hub_config(folder)
    cfg = config_from_hub(hub, context_length, f"{label}/{CONFIG_FILE}")
    check_size(cfg, max_params, label)
    require_memory(cfg.memory_bytes(name_of(dtype)), f"{label} in {name_of(dtype)}")
    files = weight_files(folder)
    tokenizer = load_hub_tokenizer(folder, name=label)
    if tokenizer.n_vocab > cfg.vocab_size:
        raise CheckpointError(f"{label}: tokenizer has {tokenizer.n_vocab} tokens, model only {cfg.vocab_size}")
    model = empty_model(cfg, dtype)
    load_hub_weights(model, files, label)
    accelerate(model).eval()
    info = {"hub": label, "family": FAMILIES[hub["model_type"]], "model_type": hub["model_type"],
            "architectures": hub.get("architectures", []), "max_context": max_context(hub),
            "context_length": cfg.context_length, "chat_template": tokenizer.chat_template is not None,
            "weights": [str(f) for f in files]}
    return Checkpoint(model, tokenizer, {**info, **(meta or {})})


def load_open_model(name_or_path: str | Path, dtype: torch.dtype = torch.float32, context_length: int | None = None,
                    cache_dir: str | Path | None = None, progress: bool = True,
                    max_params: int | None = None) -> Checkpoint:
    """A catalogue name (`CATALOGUE`), a Hub repo id (`org/name`) or a local folder in transformers' layout.

    A catalogue model's size (`max_params`, None: any) and memory are checked before anything is downloaded; a
    repo's after its config.json (TooLargeError, an UnsupportedModelError).
    Errors are one line: WeightsUnavailableError (offline and not cached, the Hub unreachable) and its
    kinds ModelNotFoundError, GatedModelError, IncompleteModelError; UnsupportedModelError;
    `gpt.memory.InsufficientResourcesError`; CheckpointError for a damaged file.
    """
    name = str(name_or_path)
    name_of(dtype)  # refuse an unsupported dtype before a download, not after
    entry = CATALOGUE.get(name)
    if entry is not None:
        check_size(entry.config(context_length), max_params, name)
        require_memory(entry.memory_needed(dtype, context_length), f"{name} in {name_of(dtype)}")
    if entry is None and Path(name).is_dir():
        return load_hub_folder(name, dtype, context_length, max_params=max_params)
    repo_id = entry.repo_id if entry is not None else name
    if not is_repo_id(repo_id):
        raise ModelNotFoundError(f"{name!r} is neither a folder nor a Hub repo id (org/name) nor one of "
                                 f"{', '.join(CATALOGUE)}")
    folder = fetch_hub_model(repo_id, dtype, context_length, cache_dir, progress, max_params)
    meta = {"hub": repo_id, "revision": folder.name} | ({"catalogue": name, "family": entry.family} if entry else {})
    return load_hub_folder(folder, dtype, context_length, repo_id, meta, max_params)
