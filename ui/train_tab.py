"""Tab: train a GPT from scratch in the browser (the book's chapters 2 and 5, live).

Data (shipped corpora, pasted text, uploaded .txt files) -> what the model sees (tokens and the
sliding window's input/target pairs) -> tokenizer -> model -> budget -> a live loss curve and
samples -> a run in the model picker, its held-out bits per byte beside `xz -9` and an n-gram, and a
zip to download (and upload again). The training itself runs in the job runner (`ui/jobs.py`).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
import torch

from gpt.bpe import BytePairEncoder
from gpt.config import PRESETS, GPTConfig, check_option, choices
from gpt.data.corpus import AUSTEN_NOVELS, HELD_OUT_NOVELS, MODERN_TITLES, hold_out_tails, join_documents, select_corpus
from gpt.data.windows import SlidingWindowDataset
from gpt.kernels import accelerate
from gpt.model import GPTModel
from gpt.pretrain.runs import PretrainRun, train_run
from gpt.pretrain.trainer import PretrainConfig
from gpt.tokenizer import Tokenizer, TokenPiece, load_tokenizer
from gpt.training.optim import seconds_per_step
from ui.common import check_number, user_errors
from ui.forms import check_field, field_range, number, on_form, reads_form, slider
from ui.jobs import Job, JobRunner
from ui.labels import piece_label, tokens_html
from ui.registry import RUN_PREFIX, ModelRegistry
from ui.training_panel import Panel, Submission, duration, loss_curve, owner_of, owner_token, receive_run_zip, run_zip

KJV = "King James Bible (61 books)"
# The checkboxes' labels -> what `select_corpus` takes: a source, or one novel
CORPORA = ({f"Austen: {name}": f"austen-{name}" for name in AUSTEN_NOVELS if name not in HELD_OUT_NOVELS}
           | {KJV: "kjv"} | {title: source for source, title in MODERN_TITLES.items()})
DEFAULT_CORPORA = ["Austen: prideprejudice"]
MODEL_PRESETS = ("classroom", "tiny", "shipped-small", "custom")
MIN_VOCAB = 257  # our BPE's smallest vocabulary: the 256 bytes and <|endoftext|>
PASTED_HELD_OUT = 0.1  # the tail of pasted and uploaded text that is held out
PREVIEW_TOKENS = 120
WINDOW_TOKENS_SHOWN = 24  # of each window in the table: enough to see the shift by one
PREVIEW_WINDOWS = 4
PROBE_STEPS = 2


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
    takes the stride of the windows shown first).
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


@functools.lru_cache(maxsize=4)
def _trained_bpe(text: str, vocab_size: int) -> Tokenizer:
    return BytePairEncoder.train(text, vocab_size).to_tokenizer("bpe")


def build_tokenizer(data: TrainData, kind: str, vocab_size: int) -> Tokenizer:
    """GPT-2's BPE, or ours trained on the training text to `vocab_size` (fewer if the text has no more pairs)."""
    if kind == "gpt2":
        return load_tokenizer("gpt2")
    if kind != "bpe":
        raise ValueError(f"Unknown tokenizer {kind!r}: choose bpe or gpt2.")
    return _trained_bpe("\n\n".join(data.train), vocab_size)


def vocab_of(runner: JobRunner, form: TrainForm) -> int:
    """The vocabulary asked for: GPT-2's, or ours between a byte-level minimum and the app's limit (its BPE is
    trained inside the request)."""
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
    tokenizer = build_tokenizer(data, form.tokenizer_kind, vocab_size)
    first = data.train[0][:4000]
    pieces = tokenizer.pieces(first)[:PREVIEW_TOKENS]
    ids = tokenizer.encode(join_documents(data.train))
    windows = SlidingWindowDataset(ids, context, stride)
    rows = []
    for i in range(min(PREVIEW_WINDOWS, len(windows))):
        x, y = windows[i]
        rows.append((i, i * stride, _shown(tokenizer, x.tolist()[:WINDOW_TOKENS_SHOWN]),
                     _shown(tokenizer, y.tolist()[:WINDOW_TOKENS_SHOWN])))
    table = pd.DataFrame(rows, columns=["window", "start", "input (first tokens)", "target: the input shifted by one"])
    n_chars = sum(map(len, data.train))
    requested = "" if tokenizer.n_vocab >= vocab_size or form.tokenizer_kind == "gpt2" else (
        f" (you asked for {vocab_size:,}: the text has no more pairs to merge)")
    counts = (f"**{data.name}**: {n_chars:,} characters to train on, {sum(map(len, data.held_out)):,} held out. "
              f"Tokenizer: {'GPT-2' if form.tokenizer_kind == 'gpt2' else 'our BPE'}, "
              f"**{tokenizer.n_vocab:,}** tokens{requested}; {len(ids):,} training tokens, "
              f"**{n_chars / max(len(ids), 1):.2f}** characters per token. "
              f"Windows of {context} tokens every {stride}: **{len(windows):,}**.")
    return tokens_html(pieces), table, counts


