"""Which models the app can use, by name, and a small LRU cache of the ones already loaded.

Four kinds of names: the shipped models in `assets/models/<name>/`, OpenAI's GPT-2 sizes (fetched by
`gpt.pretrained.load_pretrained`), `local:<folder>` for any other checkpoint folder inside the
model folder, and `run:<name>` for a model trained in the app (the Train tab's runs folder). Local
and run names are confined to their folders, so a name typed into the app can never make the
server read an arbitrary path. Loading a model takes seconds; switching back to one that
is cached takes microseconds.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt.checkpoint import CONFIG_FILE, Checkpoint, load_checkpoint, load_checkpoint_tokenizer, read_config
from gpt.classify.classifier import CLASSIFIER_CONFIG, TextClassifier, load_classifier
from gpt.config import GPT2_SIZES, GPTConfig
from gpt.files import SHIPPED_MODELS
from gpt.model import GPTModel
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
MAX_NAMES_SAID = 12  # an unknown name's message lists this many of the names there are
MAX_NAME_CHARS = 200  # longer than any folder name the picker offers; the OS refuses paths that long anyway


class UnknownModelError(ValueError):
    """A model name that is none of the shipped, GPT-2 or local names."""


class ModelUnavailableError(FileNotFoundError):
    """A known model whose files are not there (yet)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "shipped", "gpt2", "local" or "run"
    path: Path | None  # checkpoint folder; None for GPT-2 (the loader knows where its cache is)


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
        self._tokenizers: dict[str, tuple[int | None, Tokenizer]] = {}  # name -> (version, tokenizer)

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
        return shipped + runs

    def names(self) -> list[str]:
        """Every name the picker offers: shipped models present, runs, local checkpoints, GPT-2 sizes."""
        shipped = [n for n in SHIPPED_NAMES if self.has(n)]
        return shipped + self.run_names() + self.local_names() + list(GPT2_SIZES)

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
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {choices}, "
                                f"or local:FOLDER for a folder in the app's model folder")

    def base_model(self, name: str) -> BaseModel:
        """A language model of the app to finetune (a classifier name, or one without a checkpoint, is refused)."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("Pick a base model to finetune.")
        entry = self.resolve(name)
        if entry.kind == "gpt2":
            return BaseModel(entry.name, entry.name, GPTConfig.preset(entry.name))
        if not (entry.path / CONFIG_FILE).is_file():
            raise ValueError(f"The base model {name.strip()!r} is not available: it has no checkpoint (yet).")
        try:
            return BaseModel(entry.name, str(entry.path), read_config(entry.path)["model"])
        except ValueError as err:  # a broken checkpoint
            raise ValueError(f"The base model {name.strip()!r} is not available: {err}") from err

    # -- loading -----------------------------------------------------------------------------
    def load(self, name: str, progress: bool = True) -> Checkpoint:
        """The checkpoint for a picker name, loaded once and then served from the cache."""
        entry = self.resolve(name)

        def load_entry() -> Checkpoint:
            if entry.kind == "gpt2":
                with self._gpt2_lock:  # one GPT-2 load at a time, and only one GPT-2 held
                    self._evict(lambda key: key[0] == "lm" and key[1] in GPT2_SIZES)
                    return load_model(entry.name, progress=progress)
            if not (entry.path / CONFIG_FILE).is_file():
                raise ModelUnavailableError(f"model {entry.name!r} is not available: its folder has no checkpoint")
            return load_checkpoint(entry.path)

        return self.cached(("lm", entry.name, self._version(entry)), load_entry)

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
        """When the entry's files last changed: a run that trained further is a new version, loaded anew."""
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
