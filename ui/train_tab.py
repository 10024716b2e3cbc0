"""Tab: train a GPT from scratch in the browser (the book's chapters 2 and 5, live).

Data (shipped corpora, pasted text, uploaded .txt files) -> what the model sees (tokens and the
sliding window's input/target pairs) -> tokenizer -> model (a preset, or custom sizes with today's
architecture switches) and optimizer -> budget -> a live loss curve and samples -> a run in the model
picker, its held-out bits per byte beside `xz -9` and an n-gram, and a zip to download (and upload again).
A second recipe can train after the first on the same data, tokenizer and tokens: both curves, samples
and scores side by side. The training itself runs in the job runner (`ui/jobs.py`), as
`gpt.pretrain.recipes.train_recipes`: its process measures a step first and, by default, fits the steps to the
budget.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from gpt.bpe import BytePairEncoder
from gpt.config import PRESETS, GPTConfig, check_option
from gpt.data.corpus import AUSTEN_NOVELS, HELD_OUT_NOVELS, MODERN_TITLES, hold_out_tails, join_documents, select_corpus
from gpt.data.windows import SlidingWindowDataset
from gpt.pretrain.recipes import (
    SCHEDULE_SHARE,
    Plan,
    Trained,
    fitted_steps,
    same_tokens,
    train_recipes,
    with_steps,
)
from gpt.pretrain.trainer import PretrainConfig
from gpt.tokenizer import Tokenizer, TokenPiece, load_tokenizer
from gpt.training.events import TrainEvent
from ui.common import check_number, user_errors
from ui.figures import Plot
from ui.forms import (
    check_field,
    check_flag,
    check_optional_field,
    checkbox,
    field_range,
    help_of,
    number,
    on_form,
    radio,
    reads_form,
    slider,
)
from ui.jobs import Job, JobRunner, TrainLimits, env_number, probe_seconds_per_step, run_limited, train_bpe_ranks
from ui.labels import piece_label, tokens_html
from ui.registry import RUN_PREFIX, ModelRegistry
from ui.training_panel import (
    SHARED_FILE,
    Panel,
    Submission,
    asker_of,
    duration,
    may_see,
    owner_of,
    owner_token,
    receive_run_zip,
    run_folder,
    run_zip,
    share_buttons,
    visible_choices,
)

# The recipe the page starts with, in one place: the fastest of `python -m benchmarks.speedrun` (README, Pretraining).
DEFAULT_RECIPE = {"preset": "classroom-modern", "optimizer": "muon", "lr": 4e-3}
# One timed step at a time in the server: steps timed side by side would measure each other, and each visitor's
# thread would keep its own memory for them.
PROBE_LOCK = threading.Lock()
SECOND_RECIPE = {"preset": "classroom", "optimizer": "adamw"}  # the comparison's: GPT-2 (2019) with AdamW
KJV = "King James Bible (61 books)"
WINDOW_COLUMNS = ["window", "start", "input (first tokens)", "target: the input shifted by one"]
# The checkboxes' labels -> what `select_corpus` takes: a source, or one novel
CORPORA = ({f"Austen: {name}": f"austen-{name}" for name in AUSTEN_NOVELS if name not in HELD_OUT_NOVELS}
           | {KJV: "kjv"} | {title: source for source, title in MODERN_TITLES.items()})
MODEL_PRESETS = ("classroom", "classroom-modern", "tiny", "tiny-modern", "shipped-small", "shipped-small-modern",
                 "custom")
OPTIMIZER_LABELS = {"adamw": "AdamW", "muon": "Muon"}
# GPTConfig's architecture switches, with their labels (the field's name in brackets: messages name fields)
SWITCH_LABELS = {"positions": "Positions (positions)", "rope_base": "Rotary base (rope_base)",
                 "norm": "Normalisation (norm)", "mlp": "MLP (mlp)", "mlp_hidden": "MLP hidden width (mlp_hidden)",
                 "n_kv_heads": "Key/value heads (n_kv_heads)", "qk_norm": "QK-norm (qk_norm)",
                 "bias": "Biases (bias)", "qkv_bias": "Query/key/value biases (qkv_bias)",
                 "tie_weights": "Output head tied to the embedding (tie_weights)"}
SECOND = "b_"  # the second recipe's fields: the first's names after this
SECOND_RUN = "-b"  # the second recipe's run folder: the first's name and this
LETTERS = "AB"
MIN_VOCAB = 257  # our BPE's smallest vocabulary: the 256 bytes and <|endoftext|>
PASTED_HELD_OUT = 0.1  # the tail of pasted and uploaded text that is held out
PREVIEW_TOKENS = 120
WINDOW_TOKENS_SHOWN = 24  # of each window in the table: enough to see the shift by one
PREVIEW_WINDOWS = 4
RECENT_STEPS = 20  # "time left" is by the seconds per step over these last steps


@dataclass(frozen=True)
class TrainData:
    """What a training reads: documents to train on, documents held out, and a name for the card."""

    train: list[str]
    held_out: list[str]
    name: str

    @property
    def n_chars(self) -> int:
        return sum(map(len, self.train)) + sum(map(len, self.held_out))


@dataclass(frozen=True)
class TrainForm:
    """The tab's settings as the page (or an API caller) sends them: unchecked until a handler checks them.

    The field order is the order of the values `/train_check` and `/train_start` take (`/train_preview`
    takes the stride of the windows shown first). The fields after `seed` came later, with defaults that
    train what a caller sending none of them got before: GPT-2's switches, AdamW, the steps as sent, one recipe.
    The switches shape a custom model; a preset brings its own. The second recipe's fields start with `b_`.
    """

    corpora: list[str] | None
    pasted: str | None
    files: list[str] | None
    tokenizer_kind: str
    vocab_size: float
    preset: str
    n_layers: float
    n_heads: float
    emb_dim: float
    context_length: float
    positions: str
    drop_rate: float
    max_steps: float
    minutes: float
    batch_size: float
    lr: float
    warmup_steps: float
    weight_decay: float
    seed: float
    norm: str = GPTConfig.norm
    rope_base: float = GPTConfig.rope_base
    mlp: str = GPTConfig.mlp
    mlp_hidden: str | float | None = GPTConfig.mlp_hidden  # empty: the default
    n_kv_heads: str | float | None = GPTConfig.n_kv_heads
    qk_norm: bool = GPTConfig.qk_norm
    bias: bool = GPTConfig.bias
    qkv_bias: bool = GPTConfig.qkv_bias
    tie_weights: bool = GPTConfig.tie_weights
    optimizer: str = "adamw"
    fit_steps: bool = False  # the page's box is ticked: the steps fill the minutes at the measured rate
    compare: bool = False
    b_preset: str = SECOND_RECIPE["preset"]
    b_optimizer: str = SECOND_RECIPE["optimizer"]
    b_positions: str = GPTConfig.positions
    b_rope_base: float = GPTConfig.rope_base
    b_norm: str = GPTConfig.norm
    b_mlp: str = GPTConfig.mlp
    b_mlp_hidden: str | float | None = GPTConfig.mlp_hidden
    b_n_kv_heads: str | float | None = GPTConfig.n_kv_heads
    b_qk_norm: bool = GPTConfig.qk_norm
    b_bias: bool = GPTConfig.bias
    b_qkv_bias: bool = GPTConfig.qkv_bias
    b_tie_weights: bool = GPTConfig.tie_weights


# The page as it opens, before a visitor changes anything (what `benchmarks.train_app` measures)
DEFAULTS = TrainForm(corpora=["Austen: prideprejudice"], pasted=None, files=None, tokenizer_kind="bpe", vocab_size=1024,
                     preset=DEFAULT_RECIPE["preset"], n_layers=4, n_heads=4, emb_dim=128, context_length=128,
                     positions=GPTConfig.positions, drop_rate=0.0, max_steps=600, minutes=3.0, batch_size=16,
                     lr=DEFAULT_RECIPE["lr"], warmup_steps=30, weight_decay=0.1, seed=123,
                     optimizer=DEFAULT_RECIPE["optimizer"], fit_steps=True)


@dataclass(frozen=True)
class Recipe:
    """One recipe to train, checked: its model, its optimizer and a few words for the page."""

    model: GPTConfig
    optimizer: str
    label: str


# -- data ------------------------------------------------------------------------------------------

def read_upload(path: str, max_bytes: int) -> str:
    """An uploaded .txt file as text: UTF-8, within the size limit."""
    file = Path(path)
    if file.stat().st_size > max_bytes:
        raise ValueError(f"{file.name} is {file.stat().st_size / 2**20:.1f} MB: the limit is "
                         f"{max_bytes / 2**20:.0f} MB per file.")
    try:
        return file.read_bytes().decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise ValueError(f"{file.name} is not UTF-8 text: save it as UTF-8 .txt and upload it again.") from None


def gather_data(corpora: list[str] | None, pasted: str | None, files: list[str] | None, max_chars: int,
                max_upload_bytes: int) -> TrainData:
    """The chosen corpora (with their fixed held-out documents) plus pasted and uploaded text (tails held out)."""
    corpora = list(corpora or [])
    unknown = [c for c in corpora if c not in CORPORA]
    if unknown:
        raise ValueError(f"Unknown corpus {unknown[0]!r}; choose from: {', '.join(CORPORA)}.")
    split = select_corpus(CORPORA[c] for c in corpora)
    train, held_out = [d.text for d in split.train], [d.text for d in split.held_out]
    own = [t for t in [pasted or "", *(read_upload(f, max_upload_bytes) for f in files or [])] if t.strip()]
    if own:
        own_train, own_held = hold_out_tails(own, PASTED_HELD_OUT)
        train += own_train
        held_out += own_held
    if not train:
        raise ValueError("There is no training text: tick a corpus, paste some text, or upload a .txt file.")
    names = corpora + (["your text"] if own else [])
    data = TrainData(train, held_out, " + ".join(names))
    if data.n_chars > max_chars:
        raise ValueError(f"The data has {data.n_chars:,} characters; the limit here is {max_chars:,}. "
                         "Pick fewer corpora or less text.")
    if sum(map(len, held_out)) < 200:
        raise ValueError("The held-out part is under 200 characters, too little to measure the model on: "
                         "add text (a tenth of pasted text is held out).")
    return data


def form_data(runner: JobRunner, form: TrainForm) -> TrainData:
    limits = runner.limits
    return gather_data(form.corpora, form.pasted, form.files, limits.max_chars, limits.max_upload_mb * 2**20)


# Our BPE learns its merges from at most this many characters of the training text (it then encodes all of it): a
# tokenizer's memory and time grow with the text's distinct words, and it is trained while the visitor waits.
TOKENIZER_CHARS = int(env_number("GPT_TRAIN_TOKENIZER_CHARS", 500_000))


@functools.lru_cache(maxsize=8)
def _trained_ranks(digest: str, vocab_size: int, limits: TrainLimits) -> dict[bytes, int]:
    return run_limited(train_bpe_ranks, _SAMPLES.pop(digest), vocab_size, limits=limits, what="Training the tokenizer")


_SAMPLES: dict[str, str] = {}  # the text of a digest being trained on: the cache keeps digests, not megabytes
_BPE_LOCK = threading.Lock()


def tokenizer_sample(data: TrainData) -> tuple[str, str]:
    """The text our BPE learns from (the first `TOKENIZER_CHARS` characters) and a notice when that is not all."""
    text = "\n\n".join(data.train)
    if len(text) <= TOKENIZER_CHARS:
        return text, ""
    return text[:TOKENIZER_CHARS], (f"The tokenizer learned its merges from the first {TOKENIZER_CHARS:,} of the "
                                    f"{len(text):,} characters (GPT_TRAIN_TOKENIZER_CHARS); it encodes all of them.")


def build_tokenizer(data: TrainData, kind: str, vocab_size: int, limits: TrainLimits | None = None) -> Tokenizer:
    """GPT-2's BPE, or ours trained on the training text (its first `TOKENIZER_CHARS` characters) to `vocab_size`
    (fewer if the text has no more pairs), in a child process under the job memory limit."""
    if kind == "gpt2":
        return load_tokenizer("gpt2")
    if kind != "bpe":
        raise ValueError(f"Unknown tokenizer {kind!r}: choose bpe or gpt2.")
    text, _ = tokenizer_sample(data)
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    limits = limits or TrainLimits.from_env()
    with _BPE_LOCK:  # one digest's text at a time: a second request for it waits for the cache
        _SAMPLES[digest] = text
        try:
            ranks = _trained_ranks(digest, vocab_size, limits)
        finally:
            _SAMPLES.pop(digest, None)
    return Tokenizer("bpe", dict(ranks))


def vocab_of(runner: JobRunner, form: TrainForm) -> int:
    """The vocabulary asked for: GPT-2's, or ours between a byte-level minimum and the app's limit (its BPE is
    trained in a limited child process)."""
    if form.tokenizer_kind == "gpt2":
        return load_tokenizer("gpt2").n_vocab
    return check_field(GPTConfig, "vocab_size", form.vocab_size, "Vocabulary size", low=MIN_VOCAB,
                       high=runner.limits.max_vocab)


def preview(runner: JobRunner, form: TrainForm, stride: float) -> tuple[str, pd.DataFrame, str]:
    """What the model will see: the first tokens, a few input/target windows, and how much data there is.

    The windows are as long as the model's context: the preset's, or the custom slider's.
    """
    data = form_data(runner, form)
    vocab_size = vocab_of(runner, form)
    if form.preset in PRESETS:
        context = PRESETS[form.preset].context_length
    else:
        context = check_field(GPTConfig, "context_length", form.context_length, "Context length")
    stride = check_number(stride, "Stride", 1, field_range(GPTConfig, "context_length")[1], integer=True)
    tokenizer = build_tokenizer(data, form.tokenizer_kind, vocab_size, runner.limits)
    first = data.train[0][:4000]
    pieces = tokenizer.pieces(first)[:PREVIEW_TOKENS]
    ids = tokenizer.encode(join_documents(data.train))
    windows = SlidingWindowDataset(ids, context, stride)
    rows = []
    for i in range(min(PREVIEW_WINDOWS, len(windows))):
        x, y = windows[i]
        rows.append((i, i * stride, _shown(tokenizer, x.tolist()[:WINDOW_TOKENS_SHOWN]),
                     _shown(tokenizer, y.tolist()[:WINDOW_TOKENS_SHOWN])))
    table = pd.DataFrame(rows, columns=WINDOW_COLUMNS)
    n_chars = sum(map(len, data.train))
    requested = "" if tokenizer.n_vocab >= vocab_size or form.tokenizer_kind == "gpt2" else (
        f" (you asked for {vocab_size:,}: the text has no more pairs to merge)")
    counts = (f"**{data.name}**: {n_chars:,} characters to train on, {sum(map(len, data.held_out)):,} held out. "
              f"Tokenizer: {'GPT-2' if form.tokenizer_kind == 'gpt2' else 'our BPE'}, "
              f"**{tokenizer.n_vocab:,}** tokens{requested}; {len(ids):,} training tokens, "
              f"**{n_chars / max(len(ids), 1):.2f}** characters per token. "
              f"Windows of {context} tokens every {stride}: **{len(windows):,}**.")
    if form.tokenizer_kind == "bpe" and n_chars > TOKENIZER_CHARS:
        counts += f"\n\n⚠️ {tokenizer_sample(data)[1]}"
    return tokens_html(pieces), table, counts


def _shown(tokenizer: Tokenizer, ids: list[int]) -> str:
    """A window's tokens separated by `|`, whitespace visible."""
    return " | ".join(piece_label(TokenPiece(i, tokenizer.decode_bytes([i]), 0, 0)) for i in ids) + " …"


