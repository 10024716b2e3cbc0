"""Tab 4, Spam: a classifier's verdict, the tokens it looked at, its figures on each test set; and finetuning
one's own (the book's chapter 6, with LoRA from appendix E) in the background, with live curves, a table
of every experiment, and a zip to download and upload again.

The finetuning runs in the job runner (`ui/jobs.py`, kind "classifier") into `<runs_dir>/<name>/classifier/`,
where the registry finds it: the picker offers it as `run:<name>`.
"""

from __future__ import annotations

import functools
import html
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gpt.classify import data
from gpt.classify.app_defaults import DEFAULTS, LORA, DefaultsMeasurement, read_measurement
from gpt.classify.archive import read_classifier_archive, write_classifier_archive
from gpt.classify.classifier import (
    CLASSIFIER_CONFIG,
    METRICS_FILE,
    ClassifierMetrics,
    TextClassifier,
    parse_test_metrics,
    read_classifier_config,
)
from gpt.classify.data import SET_TITLES
from gpt.classify.finetune import (
    CLASSIFIER_PRESETS,
    HEAD_READS,
    ClassifierConfig,
    describe_training,
    finetune_job,
    resources_line,
)
from gpt.classify.record import read_record
from gpt.config import choices
from gpt.pretrain.archive import ArchiveError
from gpt.training.events import TrainEvent
from ui.common import clip_chars, join_notices, require_text, user_errors
from ui.figures import Plot
from ui.forms import check_field, number, on_form, slider
from ui.jobs import Job, JobRunner, probe_classifier_seconds, run_limited
from ui.registry import RUN_CLASSIFIER, RUN_PREFIX, SHIPPED_CLASSIFIER, BaseModel, ModelRegistry, recorded_base_name
from ui.training_panel import (
    PROBE_LOCK,
    Panel,
    Submission,
    asker_of,
    check_memory,
    check_upload,
    duration,
    estimate_line,
    finetune_base,
    keep_upload,
    may_see,
    owner_of,
    owner_token,
    share_buttons,
    upload_folder,
)

CSS = (".attended {line-height: 2}\n"
       ".attended span {padding: 1px 2px; margin: 1px; border-radius: 3px; font-family: monospace; "
       "white-space: pre; color: #111}\n")
# The examples the tab offers for the spam data, picked by hand from messages no classifier of that data trains
# on (the modern held-out file, then the SMS test split): clear cases, fit for a classroom. tests/ui/test_spam_tab.py
# checks that each is held out and fit to show, and that the shipped classifier labels each one right.
EXAMPLES: tuple[tuple[str, str], ...] = (  # (message, its true label), in the order shown
    ("Congratulations! You have won a $1000 Walmart gift card. Click here to claim your prize now!", "spam"),
    ("Your Nintendo eShop receipt: Mario Kart 8 Deluxe, £49.99. Happy racing!", "ham"),
    ("Courier alert: missed drop-off. Confirm your postcode and pay 79p to rebook at courier-rebook.help", "spam"),
    ("I just won the office raffle lol, a free spa day!!", "ham"),
    ("Your bank account has been locked. Please verify your identity to unlock it: secure-bank-unlock.com", "spam"),
    ("Your WhatsApp code: 294-117. Don't share this code with others", "ham"),
    ("Congratulations! You have received a $500 crypto bonus. Withdraw it now at bonus-wallet.io", "spam"),
    ("Your appointment at City Physio is on Monday 9 Sept at 11:15. Call us if you need to change it.", "ham"),
    ("Camera - You are awarded a SiPix Digital Camera! call 09061221066 fromm landline. Delivery within 28 days",
     "spam"),
    ("Ok both our days. So what are you making for dinner tonite? Am I invited?", "ham"),
)
EXAMPLES_PER_CLASS = 3  # of a classifier's own test messages, for one of other data
KIND = "classifier"  # the runner's job kind of this tab
TRAINS = ("last blocks", "all layers", "LoRA")
SMS_DATA, FILE_DATA = "SMS Spam Collection (the shipped copy)", "my CSV/TSV file"
DATA_COPY = "data"  # the run folder's copy of an uploaded table
APP, APP_LORA = CLASSIFIER_PRESETS[DEFAULTS], CLASSIFIER_PRESETS[LORA]  # where the form starts
OPEN_BASES = ("smollm2-135m",)  # the open models offered as bases once on disk


@dataclass(frozen=True)
class FinetuneForm:
    """The finetuning panel's settings as the page (or an API caller) sends them, unchecked; the field order is
    the order of the values `/spam_finetune_start` takes."""

    base: str
    head_token: str
    trains: str
    blocks: float
    lora_rank: float
    lora_alpha: float
    epochs: float
    lr: float
    seed: float
    data_choice: str
    file: str | None


