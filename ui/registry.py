"""Which models the app can use, by name, and a small LRU cache of the ones already loaded.

Five kinds of names: the shipped models in `assets/models/<name>/`, OpenAI's GPT-2 sizes (fetched by
`gpt.pretrained.load_pretrained`), today's open models (`gpt.open_models`: a catalogue name such as
`qwen3-0.6b`, or a Hub repo id `org/name`, from the Hugging Face cache or downloaded), `local:<folder>`
for any other checkpoint folder (ours or transformers') inside the model folder, and `run:<name>` for a
model trained in the app (the Train tab's runs folder). Local and run names are confined to their
folders, so a name typed into the app can never make the server read an arbitrary path. Loading a
model takes seconds; switching back to one that is cached takes microseconds. GPT-2 sizes and open
models take gigabytes: one of each is held at a time.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from huggingface_hub import constants, try_to_load_from_cache

from gpt.checkpoint import CONFIG_FILE, Checkpoint, UnverifiedWarning, load_checkpoint_tokenizer, read_config
from gpt.classify.classifier import CLASSIFIER_CONFIG, TextClassifier, load_classifier
from gpt.config import GPT2_SIZES, GPTConfig
from gpt.files import SHIPPED_MODELS
from gpt.hub_tokenizer import CHAT_TEMPLATE_FILE, TOKENIZER_CONFIG, TOKENIZER_JSON, load_hub_tokenizer
from gpt.model import GPTModel
from gpt.open_models import (
    CATALOGUE,
    FAMILIES,
    OpenModel,
    WeightsUnavailableError,
    config_from_hub,
    is_hub_folder,
    is_repo_id,
    weight_files,
)
from gpt.pretrained import load_model
from gpt.quantize import is_quantized, to_precision
from gpt.tokenizer import Tokenizer, load_tokenizer

MODELS_DIR = SHIPPED_MODELS  # what the app serves unless GPT_MODELS_DIR says otherwise
SHIPPED_LANGUAGE_MODELS = ("base", "instruct")  # `spam` is a classifier, not a next-token model
LOCAL_PREFIX = "local:"
RUN_PREFIX = "run:"
RUN_MODEL = "model"  # a run folder's checkpoint subfolder (what `gpt.pretrain.runs.train_run` writes)
RUN_CLASSIFIER = "classifier"  # a run folder's classifier subfolder (a classifier finetuned in the Spam tab)
SHIPPED_CLASSIFIER = "spam"
SHIPPED_CHAT = "instruct"
SHIPPED_CHAT_DPO = "chat-dpo"  # the shipped chat model after preference tuning, when one beat it (gpt/preference)
SHIPPED_NAMES = (*SHIPPED_LANGUAGE_MODELS, SHIPPED_CHAT_DPO)  # every shipped next-token model the picker may offer
LORA_SIZE_RATIO = 2  # a base more than this many times the shipped base's size trains LoRA adapters by default
MAX_NAMES_SAID = 12  # an unknown name's message lists this many of the names there are
MAX_NAME_CHARS = 200  # longer than any folder name the picker offers; the OS refuses paths that long anyway
MAX_OPEN_MODEL_PARAMS = 2_000_000_000  # an open model larger than this (8 GB in float32) is refused before download
MAX_PRECISION_COPY_PARAMS = 400_000_000  # an open model gets bfloat16 and int8 copies beside it up to this size
MAX_CACHED_LISTED = 24  # repositories of the Hugging Face cache the picker lists beside the catalogue
HUB_PROBE_S = 3.0  # how long the app waits to learn whether the Hub answers before it says it is offline
HUB_PROBE_KEPT_S = 60.0  # and how long it trusts that answer

log = logging.getLogger("gpt.app")


class UnknownModelError(ValueError):
    """A model name that is none of the shipped, GPT-2 or local names."""


class ModelUnavailableError(FileNotFoundError):
    """A known model whose files are not there (yet)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "shipped", "gpt2", "hub", "local" or "run"
    path: Path | None  # checkpoint folder; None for GPT-2 (the loader knows where its cache is) and for an open
    # model not on disk; an open model's snapshot folder in the Hugging Face cache once it is there
    repo_id: str | None = None  # an open model's Hub repository


# -- open models in the Hugging Face cache ------------------------------------------------------------