# -- the model and its budget --------------------------------------------------------------------------

def switches(form: TrainForm, prefix: str = "") -> dict[str, Any]:
    """A recipe's architecture switches, checked against GPTConfig's fields (`prefix`: whose, the first's or `b_`)."""
    def value(name: str) -> Any:
        return getattr(form, prefix + name)

    chosen: dict[str, Any] = {name: check_option(GPTConfig, name, value(name), SWITCH_LABELS[name])
                              for name in ("positions", "norm", "mlp")}
    chosen["rope_base"] = check_field(GPTConfig, "rope_base", value("rope_base"), SWITCH_LABELS["rope_base"])
    for name in ("mlp_hidden", "n_kv_heads"):
        chosen[name] = check_optional_field(GPTConfig, name, value(name), SWITCH_LABELS[name])
    for name in ("qk_norm", "bias", "qkv_bias", "tie_weights"):
        chosen[name] = check_flag(value(name), SWITCH_LABELS[name])
    return chosen


def model_config(form: TrainForm, vocab_size: int, second: bool = False) -> GPTConfig:
    """The first recipe's model (the second's with `second`): a preset, or the custom sizes with the switches; the
    vocabulary is the tokenizer's. An impossible combination is GPTConfig's one-line message naming the fields,
    raised before anything is allocated."""
    preset = getattr(form, SECOND + "preset" if second else "preset")
    try:
        if preset not in MODEL_PRESETS:
            raise ValueError(f"Unknown model preset {preset!r}; choose one of {', '.join(MODEL_PRESETS)}.")
        drop = check_field(GPTConfig, "drop_rate", form.drop_rate, "Dropout")
        if preset != "custom":
            return GPTConfig.preset(preset, vocab_size=vocab_size, drop_rate=drop)
        return GPTConfig(vocab_size=vocab_size, n_layers=check_field(GPTConfig, "n_layers", form.n_layers, "Layers"),
                         n_heads=check_field(GPTConfig, "n_heads", form.n_heads, "Heads"),
                         emb_dim=check_field(GPTConfig, "emb_dim", form.emb_dim, "Width"),
                         context_length=check_field(GPTConfig, "context_length", form.context_length,
                                                    "Context length"),
                         drop_rate=drop, **switches(form, SECOND if second else ""))
    except ValueError as err:
        if second:
            raise ValueError(f"Second recipe: {err}") from None
        raise