def classifier(registry: ModelRegistry, name: str = SHIPPED_CLASSIFIER) -> TextClassifier:
    """A classifier by picker name, loaded once; a clear message if the shipped one is not there."""
    if name == SHIPPED_CLASSIFIER and not (registry.shipped_path(name) / CLASSIFIER_CONFIG).is_file():
        raise FileNotFoundError(f"the spam classifier is not available: no {CLASSIFIER_CONFIG} in "
                                f"{registry.shipped_path(name)}")
    return registry.classifier(name)


def visible_classifiers(registry: ModelRegistry, asker: str | None) -> list[str]:
    """The classifiers `asker` (`asker_of`) may pick: on a public server the shipped one and their own."""
    return [name for name in registry.classifier_names() if may_see(registry.runs_root, name, asker)]


def check_visible(registry: ModelRegistry, name: str, token: str | None, request: gr.Request | None) -> str:
    """`name`, once the asker may use it: on a public server another visitor's classifier (its test figures and
    examples come from their data) is refused as if it were not there."""
    if not may_see(registry.runs_root, name, asker_of(token, request)):
        raise ValueError(f"{name!r} is not one of your classifiers: pick one in the list.")
    return name


def attention_html(pairs: list[tuple[str, float]]) -> str:
    """Tokens shaded by how much the position the verdict is read at attends to them."""
    top = max((w for _, w in pairs), default=1.0) or 1.0
    spans = []
    for piece, weight in pairs:
        alpha = weight / top
        text = html.escape(piece.replace(" ", "␣").replace("\n", "↵"))
        spans.append(f'<span title="{weight:.3f}" style="background: rgba(220, 38, 38, {alpha:.2f})">{text}</span>')
    return f'<div class="attended">{"".join(spans)}</div>'


def classify(registry: ModelRegistry, message: str, name: str = SHIPPED_CLASSIFIER, token: str | None = None,
             request: gr.Request = None) -> tuple[dict[str, float], str, str]:
    """Label probabilities, the attention shading, and any notice (a long message keeps its start)."""
    message, cut = clip_chars(require_text(message, "message"))
    model = classifier(registry, check_visible(registry, name, token, request))
    n_tokens, context = len(model.tokenizer.encode(message)), model.model.cfg.context_length
    too_long = (f"The message has {n_tokens:,} tokens; the classifier reads the first {context:,}."
                if n_tokens > context else "")
    prediction = model.predict(message)
    return prediction.probs, attention_html(model.token_attention(message)), join_notices(cut, too_long)


def confusion_figure(evaluations: dict[str, ClassifierMetrics]) -> go.Figure:
    """One confusion matrix per test set, side by side."""
    titles = [SET_TITLES.get(name, name) for name in evaluations]
    fig = make_subplots(rows=1, cols=len(evaluations), subplot_titles=titles, horizontal_spacing=0.12)
    for col, metrics in enumerate(evaluations.values(), 1):
        ticks = {"tickmode": "array", "tickvals": list(range(len(metrics.labels))), "ticktext": metrics.labels}
        fig.add_trace(go.Heatmap(z=metrics.confusion, x=list(range(len(metrics.labels))),
                                 y=list(range(len(metrics.labels))), colorscale="Blues", text=metrics.confusion,
                                 texttemplate="%{text}", showscale=False), row=1, col=col)
        fig.update_xaxes(title="predicted", row=1, col=col, **ticks)
        fig.update_yaxes(title="true" if col == 1 else None, autorange="reversed", row=1, col=col, **ticks)
    fig.update_layout(title="Confusion matrices (test sets)", height=340, width=60 + 320 * len(evaluations),
                      margin={"l": 60, "r": 10, "t": 80, "b": 50})
    return fig


def per_class_table(evaluations: dict[str, ClassifierMetrics]) -> pd.DataFrame:
    table = pd.concat([m.per_class_frame().round(3).reset_index(names="class")
                       .assign(set=SET_TITLES.get(name, name)) for name, m in evaluations.items()], ignore_index=True)
    return table[["set", "class", "precision", "recall", "f1", "support"]]


def describe(config: dict[str, Any], name: str) -> str:
    """One line: the classes, the base, where the head reads, what trained."""
    ft = config.get("meta", {}).get("finetune", {})
    labels = config.get("labels", [])
    epochs = f"{ft.get('epochs')} epoch{'s' if ft.get('epochs') != 1 else ''}"
    trained = f"; trained: {describe_training(ft)}, {epochs} at lr {ft.get('lr'):g}" if ft else ""
    base = recorded_base_name(config.get("base", {}))
    return (f"**{name}**: {len(labels)} classes ({', '.join(labels)}), finetuned from `{base}`; "
            f"the head reads {HEAD_READS[config.get('head_token', 'last')]}{trained}.")