def _shown(tokenizer: Tokenizer, ids: list[int]) -> str:
    """A window's tokens separated by `|`, whitespace visible."""
    return " | ".join(piece_label(TokenPiece(i, tokenizer.decode_bytes([i]), 0, 0)) for i in ids) + " …"


# -- the model ---------------------------------------------------------------------------------------

def model_config(form: TrainForm, vocab_size: int) -> GPTConfig:
    """The preset's shape, or the custom one; the vocabulary is the tokenizer's."""
    if form.preset not in MODEL_PRESETS:
        raise ValueError(f"Unknown model preset {form.preset!r}; choose one of {', '.join(MODEL_PRESETS)}.")
    drop = check_field(GPTConfig, "drop_rate", form.drop_rate, "Dropout")
    positions = check_option(GPTConfig, "positions", form.positions, "Positions")
    if form.preset != "custom":
        return GPTConfig.preset(form.preset, vocab_size=vocab_size, drop_rate=drop, positions=positions)
    return GPTConfig(vocab_size=vocab_size, n_layers=check_field(GPTConfig, "n_layers", form.n_layers, "Layers"),
                     n_heads=check_field(GPTConfig, "n_heads", form.n_heads, "Heads"),
                     emb_dim=check_field(GPTConfig, "emb_dim", form.emb_dim, "Width"),
                     context_length=check_field(GPTConfig, "context_length", form.context_length, "Context length"),
                     drop_rate=drop, positions=positions)


def check_size(runner: JobRunner, cfg: GPTConfig) -> None:
    if cfg.n_params() > runner.limits.max_params:
        raise ValueError(f"The model has {cfg.n_params() / 1e6:.1f}M parameters; the limit here is "
                         f"{runner.limits.max_params / 1e6:.0f}M. Make it smaller (fewer layers, narrower, "
                         f"or a smaller vocabulary).")


def budget(runner: JobRunner, form: TrainForm) -> tuple[int, int, float]:
    """(steps, batch size, minutes), checked: the config's bounds, within the app's limits."""
    limits = runner.limits
    return (check_field(PretrainConfig, "max_steps", form.max_steps, "Steps", high=limits.max_steps),
            check_field(PretrainConfig, "batch_size", form.batch_size, "Batch size"),
            check_number(form.minutes, "Minutes", 0.1, limits.max_minutes))


def check_model(runner: JobRunner, form: TrainForm) -> str:
    """Parameters, memory and a measured time per step, before anything starts."""
    cfg = model_config(form, vocab_of(runner, form))
    steps, batch, minutes = budget(runner, form)
    check_size(runner, cfg)
    torch.manual_seed(0)
    batch_tokens = torch.randint(0, cfg.vocab_size, (batch, cfg.context_length + 1))
    seconds = seconds_per_step(accelerate(GPTModel(cfg)), batch_tokens, PROBE_STEPS)  # the model the training runs
    tokens_per_step = batch * cfg.context_length
    planned = min(steps * seconds, 60 * minutes)
    return (f"**{cfg.n_params() / 1e6:.2f}M parameters** ({cfg.n_layers} layers, {cfg.n_heads} heads, "
            f"{cfg.emb_dim} wide, context {cfg.context_length}, {cfg.positions} positions). Training needs about "
            f"**{cfg.training_memory_bytes(batch) / 2**20:,.0f} MB** (weights, gradients, AdamW, activations). "
            f"Measured here: **{seconds * 1000:.0f} ms per step** of {tokens_per_step:,} tokens "
            f"({tokens_per_step / seconds:,.0f} tokens/s, on the app's threads; the training process has its own). "
            f"{steps:,} steps would take about {duration(steps * seconds)}; the budget stops it after "
            f"{duration(planned)}.")


# -- jobs --------------------------------------------------------------------------------------------