def recipe_label(preset: str, model: GPTConfig, optimizer: str) -> str:
    """A recipe in a few words: its preset (a custom one's switches that differ from GPT-2's) and its optimizer."""
    if preset == "custom":
        changed = [f"{name} {getattr(model, name)}" for name in SWITCH_LABELS
                   if getattr(model, name) != getattr(GPTConfig, name)]
        preset = "custom" + (f" ({', '.join(changed)})" if changed else "")
    return f"{preset}, {OPTIMIZER_LABELS[optimizer]}"


def recipes(form: TrainForm, vocab_size: int) -> list[Recipe]:
    """The recipe to train, and the second one when comparing; checked."""
    chosen = []
    for second in (False, True)[:2 if check_flag(form.compare, "Compare with a second recipe") else 1]:
        prefix = SECOND if second else ""
        model = model_config(form, vocab_size, second)
        optimizer = check_option(PretrainConfig, "optimizer", getattr(form, prefix + "optimizer"),
                                 "Second recipe's optimizer" if second else "Optimizer")
        chosen.append(Recipe(model, optimizer, recipe_label(getattr(form, prefix + "preset"), model, optimizer)))
    return chosen


def describe(cfg: GPTConfig) -> str:
    """The model's shape and switches, short."""
    heads = f"{cfg.n_heads} heads" + (f" sharing {cfg.kv_heads} key/value heads" if cfg.kv_heads < cfg.n_heads else "")
    extras = [f"{cfg.positions} positions", cfg.norm, f"{cfg.mlp} MLP ({cfg.hidden_dim} hidden)"]
    extras += ["QK-norm"] if cfg.qk_norm else []
    extras += [] if cfg.bias else ["no biases"]
    extras += [] if cfg.tie_weights else ["untied head"]
    return f"{cfg.n_layers} layers, {heads}, {cfg.emb_dim} wide, context {cfg.context_length}; {', '.join(extras)}"