def test_figures(registry: ModelRegistry, name: str = SHIPPED_CLASSIFIER, token: str | None = None,
                 request: gr.Request = None) -> tuple[str, pd.DataFrame, go.Figure | None]:
    """What the classifier is, its accuracy per test set, the per-class table and the confusion matrices.

    Runs when the tab opens, so a missing classifier is reported in the tab, not as an error pop-up.
    """
    try:
        model = classifier(registry, check_visible(registry, name, token, request))
    except (ValueError, FileNotFoundError) as err:  # not shipped yet, made for another base model, or not yours
        return f"⚠️ The classifier is not available: {err}", pd.DataFrame(), None
    evaluations = model.test_metrics
    about = describe(model.config, name)
    if not evaluations:
        return f"{about}\n\nThis classifier was saved without test figures.", pd.DataFrame(), None
    lines = [f"- {SET_TITLES.get(s, s)}: **{m.accuracy:.1%}** on {m.n_test} held-out messages ({m.data_source})"
             for s, m in evaluations.items()]
    summary = f"{about}\n\n**Test accuracy**, on messages it never trained on:\n\n" + "\n".join(lines)
    return summary, per_class_table(evaluations), confusion_figure(evaluations)


def labelled_examples(registry: ModelRegistry, name: str = SHIPPED_CLASSIFIER) -> list[tuple[str, str]]:
    """(message, its true label): for a classifier of the shipped spam data (or none), the examples picked by
    hand; for one of other data, a few of each class from its own test split."""
    try:
        model = classifier(registry, name)
    except (ValueError, FileNotFoundError):
        return list(EXAMPLES)
    if model.config.get("meta", {}).get("data", {}).get("mix") not in data.MIXES:
        for metrics in model.test_metrics.values():
            if metrics.examples:
                return [(text, label) for label, texts in metrics.examples.items()
                        for text in texts[:EXAMPLES_PER_CLASS]]
    return list(EXAMPLES)


def examples(registry: ModelRegistry, name: str = SHIPPED_CLASSIFIER) -> list[str]:
    return [text for text, _ in labelled_examples(registry, name)]


def example_samples(registry: ModelRegistry, name: str, token: str | None = None,
                    request: gr.Request = None) -> gr.Dataset:
    if not may_see(registry.runs_root, name, asker_of(token, request)):
        name = SHIPPED_CLASSIFIER
    return gr.Dataset(samples=[[text] for text in examples(registry, name)])


def classifier_choices(registry: ModelRegistry, token: str | None = None, request: gr.Request = None) -> gr.Dropdown:
    return gr.Dropdown(choices=visible_classifiers(registry, asker_of(token, request)))


# -- finetuning: settings --------------------------------------------------------------------------

def finetune_config(form: FinetuneForm, n_layers: int) -> ClassifierConfig:
    """The panel's settings as a ClassifierConfig, every number checked against the config's bounds (API callers
    can send anything); the base's depth caps the blocks that train."""
    if form.trains not in TRAINS:
        raise ValueError(f"What trains must be one of: {', '.join(TRAINS)}; got {form.trains!r}.")
    if form.head_token not in choices(ClassifierConfig, "head_token"):
        raise ValueError(f"The head reads one of: {', '.join(choices(ClassifierConfig, 'head_token'))}; "
                         f"got {form.head_token!r}.")
    settings: dict[str, Any] = {
        "epochs": check_field(ClassifierConfig, "epochs", form.epochs, "Epochs"),
        "lr": check_field(ClassifierConfig, "lr", form.lr, "Learning rate"),
        "seed": check_field(ClassifierConfig, "seed", form.seed, "Seed"),
        "head_token": form.head_token,
    }
    if form.trains == "last blocks":
        settings["trainable_blocks"] = check_field(ClassifierConfig, "trainable_blocks", form.blocks,
                                                   f"Blocks (the base has {n_layers})", high=n_layers)
    elif form.trains == "all layers":
        settings["trainable_blocks"] = None
    else:
        settings |= {"trainable_blocks": 0,
                     "lora_rank": check_field(ClassifierConfig, "lora_rank", form.lora_rank, "LoRA rank", low=1),
                     "lora_alpha": check_field(ClassifierConfig, "lora_alpha", form.lora_alpha, "LoRA alpha")}
    return ClassifierConfig(**settings)