def hub_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot of `repo_id` holding its config, tokenizer and every weight file (asks no server);
    None when any of them is missing."""
    try:
        config = try_to_load_from_cache(repo_id, CONFIG_FILE)
    except ValueError:  # not a valid repo id
        return None
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    try:
        weight_files(folder)
    except (OSError, ValueError):
        return None
    return folder if (folder / TOKENIZER_JSON).is_file() else None


def cached_repos() -> list[str]:
    """Repositories of the Hugging Face cache that hold a complete model of a family `gpt.open_models` loads."""
    root = Path(constants.HF_HUB_CACHE)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.glob("models--*--*"))[:10 * MAX_CACHED_LISTED]:
        repo_id = folder.name.removeprefix("models--").replace("--", "/", 1)
        snapshot = hub_snapshot(repo_id) if is_repo_id(repo_id) else None
        if snapshot is not None and is_hub_folder(snapshot) and _model_type(snapshot) in FAMILIES:
            found.append(repo_id)
        if len(found) == MAX_CACHED_LISTED:
            break
    return found


def _model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / CONFIG_FILE).read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def brings_chat_template(folder: Path) -> bool:
    """Whether a Hub folder brings a chat template (an instruct model), read from its files without loading it."""
    if (folder / CHAT_TEMPLATE_FILE).is_file():
        return True
    try:
        return bool(json.loads((folder / TOKENIZER_CONFIG).read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


_probe: list[float | bool] = [0.0, False]  # when the Hub was last asked, and whether it answered


def hub_reachable() -> bool:
    """Whether the Hugging Face Hub answers within HUB_PROBE_S (the answer is kept HUB_PROBE_KEPT_S): a download
    offline would otherwise wait on the network before it fails. False at once when HF_HUB_OFFLINE is set."""
    if constants.HF_HUB_OFFLINE:
        return False
    if time.monotonic() - _probe[0] > HUB_PROBE_KEPT_S:
        try:
            httpx.head(constants.ENDPOINT, timeout=HUB_PROBE_S)
            answered = True
        except httpx.HTTPError:
            answered = False
        _probe[:] = [time.monotonic(), answered]
    return bool(_probe[1])


def not_on_disk(name: str, repo_id: str, entry: OpenModel | None) -> str:
    """The one line said when an open model is not on disk and the Hub cannot be reached."""
    size = f", {entry.download_bytes() / 1e9:.2f} GB" if entry is not None else ""
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hugging Face Hub cannot be reached"
    return (f"{name} ({repo_id}{size}) is not on disk and {why}: on a machine with internet run "
            f"`hf download {repo_id}` and copy its Hugging Face cache here (HF_HUB_CACHE), or put the folder in "
            f"the app's model folder and pick local:<folder>.")


@dataclass(frozen=True)
class BaseModel:
    """A language model to finetune, as a training process loads it."""

    name: str  # the app's name of it
    source: str  # what the training process loads: a checkpoint folder, or a GPT-2 size
    config: GPTConfig


def recorded_base_name(base_ref: dict[str, Any]) -> str:
    """The app's name of a finetune's recorded base: its recorded name, a GPT-2 size, or a shipped model's folder."""
    if base_ref.get("name") or base_ref.get("pretrained"):
        return base_ref.get("name") or base_ref["pretrained"]
    folder = Path(base_ref.get("checkpoint", "")).name
    return folder if folder in SHIPPED_LANGUAGE_MODELS else base_ref.get("checkpoint", "?")