def check_size(runner: JobRunner, cfg: GPTConfig) -> None:
    if cfg.n_params() > runner.limits.max_params:
        raise ValueError(f"The model has {cfg.n_params() / 1e6:.1f}M parameters; the limit here is "
                         f"{runner.limits.max_params / 1e6:.0f}M. Make it smaller (fewer layers, narrower, "
                         f"or a smaller vocabulary).")


def budget(runner: JobRunner, form: TrainForm) -> tuple[int, int, float, bool]:
    """(steps, batch size, minutes, whether the steps are fitted to the minutes), checked: the config's bounds, within
    the app's limits."""
    limits = runner.limits
    return (check_field(PretrainConfig, "max_steps", form.max_steps, "Steps", high=limits.max_steps),
            check_field(PretrainConfig, "batch_size", form.batch_size, "Batch size"),
            check_number(form.minutes, "Minutes", 0.1, limits.max_minutes),
            check_flag(form.fit_steps, "Fit the steps to the minutes"))


def check_model(runner: JobRunner, form: TrainForm) -> str:
    """Each recipe's parameters, memory and measured time per step, and the steps it would train; before anything
    starts."""
    steps, batch, minutes, fit = budget(runner, form)
    lines = []
    chosen = recipes(form, vocab_of(runner, form))
    for i, recipe in enumerate(chosen):
        cfg = recipe.model
        check_size(runner, cfg)
        with PROBE_LOCK:  # in a child under the job memory limit: a model sized by the visitor never grows the server
            seconds = run_limited(probe_seconds_per_step, PretrainConfig(model=cfg, optimizer=recipe.optimizer,
                                                                         batch_size=batch),
                                  limits=runner.limits, what="Measuring a training step")
        tokens_per_step = batch * cfg.context_length
        if i == 0:
            first_steps = fitted_steps(60 * minutes, seconds, runner.limits.max_steps) if fit else steps
            plan = (f"Fitted to the {minutes:g}-minute budget: **{first_steps:,} steps** (the steps take "
                    f"{SCHEDULE_SHARE:.0%} of it; the training measures again on its own threads when it starts)."
                    if fit else f"{steps:,} steps would take about {duration(steps * seconds)}; the budget stops it "
                    f"after {duration(min(steps * seconds, 60 * minutes))}.")
        else:
            n = same_tokens(first_steps, chosen[0].model, cfg, runner.limits.max_steps)
            plan = f"The same {first_steps * batch * chosen[0].model.context_length:,} tokens: {n:,} steps, " \
                   f"about {duration(n * seconds)}."
        who = f"**{LETTERS[i]}: {recipe.label}.** " if len(chosen) > 1 else ""
        lines.append(f"{who}**{cfg.n_params() / 1e6:.2f}M parameters** ({describe(cfg)}). Training needs about "
                     f"**{cfg.training_memory_bytes(batch) / 2**20:,.0f} MB** (weights, gradients, optimizer, "
                     f"activations). Measured here: **{seconds * 1000:.0f} ms per step** of {tokens_per_step:,} "
                     f"tokens with {OPTIMIZER_LABELS[recipe.optimizer]} ({tokens_per_step / seconds:,.0f} tokens/s, "
                     f"on the app's threads). {plan}")
    return "\n\n".join(lines)


# -- what the page shows -------------------------------------------------------------------------------