def check_data(runner: JobRunner, choice: str, file: str | None) -> tuple[Path | None, str]:
    """The uploaded table (checked whole now, so a bad file changes nothing), or None for the SMS data."""
    if choice == SMS_DATA:
        return None, "the SMS Spam Collection"
    if choice != FILE_DATA:
        raise ValueError(f"The data must be one of: {SMS_DATA}; {FILE_DATA}. Got {choice!r}.")
    path = check_upload(runner, file, "file")
    mix = data.file_mix(path, max_bytes=runner.limits.max_upload_mb * 2**20)
    return path, f"{path.name}: {len(mix.labels)} classes ({', '.join(mix.labels)}), {mix.sizes()['train']} to train on"


def _safe_file_name(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:60] or "data"
    return stem + (path.suffix.lower() if path.suffix.lower() in (".csv", ".tsv") else ".txt")


def spam_mix(runner: JobRunner, table: Path | None) -> data.DataMix:
    """The data a finetune trains on: the uploaded table, or the shipped SMS collection."""
    if table is None:
        return data.load_mix("sms", "offline")
    return data.file_mix(table, max_bytes=runner.limits.max_upload_mb * 2**20)


def spam_memory(registry: ModelRegistry, base: BaseModel, cfg: ClassifierConfig, mix: data.DataMix) -> int:
    """The memory the finetune needs (checked against what is free), at the longest training message."""
    tokenizer = registry.tokenizer(base.name)
    longest = max(len(tokenizer.encode(message.text)) for message in mix.train)
    return check_memory(base, cfg.batch_size, longest, cfg.lora is not None)


def plan_finetune(runner: JobRunner, registry: ModelRegistry, form: FinetuneForm
                  ) -> tuple[BaseModel, ClassifierConfig, Path | None, str]:
    """The base (within the size limits: LoRA admits larger ones), the settings and the data, checked."""
    base = finetune_base(runner, registry, form.base, lora=form.trains == "LoRA")
    cfg = finetune_config(form, base.config.n_layers)
    table, about_data = check_data(runner, form.data_choice, form.file)
    return base, cfg, table, about_data