def progress_line(job: Job) -> str:
    """Step, tokens/s, elapsed and an estimate of the time left."""
    steps = [e for e in job.events if e.kind == "step"]
    if not steps:
        return "Preparing the data and the model…"
    if job.events[-1].kind in ("stopped", "done"):
        return f"Trained {steps[-1].step:,} steps; scoring the whole held-out text and the baselines…"
    last = steps[-1]
    elapsed = last.metrics["elapsed_s"]
    budget_s = job.kwargs.get("time_limit_s") or math.inf
    first = steps[0]
    done_here = last.step - first.step + 1
    per_step = (elapsed - first.metrics["elapsed_s"]) / max(done_here - 1, 1) if done_here > 1 else elapsed
    left = min((last.total_steps - last.step) * per_step, max(budget_s - (time.time() - (job.started or 0)), 0))
    return (f"Step **{last.step:,} / {last.total_steps:,}**, {last.tokens_seen:,} tokens seen, "
            f"train loss {last.metrics['train_loss']:.3f}, {last.metrics['tokens_per_s']:,.0f} tokens/s, "
            f"{elapsed:.0f} s elapsed, about {left:.0f} s left.")


PANEL = Panel(kind="train", what="training", prefix="", title="Training", progress=progress_line, curve=loss_curve,
              stopping="Stopping: the run writes a checkpoint and its model at the current step.")