def by_recipe(events: list[TrainEvent]) -> list[tuple[TrainEvent | None, list[TrainEvent]]]:
    """A job's events split by recipe at the "start" events naming one: (its latest such event, its events), in
    recipe order. Events before any (a job of another target) are the first recipe's."""
    markers: dict[int, TrainEvent | None] = {0: None}
    parts: dict[int, list[TrainEvent]] = {0: []}
    current = 0
    for event in events:
        if event.kind == "start" and "recipe" in event.metrics:
            current = int(event.metrics["recipe"])
            markers[current] = event
            parts.setdefault(current, [])
        else:
            parts[current].append(event)
    return [(markers.get(i), parts[i]) for i in sorted(parts)]


def recipe_curves(events: list[TrainEvent], title: str, axis: str = "tokens") -> go.Figure:
    """Each recipe's training and validation loss on one plot, against tokens seen or seconds of training."""
    parts = by_recipe(events)
    colors = ("#636efa", "#ef553b")
    fig = go.Figure()
    for i, (_, part) in enumerate(parts):
        who = f"{LETTERS[i]}: " if len(parts) > 1 else ""
        train: tuple[list[float], list[float]] = ([], [])
        val: tuple[list[float], list[float]] = ([], [])
        seconds = 0.0
        for e in part:
            if e.kind == "step":
                seconds = e.metrics["elapsed_s"]
            if e.kind == "step" or (e.kind == "eval" and "val_loss" in e.metrics):
                x, y = train if e.kind == "step" else val
                x.append(e.tokens_seen if axis == "tokens" else seconds)
                y.append(e.metrics["train_loss" if e.kind == "step" else "val_loss"])
        fig.add_trace(go.Scatter(x=train[0], y=train[1], mode="lines", name=f"{who}train",
                                 line={"color": colors[i % 2], "width": 1}, opacity=0.5))
        fig.add_trace(go.Scatter(x=val[0], y=val[1], mode="lines+markers", name=f"{who}validation (held out)",
                                 line={"color": colors[i % 2]}))
    fig.update_layout(title=title, xaxis_title="tokens seen" if axis == "tokens" else "seconds of training",
                      yaxis_title="cross-entropy loss (nats)", template="plotly_white")
    return fig


def recent_seconds_per_step(steps: list[TrainEvent]) -> float | None:
    """Seconds per step over the last RECENT_STEPS step events (evaluations included), None before there are two."""
    recent = steps[-RECENT_STEPS:]
    if len(recent) < 2:
        return None
    return (recent[-1].metrics["elapsed_s"] - recent[0].metrics["elapsed_s"]) / (recent[-1].step - recent[0].step)


def progress_line(job: Job) -> str:
    """Step, tokens/s, elapsed and the time left by steps: the steps left at the seconds per step of the recent steps
    (the measured probe's before there are two), then what the recipes still to come should take."""
    parts = by_recipe(job.events)
    marker, events = parts[-1]
    if marker is None and not events:
        return "Preparing the data and measuring a training step…"
    who = f"**{LETTERS[len(parts) - 1]}: {marker.text}.** " if marker and len(job.kwargs.get("plans", ())) > 1 else ""
    later = marker.metrics["later_s"] if marker else 0.0
    then = f" Then the second recipe: about {duration(later)}." if later else ""
    steps = [e for e in events if e.kind == "step"]
    if not steps:
        measured = marker.metrics["seconds_per_step"] if marker else 0.0
        return (f"{who}Measured **{measured * 1000:.0f} ms per step** here: {marker.total_steps:,} steps, about "
                f"{duration(marker.total_steps * measured)}. Preparing the data and the model…{then}")
    if events[-1].kind in ("stopped", "done"):
        return f"{who}Trained {steps[-1].step:,} steps; scoring the whole held-out text and the baselines…{then}"
    last = steps[-1]
    per_step = recent_seconds_per_step(steps) or (marker.metrics["seconds_per_step"] if marker else 0.0)
    left = (last.total_steps - last.step) * per_step
    refits = [e for e in events if e.kind == "refit"]
    refit = f" {refits[-1].text[0].upper()}{refits[-1].text[1:]}, so that its learning rate still decays in time." \
        if refits else ""
    return (f"{who}Step **{last.step:,} / {last.total_steps:,}**, {last.tokens_seen:,} tokens seen, "
            f"train loss {last.metrics['train_loss']:.3f}, {last.metrics['tokens_per_s']:,.0f} tokens/s, "
            f"{last.metrics['elapsed_s']:.0f} s elapsed, about {duration(left)} left "
            f"({per_step * 1000:.0f} ms per step lately).{refit}{then}")


PANEL = Panel(kind="train", what="training", prefix="", title="Training", progress=progress_line,
              curve=recipe_curves, stopping="Stopping: the run writes a checkpoint and its model at the current step.")