def check_finetune(runner: JobRunner, registry: ModelRegistry, token: str | None, form: FinetuneForm,
                   request: gr.Request = None) -> str:
    """Before a start: the memory the finetune needs, and a timed step of it (the base loaded, a few steps of these
    very settings on this data, on the app's threads) times its steps."""
    base, cfg, table, _ = plan_finetune(runner, registry, form)
    mix = spam_mix(runner, table)
    needed = spam_memory(registry, base, cfg, mix)
    with PROBE_LOCK:
        seconds = run_limited(probe_classifier_seconds, base.source, cfg, mix, limits=runner.limits,
                              what="Timing a step of this finetune")
    steps = cfg.epochs * (len(mix.train) // cfg.batch_size)
    return estimate_line(base, needed, seconds, steps, runner.limits.max_minutes, cfg.lora is not None)


def start_finetune(runner: JobRunner, registry: ModelRegistry, token: str | None, form: FinetuneForm,
                   request: gr.Request = None) -> tuple[str, str]:
    """Check every setting, the data and the memory, then queue the finetuning; returns the first status line and
    the owner."""
    owner = owner_of(token, request)
    base, cfg, table, about_data = plan_finetune(runner, registry, form)
    spam_memory(registry, base, cfg, spam_mix(runner, table))

    def prepare(folder: Path) -> Submission:
        kwargs: dict[str, Any] = {"base": base.source, "cfg": cfg, "out": folder / RUN_CLASSIFIER,
                                  "data_source": "offline", "mix": "sms", "base_name": form.base.strip(),
                                  "data_file": None}
        if table is not None:  # the run keeps its data: the classifier can be measured again later
            kwargs["data_file"] = folder / DATA_COPY / _safe_file_name(table)
            kwargs["data_file"].parent.mkdir()
            shutil.copyfile(table, kwargs["data_file"])
        return Submission(finetune_job, kwargs, f"{form.base.strip()}, {describe_training(asdict(cfg))}, "
                                                f"on {about_data}")

    return PANEL.start(runner, owner, prepare), owner


def stop_finetune(runner: JobRunner, token: str | None, request: gr.Request = None) -> str:
    return PANEL.stop(runner, token, request)


# -- finetuning: watching ----------------------------------------------------------------------------

def curves_figure(events: list[TrainEvent], title: str) -> go.Figure:
    """Loss (each step, quick checks, each epoch) and accuracy (each epoch) against the step."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.1)
    steps = [e for e in events if e.kind == "step"]
    checks = [e for e in events if e.kind == "eval"]
    epochs = [e for e in events if e.kind == "epoch"]
    fig.add_trace(go.Scatter(x=[e.step for e in steps], y=[e.metrics["train_loss"] for e in steps], name="train loss",
                             mode="lines", line={"width": 1, "color": "#94a3b8"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=[e.step for e in checks], y=[e.metrics["val_loss"] for e in checks],
                             name="validation loss (quick check)", mode="markers", marker={"color": "#f59e0b"}),
                  row=1, col=1)
    for key, name, color, col in [("train_loss", "train loss (epoch)", "#2563eb", 1),
                                  ("val_loss", "validation loss (epoch)", "#dc2626", 1),
                                  ("train_accuracy", "train accuracy", "#2563eb", 2),
                                  ("val_accuracy", "validation accuracy", "#dc2626", 2)]:
        line = {"color": color, "dash": "dot" if "train" in key else None}
        fig.add_trace(go.Scatter(x=[e.step for e in epochs], y=[e.metrics[key] for e in epochs], name=name,
                                 mode="lines+markers", line=line), row=1, col=col)
    fig.update_xaxes(title="step")
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(title=title, height=340, margin={"l": 50, "r": 10, "t": 70, "b": 40})
    return fig


def progress_line(job: Job) -> str:
    steps = [e for e in job.events if e.kind == "step"]
    if not steps:
        return "Loading the base model and the data…"
    last, elapsed = steps[-1], time.time() - (job.started or time.time())
    epoch = next((e for e in reversed(job.events) if e.kind == "epoch"), None)
    val = f", validation accuracy {epoch.metrics['val_accuracy']:.1%} after epoch {epoch.epoch}" if epoch else ""
    left = elapsed / last.step * (last.total_steps - last.step)
    return (f"Epoch **{last.epoch}**, step **{last.step:,} / {last.total_steps:,}**, train loss "
            f"{last.metrics['train_loss']:.3f}{val}; {duration(elapsed)} elapsed, about {duration(left)} left.")


PANEL = Panel(kind=KIND, what="finetuning", prefix="spam-", title="Finetuning", progress=progress_line,
              curve=curves_figure,
              stopping="Stopping: the classifier keeps the best epoch so far (or the weights so far, before the "
                       "first ends).")


def finished_result(job: Job) -> tuple[str, pd.DataFrame, go.Figure | None]:
    """A finished job's classifier: test accuracy, resources, the per-class table and the confusion matrices."""
    out = Path(job.result.out)
    config = read_classifier_config(out)
    evaluations = parse_test_metrics((out / METRICS_FILE).read_text(encoding="utf-8"))
    lines = [f"- {SET_TITLES.get(s, s)}: **{m.accuracy:.1%}** on {m.n_test} messages" for s, m in evaluations.items()]
    stopped = f"\n\n⚠️ {job.result.stopped}." if job.result.stopped else ""
    text = (f"### {RUN_PREFIX}{job.name}\n\n{describe(config, RUN_PREFIX + job.name)}\n\n"
            f"{resources_line(config['meta'])}.{stopped}\n\n**Test accuracy** (never trained on):\n\n"
            + "\n".join(lines) + f"\n\nIt is in the classifier picker above as `{RUN_PREFIX}{job.name}`.")
    return text, per_class_table(evaluations), confusion_figure(evaluations)


def finetune_status(runner: JobRunner, registry: ModelRegistry, token: str | None, announced: str | None,
                    request: gr.Request = None) -> tuple[Any, ...]:
    """The owner's finetuning as the page shows it; other sessions' jobs only as a busy machine.

    Outputs: status line, curves, result, per-class table, confusion matrices, the timer, the classifier
    picker (a finished classifier is picked, once: `announced` holds the job it was done for).
    """
    view = PANEL.view(runner, token, request)
    if not view.finished:
        return view.line, view.figure, "", pd.DataFrame(), None, view.timer, gr.skip(), announced
    job = view.job
    result, table, confusion = finished_result(job)
    new = RUN_PREFIX + job.name
    names = visible_classifiers(registry, asker_of(token, request))
    picker = gr.Dropdown(choices=names, value=new) if announced != job.id else gr.Dropdown(choices=names)
    return view.line, view.figure, result, table, confusion, view.timer, picker, job.id


# -- experiments, download, upload -------------------------------------------------------------------

def experiment_row(registry: ModelRegistry, name: str) -> dict[str, Any]:
    """One classifier's settings, cost and figures, as its folder records them."""
    record = read_record(registry.classifier_path(name))
    config = record.config
    ft = config["meta"].get("finetune", {})
    return {
        "classifier": name, "base": recorded_base_name(config.get("base", {})), "classes": len(config["labels"]),
        "head reads": config["head_token"], "trained": describe_training(ft) if ft else "?",
        "epochs": ft.get("epochs"), "lr": ft.get("lr"), "trainable params": record.trainable_params,
        "time (s)": round(record.seconds) if record.seconds is not None else None,
        "peak memory (MB)": round(record.peak_memory_mb) if record.peak_memory_mb is not None else None,
        "val accuracy": round(record.val_accuracy, 4) if record.val_accuracy is not None else None,
        "test accuracy": round(record.test_accuracy, 4) if record.test_accuracy is not None else None,
        "test set": SET_TITLES.get(record.test_set, record.test_set),
    }


def experiments(registry: ModelRegistry, token: str | None = None, request: gr.Request = None) -> pd.DataFrame:
    """Every classifier here (the shipped one and every finetune; on a public server the asker's own), read from its
    folder: the book's chapter-6 table of experiments. A folder that does not read is listed with its error."""
    rows = []
    for name in visible_classifiers(registry, asker_of(token, request)):
        try:
            rows.append(experiment_row(registry, name))
        except (ValueError, OSError) as err:
            rows.append({"classifier": name, "trained": f"⚠️ {err}"})
    return pd.DataFrame(rows)


def download_classifier(registry: ModelRegistry, name: str, token: str | None = None,
                        request: gr.Request = None) -> str:
    """The classifier's folder as one zip: config, the trained tensors, test figures, model card."""
    folder = registry.classifier_path(check_visible(registry, name, token, request))
    zip_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + "-classifier.zip"
    return str(write_classifier_archive(folder, Path(tempfile.mkdtemp(prefix="classifier-zip-")) / zip_name))


def find_base(registry: ModelRegistry, base_ref: dict) -> str:
    """What a training process loads for a classifier's recorded base on this server; ValueError naming a
    missing base."""
    name = recorded_base_name(base_ref)
    try:
        return registry.base_model(name).source
    except ValueError:
        raise ValueError(f"its base model {name!r} is not on this server: upload or train it first (Train tab), "
                         "or finetune a classifier here") from None


def upload_classifier(runner: JobRunner, registry: ModelRegistry, file: str | None, token: str | None = None,
                      request: gr.Request = None) -> tuple[str, Any]:
    """Load a classifier zip (as `download_classifier` makes them) into the runs folder, the uploader's, and the
    picker."""
    asker = asker_of(token, request)
    path = check_upload(runner, file, "classifier .zip")
    run_dir = upload_folder(runner)
    try:
        read_classifier_archive(path, run_dir / RUN_CLASSIFIER, functools.partial(find_base, registry),
                                runner.limits.max_upload_mb * 2**20)
    except ArchiveError as err:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise ValueError(f"Not loaded: {err}") from err
    keep_upload(runner, run_dir, asker)
    new = RUN_PREFIX + run_dir.name
    return (f"Loaded as `{new}`: it is picked above.",
            gr.Dropdown(choices=visible_classifiers(registry, asker), value=new))


# -- the tab -------------------------------------------------------------------------------------------

def _classify_panel(registry: ModelRegistry) -> tuple[Any, ...]:
    with gr.Row():
        with gr.Column(scale=3):
            message = gr.Textbox(lines=3, label="Message", elem_id="spam-text",
                                 placeholder="Type a message, or pick an example below")
            button = gr.Button("Classify", variant="primary", elem_id="spam-run")
            samples = gr.Dataset(components=[message], samples=[[t] for t in examples(registry)],
                                 label="Examples: held-out messages, never trained on (picked by hand for the "
                                       "spam data)",
                                 elem_id="spam-examples")
        with gr.Column(scale=2):
            label = gr.Label(label="Verdict", elem_id="spam-label")
    notice = gr.Markdown()
    gr.Markdown("**What the verdict looked at**: the attention, in the last layer and mean over heads, of the "
                "position the head reads (the last token; for a head that reads the mean, every token's). "
                "Darker = more.")
    attended = gr.HTML(elem_id="spam-attn")
    return message, button, samples, label, notice, attended


def base_trains(registry: ModelRegistry, name: str) -> str:
    """What trains by default for a new base: LoRA where it is over twice the shipped one's size, else the last blocks
    (the user may change it after)."""
    return "LoRA" if registry.lora_by_default(name) else "last blocks"


def show_trains(trains: str) -> tuple[Any, Any, Any]:
    """The block slider for 'last blocks', rank and alpha for LoRA; nothing to set for all layers."""
    return (gr.Slider(visible=trains == "last blocks"), gr.Slider(visible=trains == "LoRA"),
            gr.Number(visible=trains == "LoRA"))


def defaults_note(measured: DefaultsMeasurement | None) -> str:
    """What the form's defaults reach and cost, and LoRA's cost per step beside them, as measured; nothing where
    there are no figures or they are of other settings."""
    if measured is None or not measured.matches(APP, APP_LORA):
        return ""
    accuracy = ", ".join(f"{SET_TITLES.get(name, name)} **{value:.1%}**" for name, value in measured.accuracy.items())
    return (f"**With these defaults** (the `{measured.base}` model, trained on the SMS data alone): about "
            f"**{duration(measured.seconds)}** on {measured.threads} thread of {measured.machine}; test accuracy: "
            f"{accuracy}. **LoRA** (rank {measured.lora['lora_rank']}) trains fewer weights but is "
            f"**{measured.lora_slowdown:.1f}× slower per step** there ({measured.lora_seconds_per_step:.2f} s against "
            f"{measured.seconds_per_step:.2f} s): its gradients go back through every block. Measured "
            f"{measured.date} by `python -m gpt.classify.app_defaults`.")


def _finetune_panel(registry: ModelRegistry, runner: JobRunner) -> dict[str, Any]:
    c: dict[str, Any] = {}
    gr.Markdown("Finetune a language model of this app into a classifier, in the background on this machine: "
                "the book's chapter 6, with LoRA (appendix E) as a third way to choose what learns. The figures "
                "come from test sets it never trains on.")
    gr.Markdown(defaults_note(read_measurement()), elem_id="spam-ft-defaults")
    with gr.Row():
        c["base"] = gr.Dropdown(registry.base_names(OPEN_BASES), value=registry.default(), label="Base model",
                                allow_custom_value=True,  # runs trained since the page loaded; the registry checks
                                info="shipped, trained in the Train tab, local, GPT-2, or SmolLM2-135M when on disk; "
                                     "a base over twice the shipped one's size trains LoRA", elem_id="spam-ft-base")
        c["head_token"] = gr.Radio(list(choices(ClassifierConfig, "head_token")), value=APP.head_token,
                                   label="The head reads",
                                   info="the last token has seen the whole message; the book also tries the first")
    with gr.Row():
        c["trains"] = gr.Radio(list(TRAINS), value="last blocks", label="What trains", elem_id="spam-ft-trains",
                               info="last blocks: they, the final norm and the head; LoRA: adapters and the head")
        c["blocks"] = slider(ClassifierConfig, "trainable_blocks", "Last blocks to train", APP.trainable_blocks)
        c["lora_rank"] = slider(ClassifierConfig, "lora_rank", "LoRA rank", APP_LORA.lora_rank, low=1, visible=False)
        c["lora_alpha"] = number(ClassifierConfig, "lora_alpha", "LoRA alpha (update scaled by alpha / rank)",
                                 APP_LORA.lora_alpha, visible=False)
    with gr.Row():
        c["epochs"] = slider(ClassifierConfig, "epochs", "Epochs (the best is kept)", APP.epochs,
                             elem_id="spam-ft-epochs")
        c["lr"] = number(ClassifierConfig, "lr", "Learning rate", APP.lr, elem_id="spam-ft-lr")
        c["seed"] = number(ClassifierConfig, "seed", "Seed", APP.seed)
    with gr.Row():
        c["data_choice"] = gr.Radio([SMS_DATA, FILE_DATA], value=SMS_DATA, label="Data", elem_id="spam-ft-data",
                             info=f"a file: a header 'text,label' (or two columns), at least {data.MIN_PER_CLASS} "
                                  "messages per class, labels that are names")
        c["file"] = gr.File(file_types=[".csv", ".tsv", ".txt"], type="filepath", elem_id="spam-ft-file",
                            label=f"CSV or TSV file (up to {runner.limits.max_upload_mb} MB)")
    gr.Markdown(registry.open_bases_missing(OPEN_BASES), elem_id="spam-ft-open")
    with gr.Row():
        c["check"] = gr.Button("Check memory and time", elem_id="spam-ft-check")
        c["start"] = gr.Button("Start finetuning", variant="primary", elem_id="spam-ft-start")
        c["stop"] = gr.Button("Stop (keeps the best epoch)", variant="stop", elem_id="spam-ft-stop")
    c["estimate"] = gr.Markdown(elem_id="spam-ft-estimate")
    c["line"] = gr.Markdown(elem_id="spam-ft-status")
    c["curves"] = Plot(label="Loss and accuracy", elem_id="spam-ft-curves")
    c["result"] = gr.Markdown(elem_id="spam-ft-result")
    c["table"] = gr.Dataframe(interactive=False, label="Per class (test split)")
    c["confusion"] = Plot(label="Confusion matrix", elem_id="spam-ft-confusion")
    return c


def build(registry: ModelRegistry, runner: JobRunner, tab: gr.Tab) -> None:
    gr.Markdown("A base model with its output head swapped for a classification head (the book's chapter 6). "
                "The head reads the message at its last token, the only one that has seen all of it, or, as the "
                "shipped classifier does, as the mean over its tokens.")
    names = visible_classifiers(registry, None)  # a public server's page adds the visitor's own when it loads
    with gr.Row(equal_height=True):
        picker = gr.Dropdown(names, value=names[0] if names else None, label="Classifier", scale=1,
                             allow_custom_value=True,  # made since the page loaded: the registry checks the name
                             info="the shipped spam classifier, and every one finetuned or uploaded here",
                             elem_id="spam-classifier")
    token = owner_token(tab)
    announced = gr.State(None)
    message, button, samples, label, notice, attended = _classify_panel(registry)
    gr.Markdown("### How good is it?")
    summary = gr.Markdown(elem_id="spam-summary")
    table = gr.Dataframe(interactive=False, label="Per test set and class")
    confusion = Plot(label="Confusion matrices", elem_id="spam-confusion")
    with gr.Accordion("Finetune your own classifier", open=False, elem_id="spam-finetune"):
        ft = _finetune_panel(registry, runner)
    with gr.Accordion("Experiments: every classifier here", open=False):
        gr.Markdown("Read from each classifier's folder: finetune with other settings to fill in the book's "
                    "table of experiments (chapter 6).")
        table_of_runs = gr.Dataframe(interactive=False, elem_id="spam-experiments")
        refresh = gr.Button("Refresh")
    with gr.Accordion("Download, upload", open=False):
        gr.Markdown("The picked classifier as a zip (its settings, the trained tensors, test figures, model card). "
                    "Uploaded here again, it needs its base model on this server.")
        download = gr.Button("Download the picked classifier")
        zipped = gr.File(label="Classifier archive")
        uploaded = gr.Markdown(elem_id="spam-uploaded")
        share_buttons(registry, picker, token, uploaded, "spam")
        upload = gr.File(file_types=[".zip"], type="filepath", label="Upload a classifier .zip")
    timer = gr.Timer(1.0, active=False)

    classify_fn = user_errors(functools.partial(classify, registry))
    button.click(classify_fn, [message, picker, token], [label, attended, notice], api_name="classify")
    message.submit(classify_fn, [message, picker, token], [label, attended, notice], api_visibility="private")
    samples.click(lambda sample: sample[0], samples, message, api_visibility="private")
    figures = user_errors(functools.partial(test_figures, registry))
    picker.change(figures, [picker, token], [summary, table, confusion], api_name="spam_test_figures")
    picker.change(user_errors(functools.partial(example_samples, registry)), [picker, token], samples,
                  api_visibility="private")
    tab.select(figures, [picker, token], [summary, table, confusion], api_visibility="private")
    choices = user_errors(functools.partial(classifier_choices, registry))
    gr.on(None, choices, token, picker, api_visibility="private")  # on page load: the visitor's, made since
    tab.select(lambda: gr.Dropdown(choices=registry.base_names(OPEN_BASES)), None, ft["base"],
               api_visibility="private")
    ft["base"].change(functools.partial(base_trains, registry), ft["base"], ft["trains"], api_visibility="private")
    ft["trains"].change(show_trains, ft["trains"], [ft["blocks"], ft["lora_rank"], ft["lora_alpha"]],
                        api_visibility="private")

    watch = user_errors(functools.partial(finetune_status, runner, registry))
    watched = [ft["line"], ft["curves"], ft["result"], ft["table"], ft["confusion"], timer, picker, announced]
    fields = {name: ft[name] for name in FinetuneForm.__dataclass_fields__}  # the API's order: the form's
    ft["start"].click(user_errors(on_form(FinetuneForm, functools.partial(start_finetune, runner, registry))), token,
                      [ft["line"], token], inputs_kwargs=fields, api_name="spam_finetune_start").success(
        watch, [token, announced], watched, api_visibility="private")
    ft["stop"].click(user_errors(functools.partial(stop_finetune, runner)), token, ft["line"],
                     api_name="spam_finetune_stop")
    ft["check"].click(user_errors(on_form(FinetuneForm, functools.partial(check_finetune, runner, registry))), token,
                      ft["estimate"], inputs_kwargs=fields, api_name="spam_finetune_check",
                      concurrency_id="finetune_probe", concurrency_limit=1)
    timer.tick(watch, [token, announced], watched, api_name="spam_finetune_status", concurrency_id="spam_status",
               concurrency_limit=8)
    tab.select(watch, [token, announced], watched, api_visibility="private")

    runs_fn = user_errors(functools.partial(experiments, registry))
    refresh.click(runs_fn, token, table_of_runs, api_name="spam_experiments")
    ft["result"].change(runs_fn, token, table_of_runs, api_visibility="private")
    download.click(user_errors(functools.partial(download_classifier, registry)), [picker, token], zipped,
                   api_name="spam_download")
    upload.upload(user_errors(functools.partial(upload_classifier, runner, registry)), [upload, token],
                  [uploaded, picker], api_name="spam_upload")