class ModelRegistry:
    """Resolve model names and keep the `capacity` most recently used loaded models in memory."""

    def __init__(self, root: str | Path = MODELS_DIR, capacity: int = 3, runs_root: str | Path | None = None):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.root = Path(root).resolve()
        self.runs_root = Path(runs_root).resolve() if runs_root is not None else None
        self.capacity = capacity
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._load_locks: dict[tuple, threading.Lock] = {}
        self._gpt2_lock = threading.Lock()
        self._hub_lock = threading.Lock()
        self._hub_names: set[str] = set()  # the names loaded as open models: at most one of them is held
        self._tokenizers: dict[str, tuple[int | None, Tokenizer]] = {}  # name -> (version, tokenizer)
        self._warnings: dict[tuple[str, int | None], list[str]] = {}  # (name, version) -> what its loading warned

    # -- names -------------------------------------------------------------------------------
    def shipped_path(self, name: str) -> Path:
        return self.root / name

    def has(self, name: str) -> bool:
        """A shipped model (language model or classifier) whose checkpoint folder is complete."""
        return (self.shipped_path(name) / CONFIG_FILE).is_file()

    def local_names(self) -> list[str]:
        """Checkpoint folders inside the model folder other than the shipped ones."""
        if not self.root.is_dir():
            return []
        shipped = set(SHIPPED_NAMES) | {"spam"}
        return [LOCAL_PREFIX + d.name for d in sorted(self.root.iterdir())
                if d.name not in shipped and (d / CONFIG_FILE).is_file()]

    def run_names(self) -> list[str]:
        """Runs trained in the app whose model was exported, newest first."""
        if self.runs_root is None or not self.runs_root.is_dir():
            return []
        runs = [d for d in self.runs_root.iterdir() if (d / RUN_MODEL / CONFIG_FILE).is_file()]
        return [RUN_PREFIX + d.name for d in sorted(runs, key=lambda d: d.stat().st_mtime, reverse=True)]

    def _runs_with(self, member: str) -> list[Path]:
        """Run folders holding `member` (a file path inside the run), newest first."""
        if self.runs_root is None or not self.runs_root.is_dir():
            return []
        runs = [d for d in self.runs_root.iterdir() if (d / member).is_file()]
        return sorted(runs, key=lambda d: d.stat().st_mtime, reverse=True)

    def classifier_names(self) -> list[str]:
        """The shipped classifier (when present) and every classifier finetuned in the app, newest first."""
        shipped = [SHIPPED_CLASSIFIER] if (self.shipped_path(SHIPPED_CLASSIFIER) / CLASSIFIER_CONFIG).is_file() else []
        return shipped + [RUN_PREFIX + d.name for d in self._runs_with(f"{RUN_CLASSIFIER}/{CLASSIFIER_CONFIG}")]

    def classifier_path(self, name: str) -> Path:
        """The folder of a classifier by picker name: `spam`, or `run:<name>` of a Spam-tab finetune."""
        name = name.strip() if isinstance(name, str) and len(name) <= MAX_NAME_CHARS else ""
        if name == SHIPPED_CLASSIFIER:
            return self.shipped_path(SHIPPED_CLASSIFIER)
        if name.startswith(RUN_PREFIX) and self.runs_root is not None:
            path = (self.runs_root / name[len(RUN_PREFIX):].strip()).resolve()
            if path.parent == self.runs_root and (path / RUN_CLASSIFIER / CLASSIFIER_CONFIG).is_file():
                return path / RUN_CLASSIFIER
        raise UnknownModelError(f"unknown classifier {name!r}; choose one of: {', '.join(self.classifier_names())}")

    def classifier(self, name: str = SHIPPED_CLASSIFIER) -> TextClassifier:
        """A classifier by picker name, loaded once (anew when its files change)."""
        path = self.classifier_path(name)
        version = (path / CLASSIFIER_CONFIG).stat().st_mtime_ns
        return self.cached(("classifier", str(path), version), lambda: load_classifier(path))

    def chat_names(self) -> list[str]:
        """The shipped chat model (when present) and every instruction finetune made in the app, newest first.

        A checkpoint is a chat model when its metadata records an instruction finetuning (`finetune`).
        """
        shipped = [n for n in (SHIPPED_CHAT, SHIPPED_CHAT_DPO) if self.has(n)]
        runs = []
        for d in self._runs_with(f"{RUN_MODEL}/{CONFIG_FILE}"):
            try:
                meta = read_config(d / RUN_MODEL).get("meta", {})
            except (ValueError, OSError):
                continue
            if isinstance(meta, dict) and "finetune" in meta:
                runs.append(RUN_PREFIX + d.name)
        return shipped + runs + self.open_chat_names()

    def open_names(self) -> list[str]:
        """The open models of the catalogue, and the other repositories of the Hugging Face cache it can load."""
        known = {m.repo_id for m in CATALOGUE.values()}
        return list(CATALOGUE) + [r for r in cached_repos() if r not in known]

    def open_chat_names(self) -> list[str]:
        """The open instruct models: the catalogue's, and the cached repositories that bring a chat template."""
        known = {m.repo_id for m in CATALOGUE.values()}
        cached = [r for r in cached_repos() if r not in known and brings_chat_template(hub_snapshot(r))]
        return [name for name, m in CATALOGUE.items() if m.chat] + cached

    def base_names(self, open_models: Sequence[str] = ()) -> list[str]:
        """The models the app finetunes: shipped models present, runs, local checkpoints, GPT-2 sizes, and those of
        `open_models` (catalogue names) that are on disk."""
        shipped = [n for n in SHIPPED_NAMES if self.has(n)]
        on_disk = [n for n in open_models if hub_snapshot(CATALOGUE[n].repo_id) is not None]
        return shipped + self.run_names() + self.local_names() + list(GPT2_SIZES) + on_disk

    def open_bases_missing(self, open_models: Sequence[str]) -> str:
        """How to get the open models of `open_models` that are not on disk, in a sentence; "" when all are."""
        missing = [CATALOGUE[n] for n in open_models if hub_snapshot(CATALOGUE[n].repo_id) is None]
        if not missing:
            return ""
        names = " and ".join(m.name for m in missing)
        runs = "; ".join(f"`hf download {m.repo_id}`" for m in missing)
        return (f"{names} can be finetuned here once on disk: on a machine with internet run {runs}, and copy its "
                f"Hugging Face cache here (HF_HUB_CACHE), then reload the page.")

    def names(self) -> list[str]:
        """Every name the picker offers: the models the app finetunes, and the open models."""
        return self.base_names() + self.open_names()

    def label(self, name: str) -> str:
        """How a picker shows a name: an open model with its family, size and whether it is on disk."""
        entry = CATALOGUE.get(name)
        if entry is not None:
            where = ("on disk" if hub_snapshot(entry.repo_id) is not None
                     else f"download {entry.download_bytes() / 1e9:.2f} GB")
            return f"{name} · {entry.family}, {entry.config().n_params() / 1e6:,.0f}M · {where}"
        if is_repo_id(name) and not name.startswith((LOCAL_PREFIX, RUN_PREFIX)):
            return f"{name} · on disk"
        return name

    def choices(self, names: list[str] | None = None) -> list[tuple[str, str]]:
        """(label, name) for a dropdown: every name the picker offers, or `names`."""
        return [(self.label(n), n) for n in (self.names() if names is None else names)]

    def default(self) -> str:
        """The first shipped model present; `base` (with its 'not there yet' message) otherwise."""
        return next((n for n in SHIPPED_LANGUAGE_MODELS if self.has(n)), SHIPPED_LANGUAGE_MODELS[0])

    def resolve(self, name: str) -> ModelEntry:
        if name is not None and not isinstance(name, str):
            raise UnknownModelError(f"a model name is text, got {type(name).__name__}")
        name = (name or "").strip()
        if len(name) > MAX_NAME_CHARS:
            raise UnknownModelError(f"no model has a name of {len(name):,} characters")
        if name in SHIPPED_NAMES:
            return ModelEntry(name, "shipped", self.shipped_path(name))
        if name in GPT2_SIZES:
            return ModelEntry(name, "gpt2", None)
        if name in CATALOGUE or is_repo_id(name) and not name.startswith((LOCAL_PREFIX, RUN_PREFIX)):
            repo_id = CATALOGUE[name].repo_id if name in CATALOGUE else name
            return ModelEntry(name, "hub", hub_snapshot(repo_id), repo_id)
        if name.startswith(LOCAL_PREFIX):
            rel = name[len(LOCAL_PREFIX):].strip()
            path = (self.root / rel).resolve()
            if not rel or not path.is_relative_to(self.root) or path == self.root:
                raise UnknownModelError(f"{name!r}: a local model must be a folder inside the app's model folder")
            return ModelEntry(name, "local", path)
        if name.startswith(RUN_PREFIX) and self.runs_root is not None:
            rel = name[len(RUN_PREFIX):].strip()
            path = (self.runs_root / rel).resolve()
            if not rel or path.parent != self.runs_root:
                raise UnknownModelError(f"{name!r}: a run is named run:<name> after a folder of the Train tab")
            return ModelEntry(name, "run", path / RUN_MODEL)
        names = self.names()
        choices = ", ".join(names[:MAX_NAMES_SAID]) + (f" (and {len(names) - MAX_NAMES_SAID} more)"
                                                        if len(names) > MAX_NAMES_SAID else "")
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {choices}, a Hugging Face repo id, "
                                f"or local:FOLDER for a folder in the app's model folder")

    def base_model(self, name: str) -> BaseModel:
        """A language model of the app to finetune (a classifier name, or one without a checkpoint, is refused)."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("Pick a base model to finetune.")
        entry = self.resolve(name)
        if entry.kind == "gpt2":
            return BaseModel(entry.name, entry.name, GPTConfig.preset(entry.name))
        if entry.kind == "hub" and entry.path is None:
            raise ValueError(f"{name.strip()} is not on disk: on a machine with internet run `hf download "
                             f"{entry.repo_id}` and copy its Hugging Face cache here (HF_HUB_CACHE); the app does not "
                             "download a model to finetune it.")
        if entry.kind == "hub" or is_hub_folder(entry.path):  # a transformers folder: its config.json, no weights read
            try:
                config = config_from_hub(json.loads((entry.path / CONFIG_FILE).read_text()), None, entry.name)
            except (OSError, ValueError) as err:
                raise ValueError(f"The base model {name.strip()!r} is not available: {err}") from err
            return BaseModel(entry.name, str(entry.path), config)
        if not (entry.path / CONFIG_FILE).is_file():
            raise ValueError(f"The base model {name.strip()!r} is not available: it has no checkpoint (yet).")
        try:
            return BaseModel(entry.name, str(entry.path), read_config(entry.path)["model"])
        except ValueError as err:  # a broken checkpoint
            raise ValueError(f"The base model {name.strip()!r} is not available: {err}") from err

    def lora_by_default(self, name: str) -> bool:
        """Whether a finetune of this base trains LoRA adapters unless told otherwise: a base more than twice the size
        of the shipped `base` (every weight of such a one takes far more memory and time here; the shipped chat models,
        of about the base's size whatever its architecture, train whole); False for a name that is no base."""
        try:
            size = self.base_model(name).config.n_params()
            shipped = read_config(self.shipped_path(SHIPPED_LANGUAGE_MODELS[0]))["model"].n_params()
        except (ValueError, OSError, KeyError):
            return False
        return size > LORA_SIZE_RATIO * shipped

    # -- loading -----------------------------------------------------------------------------
    def load(self, name: str, progress: bool = True) -> Checkpoint:
        """The checkpoint for a picker name, loaded once and then served from the cache."""
        entry = self.resolve(name)

        def load_entry() -> Checkpoint:
            if entry.kind == "gpt2":
                with self._gpt2_lock:  # one GPT-2 load at a time, and only one GPT-2 held
                    self._evict(lambda key: key[0] == "lm" and key[1] in GPT2_SIZES)
                    return load_model(entry.name, progress=progress)
            if entry.kind == "hub":
                return self._load_open_model(entry, progress)
            if not (entry.path / CONFIG_FILE).is_file():
                raise ModelUnavailableError(f"model {entry.name!r} is not available: its folder has no checkpoint")
            return self._load_folder(entry)  # ours, or a folder in transformers' layout

        return self.cached(("lm", entry.name, self._version(entry)), load_entry)

    def _load_folder(self, entry: ModelEntry) -> Checkpoint:
        """A checkpoint folder, with the `UnverifiedWarning` its loading gave kept for the page (`warnings_of`): a
        folder without checksums loads, and the model's summary says so, not only the server's log."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnverifiedWarning)
            ckpt = load_model(entry.path)
        said = []
        for warning in caught:  # this folder's; another thread's warnings (caught meanwhile) go on as they were
            if issubclass(warning.category, UnverifiedWarning) and str(warning.message).startswith(
                    f"{entry.path.name}/"):
                said.append(str(warning.message))
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        for line in said:
            log.warning("%s: %s", entry.name, line)
        with self._cache_lock:
            self._warnings[(entry.name, self._version(entry))] = said
        return ckpt

    def warnings_of(self, name: str) -> list[str]:
        """What loading the model warned about (a folder without checksums), once it is loaded; [] otherwise."""
        entry = self.resolve(name)
        with self._cache_lock:
            return list(self._warnings.get((entry.name, self._version(entry)), []))

    def check_open_model(self, entry: ModelEntry) -> None:
        """Refuse, in one line and at once, an open model that is not on disk while the Hub cannot be reached (a
        download would wait on the network before it fails). Its size is `load_model`'s to check (`max_params`)."""
        if entry.path is None and not hub_reachable():
            raise ModelUnavailableError(not_on_disk(entry.name, entry.repo_id, CATALOGUE.get(entry.name)))

    def _load_open_model(self, entry: ModelEntry, progress: bool) -> Checkpoint:
        """One open model at a time, and only one held: the one before is dropped first. A model above
        MAX_OPEN_MODEL_PARAMS is refused before its weights are downloaded or read (`TooLargeError`): a catalogue
        model by its shape, a typed repo id by its config.json, fetched first."""
        self.check_open_model(entry)
        with self._hub_lock:
            self._evict(lambda key: key[0] in ("lm", "lm-precision") and key[1] in self._hub_names)
            try:
                ckpt = load_model(entry.name, progress=progress, max_params=MAX_OPEN_MODEL_PARAMS)
            except WeightsUnavailableError as err:
                raise ModelUnavailableError(str(err)) from None
            self._hub_names.add(entry.name)
            return ckpt

    def load_in(self, name: str, precision: str) -> Checkpoint:
        """The checkpoint in float32, bfloat16 or int8: a converted copy, cached beside the float32 one.

        GPT-2 sizes stay in float32 here: a second copy of gigabytes is what the one-GPT-2 rule avoids.
        """
        entry = self.resolve(name)
        if entry.kind == "gpt2" and precision != "float32":
            raise ValueError(f"{name}: other precisions are offered for the shipped and trained models, whose "
                             f"copies are megabytes; GPT-2 runs in float32 here (python -m gpt generate --dtype "
                             f"{precision} --model {name} runs it in {precision})")
        ckpt = self.load(name)
        if entry.kind == "hub" and precision != "float32" and ckpt.model.n_params() > MAX_PRECISION_COPY_PARAMS:
            raise ValueError(f"{name}: a {precision} copy beside its float32 weights would hold "
                             f"{ckpt.model.n_params() / 1e6:,.0f}M parameters twice; open models get other "
                             f"precisions here up to {MAX_PRECISION_COPY_PARAMS / 1e6:,.0f}M (python -m gpt generate "
                             f"--dtype {precision} --model {name} runs it in {precision})")
        if is_quantized(ckpt.model):  # saved by `python -m gpt quantize`
            if precision == "int8":
                return ckpt
            raise ValueError(f"{name} is saved in int8: it has no float weights to run in {precision}")
        if precision == "float32":
            return ckpt

        def convert() -> Checkpoint:
            model = GPTModel(ckpt.model.cfg)
            model.load_state_dict(ckpt.model.state_dict())
            return Checkpoint(to_precision(model, precision), ckpt.tokenizer, ckpt.meta)

        return self.cached(("lm-precision", entry.name, self._version(entry), precision), convert)

    @staticmethod
    def _version(entry: ModelEntry) -> int | None:
        """When the entry's files last changed: a run that trained further is a new version, loaded anew. An open
        model's snapshot never changes (a new revision is a new folder): None, before and after its download."""
        if entry.kind == "hub":
            return None
        config = entry.path / CONFIG_FILE if entry.path is not None else None
        return config.stat().st_mtime_ns if config is not None and config.is_file() else None

    def tokenizer(self, name: str) -> Tokenizer:
        """A model's tokenizer without loading its weights (GPT-2's sizes all share GPT-2's BPE).

        Kept apart from the model cache: tokenizers are small, and the Tokenizer tab asks for one
        on every keystroke.
        """
        entry = self.resolve(name)
        version = self._version(entry)
        with self._cache_lock:
            if entry.name in self._tokenizers and self._tokenizers[entry.name][0] == version:
                return self._tokenizers[entry.name][1]
        if entry.kind == "gpt2":
            tokenizer = load_tokenizer("gpt2")
        elif entry.kind == "hub" and entry.path is None:
            self.check_open_model(entry)  # offline: the one line; online: its tokenizer comes with the model
            tokenizer = self.load(name).tokenizer
        elif entry.kind == "hub" or is_hub_folder(entry.path):
            tokenizer = load_hub_tokenizer(entry.path, name=entry.repo_id or entry.name)
        elif not (entry.path / CONFIG_FILE).is_file():
            raise ModelUnavailableError(f"model {entry.name!r} is not available: its folder has no checkpoint")
        else:
            tokenizer = load_checkpoint_tokenizer(entry.path)
        with self._cache_lock:
            self._tokenizers[entry.name] = (version, tokenizer)
        return tokenizer

    def _evict(self, which: Callable[[tuple], bool]) -> None:
        """Drop the cached values whose key `which` picks, so that their memory is free for the next load."""
        with self._cache_lock:
            for key in [k for k in self._cache if which(k)]:
                del self._cache[key]
        gc.collect()

    def cached(self, key: tuple, loader: Callable[[], Any]) -> Any:
        """`loader()` once per key; the least recently used value is dropped beyond `capacity`.

        Two requests for the same model wait for one load; different models load in parallel.
        """
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:
            with self._cache_lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            value = loader()
            with self._cache_lock:
                self._cache[key] = value
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
        return value