def start_training(runner: JobRunner, token: str | None, form: TrainForm, request: gr.Request = None
                   ) -> tuple[str, str]:
    """Check every setting, then queue the training (of both recipes, when comparing); returns the first status line
    and the owner. An impossible setting is a message here, before anything is allocated or queued.

    The owner goes back into the browser's stored token: a page that started before its token was
    set still finds its training after a reload.
    """
    owner = owner_of(token, request)
    data = form_data(runner, form)
    tokenizer = build_tokenizer(data, form.tokenizer_kind, vocab_of(runner, form), runner.limits)
    chosen = recipes(form, tokenizer.n_vocab)
    for recipe in chosen:
        check_size(runner, recipe.model)
    steps, batch, minutes, fit = budget(runner, form)
    peak_lr = check_field(PretrainConfig, "lr", form.lr, "Learning rate")
    warmup = check_field(PretrainConfig, "warmup_steps", form.warmup_steps, "Warmup steps",
                         high=runner.limits.max_steps)
    weight_decay = check_field(PretrainConfig, "weight_decay", form.weight_decay, "Weight decay")
    seed = check_field(PretrainConfig, "seed", form.seed, "Seed")
    n_tokens = len(tokenizer.encode(join_documents(data.train)))
    cfgs = []
    for recipe in chosen:
        windows = (n_tokens - 1) // recipe.model.context_length
        if windows < batch:
            raise ValueError(f"The training text is {n_tokens:,} tokens: {windows} windows of "
                             f"{recipe.model.context_length} tokens, fewer than a batch of {batch}. Add text, or lower "
                             f"the context length or the batch size.")
        cfgs.append(with_steps(PretrainConfig(
            model=recipe.model, optimizer=recipe.optimizer, max_steps=steps, batch_size=batch, lr=peak_lr,
            min_lr=peak_lr / 10, warmup_steps=min(warmup, steps), weight_decay=weight_decay, eval_windows=32,
            seed=seed, sample_prompt=_sample_prompt(data)), steps))

    def prepare(folder: Path) -> Submission:
        spec = "gpt2"
        if form.tokenizer_kind == "bpe":
            spec = str(folder / "tokenizer.tiktoken")
            BytePairEncoder(tokenizer.ranks).save(spec)  # the one trained for the preview: the child loads it
        plans = [Plan(recipe.label, cfg, folder if i == 0 else folder.with_name(folder.name + SECOND_RUN))
                 for i, (recipe, cfg) in enumerate(zip(chosen, cfgs, strict=True))]
        about = chosen[0].label + (f"; steps fitted to {minutes:g} min" if fit else "")
        if len(plans) > 1:
            about += f"; then {chosen[1].label} as {RUN_PREFIX}{plans[1].out_dir.name}, on as many tokens"
        return Submission(train_recipes, {"plans": plans, "fit_s": 60 * minutes if fit else None,
                                          "max_steps": runner.limits.max_steps, "time_limit_s": 60 * minutes,
                                          "train_texts": data.train, "val_texts": data.held_out,
                                          "tokenizer_spec": spec, "data_name": data.name}, about)

    return PANEL.start(runner, owner, prepare), owner


def _sample_prompt(data: TrainData) -> str:
    """The first few words of the training text: a prompt the model can make sense of."""
    words = data.train[0].split()[:4]
    return " ".join(words) if words else "The"


def stop_training(runner: JobRunner, token: str | None, request: gr.Request = None) -> str:
    return PANEL.stop(runner, token, request)


def resume_training(runner: JobRunner, token: str | None, request: gr.Request = None) -> str:
    """Continue the owner's stopped run from its checkpoint, with the same settings and data (a comparison: the
    recipe it stopped in, then the rest)."""
    return PANEL.resume(runner, token, request)


def result_markdown(result: Trained) -> str:
    """The held-out figures: one run's beside the baselines, or both recipes' in one table."""
    done = [run for run in result.runs if run is not None]
    first = done[0]
    names = [f"`{RUN_PREFIX}{name}`" for name, run in zip(result.names, result.runs, strict=True) if run is not None]
    if len(result.runs) == 1:
        rows = [("this model", first.held_out_bits_per_byte), *first.baselines.items()]
        table = "\n".join(f"| {n} | {b:.3f} |" for n, b in rows)
        return (f"### {RUN_PREFIX}{result.names[0]}\n\n{first.steps:,} steps, {first.tokens_seen:,} tokens seen, "
                f"held-out loss {first.held_out_loss:.3f}. It is in the model picker above as {names[0]}: the "
                f"Tokenizer, Attention and Generate tabs use it.\n\n| held out ({first.held_out_bytes:,} bytes) | "
                f"bits per byte |\n|---|---|\n{table}\n\nLower is better; the baselines see the same held-out text.")
    rows = []
    for i, (label, run) in enumerate(zip(result.labels, result.runs, strict=True)):
        letter = LETTERS[i]
        rows.append(f"| {letter}: {label} | not trained (stopped before it began) | | | |" if run is None else
                    f"| {letter}: {label} | {run.steps:,} | {run.tokens_seen:,} | {run.train_time_s:.0f} s | "
                    f"**{run.held_out_bits_per_byte:.3f}** |")
    rows += [f"| {name} | | | | {bpb:.3f} |" for name, bpb in first.baselines.items()]
    return (f"### Two recipes, the same data and tokenizer\n\n| held out ({first.held_out_bytes:,} bytes) | steps | "
            f"tokens seen | training time | bits per byte |\n|---|---|---|---|---|\n" + "\n".join(rows) +
            f"\n\nLower is better; the baselines see the same held-out text. In the model picker above: "
            f"{' and '.join(names)}.")


def status(runner: JobRunner, registry: ModelRegistry, token: str | None, axis: str = "tokens",
           request: gr.Request = None) -> tuple[str, go.Figure | None, pd.DataFrame, str, Any, Any]:
    """The owner's job as the page shows it: line, curve (against tokens or seconds), samples, result, timer,
    model picker."""
    view = PANEL.view(runner, token, request)
    figure = view.figure
    if figure is not None and axis != "tokens":
        figure = recipe_curves(view.events, f"{PANEL.title} {view.job.name}", "seconds")
    parts = by_recipe(view.events)
    rows = [(LETTERS[i], e.step, e.text) for i, (_, part) in enumerate(parts) for e in part if e.kind == "sample"]
    samples = (pd.DataFrame(rows, columns=["recipe", "step", "sample"]) if len(parts) > 1 else
               pd.DataFrame([row[1:] for row in rows], columns=["step", "sample"]))
    if not view.finished:
        return view.line, figure, samples, "", view.timer, gr.skip()
    return view.line, figure, samples, result_markdown(view.job.result), view.timer, gr.Dropdown(
        choices=visible_choices(registry, asker_of(token, request)))


def list_runs(registry: ModelRegistry, token: str | None = None, request: gr.Request = None) -> pd.DataFrame:
    """Every run with an exported model (in public mode, the asker's own): name, steps, held-out bits per byte."""
    rows = []
    asker = asker_of(token, request)
    for name in registry.run_names():
        if not may_see(registry.runs_root, name, asker):
            continue
        meta = registry.load(name).meta
        shared = (run_folder(registry.runs_root, name) / SHARED_FILE).is_file()
        rows.append((name, meta.get("steps"), meta.get("tokens_seen"), meta.get("held_out_bits_per_byte"),
                     meta.get("corpus"), "yes" if shared else ""))
    return pd.DataFrame(rows, columns=["model", "steps", "tokens seen", "held-out bits per byte", "data",
                                       "shared with every visitor"])