def start_training(runner: JobRunner, token: str | None, form: TrainForm, request: gr.Request = None
                   ) -> tuple[str, str]:
    """Check every setting, then queue the training; returns the first status line and the owner.

    The owner goes back into the browser's stored token: a page that started before its token was
    set still finds its training after a reload.
    """
    owner = owner_of(token, request)
    data = form_data(runner, form)
    tokenizer = build_tokenizer(data, form.tokenizer_kind, vocab_of(runner, form))
    model = model_config(form, tokenizer.n_vocab)
    check_size(runner, model)
    steps, batch, minutes = budget(runner, form)
    peak_lr = check_field(PretrainConfig, "lr", form.lr, "Learning rate")
    cfg = PretrainConfig(
        model=model, max_steps=steps, batch_size=batch, lr=peak_lr, min_lr=peak_lr / 10,
        warmup_steps=min(check_field(PretrainConfig, "warmup_steps", form.warmup_steps, "Warmup steps",
                                     high=runner.limits.max_steps), steps),
        weight_decay=check_field(PretrainConfig, "weight_decay", form.weight_decay, "Weight decay"),
        eval_interval=max(1, steps // 20), checkpoint_interval=max(1, steps // 10), eval_windows=32,
        seed=check_field(PretrainConfig, "seed", form.seed, "Seed"), sample_prompt=_sample_prompt(data),
    )
    n_tokens = len(tokenizer.encode(join_documents(data.train)))
    windows = (n_tokens - 1) // model.context_length
    if windows < cfg.batch_size:
        raise ValueError(f"The training text is {n_tokens:,} tokens: {windows} windows of {model.context_length} "
                         f"tokens, fewer than a batch of {cfg.batch_size}. Add text, or lower the context length "
                         f"or the batch size.")

    def prepare(folder: Path) -> Submission:
        spec = "gpt2"
        if form.tokenizer_kind == "bpe":
            spec = str(folder / "tokenizer.tiktoken")
            BytePairEncoder(tokenizer.ranks).save(spec)  # the one trained for the preview: the child loads it
        return Submission(train_run, {"cfg": cfg, "train_texts": data.train, "val_texts": data.held_out,
                                      "tokenizer_spec": spec, "out_dir": folder, "data_name": data.name,
                                      "time_limit_s": 60 * minutes, "baseline_orders": (5,)})

    return PANEL.start(runner, owner, prepare), owner


def _sample_prompt(data: TrainData) -> str:
    """The first few words of the training text: a prompt the model can make sense of."""
    words = data.train[0].split()[:4]
    return " ".join(words) if words else "The"


def stop_training(runner: JobRunner, token: str | None, request: gr.Request = None) -> str:
    return PANEL.stop(runner, token, request)


def resume_training(runner: JobRunner, token: str | None, request: gr.Request = None) -> str:
    """Continue the owner's stopped run from its checkpoint, with the same settings and data."""
    return PANEL.resume(runner, token, request)


def result_markdown(run: PretrainRun, name: str) -> str:
    rows = [("this model", run.held_out_bits_per_byte), *run.baselines.items()]
    table = "\n".join(f"| {n} | {b:.3f} |" for n, b in rows)
    return (f"### {RUN_PREFIX}{name}\n\n{run.steps:,} steps, {run.tokens_seen:,} tokens seen, held-out loss "
            f"{run.held_out_loss:.3f}. It is in the model picker above as `{RUN_PREFIX}{name}`: the Tokenizer, "
            f"Attention and Generate tabs use it.\n\n| held out ({run.held_out_bytes:,} bytes) | bits per byte |"
            f"\n|---|---|\n{table}\n\nLower is better; the baselines see the same held-out text.")


def status(runner: JobRunner, registry: ModelRegistry, token: str | None, request: gr.Request = None
           ) -> tuple[str, go.Figure | None, pd.DataFrame, str, Any, Any]:
    """The owner's job as the page shows it: line, curve, samples, result, timer, model picker."""
    view = PANEL.view(runner, token, request)
    samples = pd.DataFrame([(e.step, e.text) for e in view.events if e.kind == "sample"], columns=["step", "sample"])
    if not view.finished:
        return view.line, view.figure, samples, "", view.timer, gr.skip()
    return (view.line, view.figure, samples, result_markdown(view.job.result, view.job.name), view.timer,
            gr.Dropdown(choices=registry.names()))


def list_runs(registry: ModelRegistry) -> pd.DataFrame:
    """Every run with an exported model: name, steps, held-out bits per byte."""
    rows = []
    for name in registry.run_names():
        meta = registry.load(name).meta
        rows.append((name, meta.get("steps"), meta.get("tokens_seen"), meta.get("held_out_bits_per_byte"),
                     meta.get("corpus")))
    return pd.DataFrame(rows, columns=["model", "steps", "tokens seen", "held-out bits per byte", "data"])


def download_run(registry: ModelRegistry, name: str) -> str:
    """The run as one zip (weights, config, tokenizer, log, card) for the user to keep or upload again."""
    entry = registry.resolve(name)
    if entry.kind != "run" or not entry.path.is_dir():
        raise ValueError(f"{name!r} is not a run trained here; pick one from the list of runs.")
    return run_zip(entry.path)


def upload_run(runner: JobRunner, registry: ModelRegistry, file: str | None) -> tuple[str, Any]:
    """Load a run zip (as `download_run` makes them) into the runs folder and the model picker."""
    name, _ = receive_run_zip(runner, file)
    return f"Loaded as `{RUN_PREFIX}{name}`: pick it in the model picker.", gr.Dropdown(choices=registry.names())


# -- the tab -----------------------------------------------------------------------------------------

def build(runner: JobRunner, registry: ModelRegistry, picker: gr.Dropdown, tab: gr.Tab) -> None:
    gr.Markdown("Train a GPT from scratch here, on this machine's CPU: pick the text, see what the model will "
                "read, choose its size and budget, and watch the loss fall and the samples turn from noise into "
                "words. The defaults give word-like text in about two minutes.")
    token = owner_token()
    limits = runner.limits
    form: dict[str, Any] = {}  # TrainForm's fields -> their components
    with gr.Accordion("1. Data", open=True):
        with gr.Row():
            form["corpora"] = gr.CheckboxGroup(list(CORPORA), value=DEFAULT_CORPORA, label="Shipped corpora",
                                               info="Persuasion and five books of the Bible are always held out",
                                               elem_id="train-corpora")
            form["files"] = gr.File(file_count="multiple", file_types=[".txt"], type="filepath",
                                    label=f"Upload .txt files (up to {limits.max_upload_mb} MB each)")
        form["pasted"] = gr.Textbox(lines=4, label="Or paste text (its last tenth is held out)", elem_id="train-text")
        with gr.Row():
            form["tokenizer_kind"] = gr.Radio([("our BPE, trained on this text", "bpe"), ("GPT-2's BPE", "gpt2")],
                                              value="bpe", label="Tokenizer")
            form["vocab_size"] = slider(GPTConfig, "vocab_size", "BPE vocabulary size", 1024, low=MIN_VOCAB,
                                        high=limits.max_vocab)
            stride = gr.Slider(1, 256, value=64, step=1, label="Stride of the windows shown")
        look = gr.Button("Show what the model will see", elem_id="train-preview")
        counts = gr.Markdown(elem_id="train-counts")
        tokens = gr.HTML()
        windows = gr.Dataframe(interactive=False, wrap=True, label="Input/target windows (the book's chapter 2)")
    with gr.Accordion("2. Model and budget", open=True):
        with gr.Row():
            form["preset"] = gr.Dropdown(list(MODEL_PRESETS), value="classroom", label="Model", elem_id="train-preset",
                                         info="classroom: about 1M parameters, two minutes; tiny: a minute; "
                                              "custom: the sliders")
            form["positions"] = gr.Radio(list(choices(GPTConfig, "positions")), value="learned", label="Positions")
            form["drop_rate"] = slider(GPTConfig, "drop_rate", "Dropout", 0.0, step=0.05)
        with gr.Row():
            form["n_layers"] = slider(GPTConfig, "n_layers", "Layers (custom)", 4)
            form["n_heads"] = slider(GPTConfig, "n_heads", "Heads (custom)", 4)
            form["emb_dim"] = slider(GPTConfig, "emb_dim", "Width (custom)", 128, step=8)
            form["context_length"] = slider(GPTConfig, "context_length", "Context length (custom)", 128, step=8)
        with gr.Row():
            form["max_steps"] = slider(PretrainConfig, "max_steps", "Steps", 600, high=limits.max_steps,
                                       elem_id="train-steps")
            form["minutes"] = gr.Number(3.0, minimum=0.1, maximum=limits.max_minutes, label="Minutes at most")
            form["batch_size"] = slider(PretrainConfig, "batch_size", "Batch size", 16)
        with gr.Row():
            form["lr"] = number(PretrainConfig, "lr", "Learning rate (peak; cosine to a tenth)", 3e-3)
            form["warmup_steps"] = number(PretrainConfig, "warmup_steps", "Warmup steps", 30, high=limits.max_steps)
            form["weight_decay"] = number(PretrainConfig, "weight_decay", "Weight decay", 0.1)
            form["seed"] = number(PretrainConfig, "seed", "Seed", 123)
        check = gr.Button("Check the model (two-step probe)", elem_id="train-check")
        model_info = gr.Markdown(elem_id="train-model-info")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        resume = gr.Button("Resume", elem_id="train-resume")
    line = gr.Markdown(elem_id="train-status")
    curve = gr.Plot(label="Loss", elem_id="train-curve")
    samples = gr.Dataframe(interactive=False, wrap=True, label="Samples at each evaluation", elem_id="train-samples")
    result = gr.Markdown(elem_id="train-result")
    with gr.Accordion("Runs: download, upload", open=False):
        runs = gr.Dataframe(interactive=False, label="Runs trained here")
        with gr.Row():
            run_name = gr.Textbox(label="Run to download", placeholder="run:…", elem_id="train-run-name")
            download = gr.Button("Download as .zip")
        zipped = gr.File(label="Run archive")
        upload = gr.File(file_types=[".zip"], type="filepath", label="Upload a run .zip")
        uploaded = gr.Markdown()
    timer = gr.Timer(1.0, active=False)

    fields = {name: form[name] for name in TrainForm.__dataclass_fields__}  # the API's order: the form's

    look.click(user_errors(reads_form(TrainForm, functools.partial(preview, runner))), stride,
               [tokens, windows, counts], inputs_kwargs=fields, api_name="train_preview")
    check.click(user_errors(reads_form(TrainForm, functools.partial(check_model, runner))), None, model_info,
                inputs_kwargs=fields, api_name="train_check")
    watch = user_errors(functools.partial(status, runner, registry))
    watched = [line, curve, samples, result, timer, picker]
    start.click(user_errors(on_form(TrainForm, functools.partial(start_training, runner))), token, [line, token],
                inputs_kwargs=fields, api_name="train_start").success(watch, token, watched, api_visibility="private")
    stop.click(user_errors(functools.partial(stop_training, runner)), token, line, api_name="train_stop")
    resume.click(user_errors(functools.partial(resume_training, runner)), token, line,
                 api_name="train_resume").success(watch, token, watched, api_visibility="private")
    timer.tick(watch, token, watched, api_name="train_status", concurrency_id="train_status", concurrency_limit=8)
    runs_fn = user_errors(functools.partial(list_runs, registry))
    result.change(runs_fn, None, runs, api_name="train_runs")
    download.click(user_errors(functools.partial(download_run, registry)), run_name, zipped, api_name="train_download")
    upload.upload(user_errors(functools.partial(upload_run, runner, registry)), upload, [uploaded, picker],
                  api_name="train_upload")
    # The token is written by the first start (it is that page's session) and read back from the
    # browser's storage after a reload. A tab's components exist only once it is opened: opening it
    # shows the visitor's training again.
    tab.select(watch, token, watched, api_visibility="private")