def download_run(registry: ModelRegistry, name: str, token: str | None = None, request: gr.Request = None) -> str:
    """The run as one zip (weights, config, tokenizer, log, card) for the user to keep or upload again; in public
    mode, only the session that trained or uploaded it gets it."""
    entry, asker = registry.resolve(name), asker_of(token, request)
    if entry.kind != "run" or not entry.path.is_dir() or not may_see(registry.runs_root, name, asker):
        raise ValueError(f"{name!r} is not a run trained here (or not yours); pick one from the list of runs.")
    return run_zip(entry.path)


def upload_run(runner: JobRunner, registry: ModelRegistry, file: str | None, token: str | None = None,
               request: gr.Request = None) -> tuple[str, Any]:
    """Load a run zip (as `download_run` makes them) into the runs folder, the uploader's, and the model picker."""
    asker = asker_of(token, request)
    name, _ = receive_run_zip(runner, file, owner=asker)
    return f"Loaded as `{RUN_PREFIX}{name}`: pick it in the model picker.", gr.Dropdown(
        choices=visible_choices(registry, asker))


# -- the tab -----------------------------------------------------------------------------------------

def switch_inputs(prefix: str = "") -> dict[str, Any]:
    """One recipe's architecture switches (TrainForm's fields after `prefix`), GPT-2's values first, each with its
    GPTConfig field's help text."""
    inputs: dict[str, Any] = {}
    with gr.Row():
        inputs["positions"] = radio(GPTConfig, "positions", SWITCH_LABELS["positions"], GPTConfig.positions)
        inputs["rope_base"] = number(GPTConfig, "rope_base", SWITCH_LABELS["rope_base"], GPTConfig.rope_base,
                                     info=help_of(GPTConfig, "rope_base"))
        inputs["norm"] = radio(GPTConfig, "norm", SWITCH_LABELS["norm"], GPTConfig.norm)
    with gr.Row():
        inputs["mlp"] = radio(GPTConfig, "mlp", SWITCH_LABELS["mlp"], GPTConfig.mlp)
        for name in ("mlp_hidden", "n_kv_heads"):
            inputs[name] = gr.Textbox("", label=SWITCH_LABELS[name], info=help_of(GPTConfig, name),
                                      placeholder="empty: the default")  # a number box cannot be left empty
    with gr.Row():
        for name in ("qk_norm", "bias", "qkv_bias", "tie_weights"):
            inputs[name] = checkbox(GPTConfig, name, SWITCH_LABELS[name], getattr(GPTConfig, name))
    return {prefix + name: component for name, component in inputs.items()}


def optimizer_radio(value: str, label: str, **kwargs: Any) -> gr.Radio:
    return gr.Radio([(OPTIMIZER_LABELS[o], o) for o in OPTIMIZER_LABELS], value=value, label=label,
                    info=help_of(PretrainConfig, "optimizer"), **kwargs)


def build(runner: JobRunner, registry: ModelRegistry, picker: gr.Dropdown, tab: gr.Tab) -> None:
    gr.Markdown("Train a GPT from scratch here, on this machine's CPU: pick the text, see what the model will "
                "read, choose its recipe (size, architecture, optimizer) and budget, and watch the loss fall and the "
                "samples turn from noise into words. The training measures its speed when it starts and fits its "
                "steps to the minutes; *Compare with a second recipe* trains another after it, on the same tokens.")
    token = owner_token(tab)
    limits = runner.limits
    form: dict[str, Any] = {}  # TrainForm's fields -> their components
    with gr.Accordion("1. Data", open=True):
        with gr.Row():
            form["corpora"] = gr.CheckboxGroup(list(CORPORA), value=DEFAULTS.corpora, label="Shipped corpora",
                                               info="Persuasion and five books of the Bible are always held out",
                                               elem_id="train-corpora")
            form["files"] = gr.File(file_count="multiple", file_types=[".txt"], type="filepath",
                                    label=f"Upload .txt files (up to {limits.max_upload_mb} MB each)")
        form["pasted"] = gr.Textbox(lines=4, label="Or paste text (its last tenth is held out)", elem_id="train-text")
        with gr.Row():
            form["tokenizer_kind"] = gr.Radio([("our BPE, trained on this text", "bpe"), ("GPT-2's BPE", "gpt2")],
                                              value=DEFAULTS.tokenizer_kind, label="Tokenizer")
            form["vocab_size"] = slider(GPTConfig, "vocab_size", "BPE vocabulary size", DEFAULTS.vocab_size,
                                        low=MIN_VOCAB, high=limits.max_vocab)
            stride = gr.Slider(1, 256, value=64, step=1, label="Stride of the windows shown")
        look = gr.Button("Show what the model will see", elem_id="train-preview")
        counts = gr.Markdown(elem_id="train-counts")
        tokens = gr.HTML()
        windows = gr.Dataframe(headers=WINDOW_COLUMNS, interactive=False, wrap=True,
                               label="Input/target windows (the book's chapter 2): press Preview")
    with gr.Accordion("2. Recipe and budget", open=True):
        with gr.Row():
            form["preset"] = gr.Dropdown(list(MODEL_PRESETS), value=DEFAULTS.preset, label="Model",
                                         elem_id="train-preset",
                                         info="classroom: about 1M parameters; tiny: smaller, for a first look; "
                                              "-modern: the same size with today's switches on; custom: below")
            form["optimizer"] = optimizer_radio(DEFAULTS.optimizer, "Optimizer", elem_id="train-optimizer")
            form["drop_rate"] = slider(GPTConfig, "drop_rate", "Dropout", DEFAULTS.drop_rate, step=0.05)
        with gr.Accordion("Custom model: its size and architecture switches", open=False):
            gr.Markdown("Used when the model is **custom**. Each switch is one step from GPT-2 (2019) toward "
                        "today's open models (Llama 3, Qwen3); the *-modern* presets have them all on, with half as "
                        "many key/value heads as heads.")
            with gr.Row():
                form["n_layers"] = slider(GPTConfig, "n_layers", "Layers (custom)", DEFAULTS.n_layers)
                form["n_heads"] = slider(GPTConfig, "n_heads", "Heads (custom)", DEFAULTS.n_heads)
                form["emb_dim"] = slider(GPTConfig, "emb_dim", "Width (custom)", DEFAULTS.emb_dim, step=8)
                form["context_length"] = slider(GPTConfig, "context_length", "Context length (custom)",
                                                DEFAULTS.context_length, step=8)
            form |= switch_inputs()
        with gr.Row():
            form["fit_steps"] = gr.Checkbox(DEFAULTS.fit_steps, label="Fit the steps to the minutes",
                                            elem_id="train-fit",
                                            info="a step is timed when the training starts: the learning rate's "
                                                 "schedule then ends inside the budget")
            form["max_steps"] = slider(PretrainConfig, "max_steps", "Steps (when not fitted)", DEFAULTS.max_steps,
                                       high=limits.max_steps, elem_id="train-steps")
            form["minutes"] = gr.Number(DEFAULTS.minutes, minimum=0.1, maximum=limits.max_minutes,
                                        label="Minutes at most")
            form["batch_size"] = slider(PretrainConfig, "batch_size", "Batch size", DEFAULTS.batch_size)
        with gr.Row():
            form["lr"] = number(PretrainConfig, "lr", "Learning rate (peak; cosine to a tenth)", DEFAULTS.lr)
            form["warmup_steps"] = number(PretrainConfig, "warmup_steps", "Warmup steps", DEFAULTS.warmup_steps,
                                          high=limits.max_steps)
            form["weight_decay"] = number(PretrainConfig, "weight_decay", "Weight decay", DEFAULTS.weight_decay)
            form["seed"] = number(PretrainConfig, "seed", "Seed", DEFAULTS.seed)
        with gr.Accordion("Compare with a second recipe", open=False):
            form["compare"] = gr.Checkbox(False, label="Train a second recipe after the first", elem_id="train-compare",
                                          info="on the same data, tokenizer and number of tokens, with the same "
                                               "learning rate: both curves, samples and held-out scores side by side")
            with gr.Row():
                form["b_preset"] = gr.Dropdown(list(MODEL_PRESETS), value=SECOND_RECIPE["preset"],
                                               label="Second recipe's model", elem_id="train-b-preset",
                                               info="custom: the custom sizes above, with the switches below")
                form["b_optimizer"] = optimizer_radio(SECOND_RECIPE["optimizer"], "Second recipe's optimizer",
                                                      elem_id="train-b-optimizer")
            with gr.Accordion("Second recipe's switches (when its model is custom)", open=False):
                form |= switch_inputs(SECOND)
        check = gr.Button("Check the recipe (a measured step)", elem_id="train-check")
        model_info = gr.Markdown(elem_id="train-model-info")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        resume = gr.Button("Resume", elem_id="train-resume")
    line = gr.Markdown(elem_id="train-status")
    axis = gr.Radio([("tokens seen", "tokens"), ("seconds of training", "seconds")], value="tokens",
                    label="Loss against", elem_id="train-axis")
    curve = Plot(label="Loss", elem_id="train-curve")
    samples = gr.Dataframe(interactive=False, wrap=True, label="Samples at each evaluation", elem_id="train-samples")
    result = gr.Markdown(elem_id="train-result")
    with gr.Accordion("Runs: download, share, upload", open=False):
        runs = gr.Dataframe(interactive=False, label="Runs trained here")
        with gr.Row():
            run_name = gr.Textbox(label="Run to download or share", placeholder="run:…", elem_id="train-run-name")
            download = gr.Button("Download as .zip")
        zipped = gr.File(label="Run archive")
        uploaded = gr.Markdown()
        share_buttons(registry, run_name, token, uploaded, "train")
        upload = gr.File(file_types=[".zip"], type="filepath", label="Upload a run .zip")
    timer = gr.Timer(1.0, active=False)

    fields = {name: form[name] for name in TrainForm.__dataclass_fields__}  # the API's order: the form's

    look.click(user_errors(reads_form(TrainForm, functools.partial(preview, runner))), stride,
               [tokens, windows, counts], inputs_kwargs=fields, api_name="train_preview")
    check.click(user_errors(reads_form(TrainForm, functools.partial(check_model, runner))), None, model_info,
                inputs_kwargs=fields, api_name="train_check")
    watch = user_errors(functools.partial(status, runner, registry))
    watching, watched = [token, axis], [line, curve, samples, result, timer, picker]
    start.click(user_errors(on_form(TrainForm, functools.partial(start_training, runner))), token, [line, token],
                inputs_kwargs=fields, api_name="train_start").success(watch, watching, watched,
                                                                      api_visibility="private")
    stop.click(user_errors(functools.partial(stop_training, runner)), token, line, api_name="train_stop")
    resume.click(user_errors(functools.partial(resume_training, runner)), token, line,
                 api_name="train_resume").success(watch, watching, watched, api_visibility="private")
    timer.tick(watch, watching, watched, api_name="train_status", concurrency_id="train_status", concurrency_limit=8)
    axis.change(watch, watching, watched, api_visibility="private")
    runs_fn = user_errors(functools.partial(list_runs, registry))
    result.change(runs_fn, token, runs, api_name="train_runs")
    download.click(user_errors(functools.partial(download_run, registry)), [run_name, token], zipped,
                   api_name="train_download")
    upload.upload(user_errors(functools.partial(upload_run, runner, registry)), [upload, token], [uploaded, picker],
                  api_name="train_upload")
    # The token is written by the first start (it is that page's session) and read back from the
    # browser's storage after a reload. A tab's components exist only once it is opened: opening it
    # shows the visitor's training again.
    tab.select(watch, watching, watched, api_visibility="private")
