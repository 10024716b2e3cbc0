"""Tab 5, Chat: talk to an instruction-finetuned model, see the exact prompt it was sent (and which earlier
turns it left out) and its held-out scores per kind of question, start a new chat, put two models side by
side, and finetune a chat model of your own (every weight, or LoRA adapters) in the app's job runner
(`ui/jobs.py`, `gpt.instruct.runs.finetune_run`)."""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from gpt.checkpoint import Checkpoint, read_config
from gpt.generate import SamplingConfig
from gpt.instruct.data import Entry, read_uploaded_entries, resolve_data, save_entries, split_entries
from gpt.instruct.evaluate import format_base_comparison, format_task_report, load_model_eval
from gpt.instruct.finetune import InstructConfig, InstructionDataset
from gpt.instruct.prompt import chat_prompt, chat_stream, fold_chat, has_chat_template
from gpt.instruct.runs import EVAL_QUESTIONS, PROMPT_FORMAT, FinetuneRun, finetune_run, of_families
from ui import preference_view
from ui.common import check_number, join_notices, public_message, user_errors
from ui.figures import Plot
from ui.forms import check_field, number, on_form, slider
from ui.jobs import Job, JobRunner, probe_instruct_seconds, run_limited
from ui.picker import describe
from ui.registry import RUN_MODEL, RUN_PREFIX, BaseModel, ModelRegistry
from ui.training_panel import (
    PROBE_LOCK,
    Panel,
    Submission,
    asker_of,
    check_memory,
    duration,
    estimate_line,
    finetune_base,
    loss_curve,
    may_see,
    owner_of,
    owner_token,
    receive_run_zip,
    run_zip,
    share_buttons,
    visible_choices,
)

CHAT_MODEL = "instruct"
# The Alpaca template and a short question take about 60 of the shipped model's 256 tokens: the reply's slider stops
# where the prompt keeps PROMPT_ROOM (every value it allows works); a model with a smaller context allows less.
PROMPT_ROOM = 96
MAX_NEW_TOKENS = 256 - PROMPT_ROOM
EMPTY_REPLY = "(the model answered with nothing: try again with a higher temperature)"
# Questions of the held-out (test) split of the shipped data, one per kind the model does well, in the order
# of a conversation; tests/ui/test_chat_tab.py checks that they are held out and that the shipped model
# answers them right, each in a new chat and all one after another in one chat.
EXAMPLES = ["Good morning.", "What's the plural of 'wife'?", "What is take in the past tense?",
            "What is the product of 7 and 12?", "What's 61 plus 73?", "what's the opposite of 'unconscious'?",
            "Translate this sentence into Hindi: I like diamonds.", "Write a speech about chickens.",
            "tell me a joke??", "What's 50 divided by 5?"]
NO_SCORES = ("No held-out scores for these weights: `python -m gpt finetune-instruct --evaluate FOLDER --out FOLDER` "
             "measures them.")
DATA_CHOICES = [("the shipped instruction set (54,702 entries, 16 kinds of question)", "shipped"),
                ("the book's instruction-data.json (1,100 entries; downloaded once)", "book"),
                ("your own Alpaca JSON file (upload it below)", "upload")]
MAX_ENTRIES = 46_499  # the shipped training split: a cap, not a target
FAMILIES = ("small talk", "multiplication", "addition", "subtraction", "division", "plural", "singular", "past tense",
            "comparative", "superlative", "antonym", "synonym", "definition", "fact", "refusal", "follow-up")
OPEN_MODEL_SCORES = ("The held-out questions score the app's own chat models, which were finetuned on the shipped "
                     "instruction set; an open model was tuned by its makers on other data (its model card says on "
                     "which).")
MAX_EPOCHS = 5  # the app's cap on InstructConfig's epochs: an epoch of the shipped set is long on two cores
MAX_RANK = 64  # and on its LoRA rank
DEFAULT_LORA_RANK = 8  # the rank a base over twice the shipped one's size starts with
OPEN_BASES = ("smollm2-135m", "smollm2-135m-instruct")  # the open models offered as bases once on disk


@dataclass(frozen=True)
class ChatFinetuneForm:
    """The finetune panel's settings as the page (or an API caller) sends them, unchecked; the field order is
    the order of the values `/chat_finetune_start` takes."""

    base: str
    data: str
    families: list[str]
    max_entries: float
    file: str | None
    epochs: float
    lr: float
    batch_size: float
    lora_rank: float
    lora_alpha: float
    mask_prompt: bool
    digits: bool


# The panel's defaults: a few minutes on two cores that teach the shipped base some kinds of question well
# (times tables take far longer). DEFAULTS_REACH says before a start what they reached, measured with these
# very settings by the command in docs/chat.md.
DEFAULT_FORM = ChatFinetuneForm(base="base", data="shipped", families=["small talk", "refusal"], max_entries=2_400,
                                file=None, epochs=1, lr=2e-3, batch_size=8, lora_rank=0, lora_alpha=16.0,
                                mask_prompt=True, digits=True)
DEFAULTS_REACH = (
    "**With the defaults** (the shipped `base`; small talk and refusals, 2,400 entries, 300 steps of 8) the run took "
    "**6 minutes** here on one thread, scoring included, while other trainings shared this 2-core machine (4 "
    "CPU-minutes), and the model answered held-out questions **90%** right on refusals and **71%** on small talk, "
    "where its base scores 3%. Measured 2026-12-07 (docs/chat.md).")


# -- chat ----------------------------------------------------------------------------------------------

def chat_model(registry: ModelRegistry, name: str | None) -> Checkpoint:
    """A language model to chat with: one of ours, whose prompt format (in its metadata) must be one this app
    writes, or a Hub instruct model, which brings its chat template."""
    ckpt = registry.load(name or CHAT_MODEL)
    if "hub" in ckpt.meta and not has_chat_template(ckpt.tokenizer):
        raise ValueError(f"{name} is a base model of the Hub: it has no chat template to read a conversation "
                         "with. Pick its instruct version (…-instruct, or Qwen3, whose one model does both).")
    fmt = ckpt.meta.get("prompt_format", PROMPT_FORMAT)
    if fmt != PROMPT_FORMAT:
        raise ValueError(f"{name} was trained on {fmt!r} prompts; this app writes {PROMPT_FORMAT!r} prompts only.")
    return ckpt


def check_reply_room(ckpt: Checkpoint, max_new_tokens: int) -> None:
    """Refuse a reply so long that the model's context keeps less than `PROMPT_ROOM` tokens for the prompt."""
    most = min(MAX_NEW_TOKENS, ckpt.model.cfg.context_length - PROMPT_ROOM)
    if max_new_tokens > most:
        raise ValueError(f"Max new tokens must be between 1 and {max(most, 1)} for this model (a context of "
                         f"{ckpt.model.cfg.context_length}, {PROMPT_ROOM} of them kept for the prompt).")


def chat(registry: ModelRegistry, message: str, history: list[dict], temperature: float, max_new_tokens: float,
         seed: float, model: str = CHAT_MODEL) -> Iterator[tuple[str, str]]:
    """Stream the reply; alongside it, the prompt built from the conversation (what the model reads): one Alpaca
    prompt for ours, the model's chat template for a Hub instruct model.

    An empty message, one too long for the model and a history that is not a list are refused with a
    message before any token is encoded; malformed history entries are skipped (`gpt.instruct.prompt`).
    """
    sampling = SamplingConfig(
        max_new_tokens=check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True),
        temperature=check_number(temperature, "Temperature", 0, 2),
        seed=check_number(seed, "Seed", 0, 2**31 - 1, integer=True),
    )
    ckpt = chat_model(registry, model)
    check_reply_room(ckpt, sampling.max_new_tokens)
    prompt = chat_prompt(ckpt, history, message, sampling)
    reply = ""
    for reply in chat_stream(ckpt, history, message, sampling):
        yield reply, prompt
    if not reply:
        yield EMPTY_REPLY, prompt


def chat_notice(registry: ModelRegistry, prompt: str | None, message: str, history: list[dict],
                max_new_tokens: float, model: str = CHAT_MODEL) -> str:
    """Which earlier turns the prompt just sent left out, and why (the model's turn limit, its context), as the
    page says it; nothing before a prompt was sent. Worked out again from the turn's own inputs, so `/chat`
    keeps its two outputs (reply, prompt)."""
    if not prompt:
        return ""
    sampling = SamplingConfig(max_new_tokens=check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS,
                                                          integer=True))
    return join_notices(fold_chat(chat_model(registry, model), history, message, sampling).notice())


def new_chat() -> tuple[list, list, list, str, str]:
    """An empty conversation (the chat box, and the history the next message is sent with), prompt and notice."""
    return [], [], [], "", ""


def held_out_scores(folder: Path | None) -> str:
    """The model's scores per kind of question on held-out questions (its `eval.json`), as markdown; beside
    its base model's when the finetune measured both."""
    report = load_model_eval(folder) if folder is not None else None
    if report is None:
        return NO_SCORES
    intro = (f"Scores on {report['n']:,} held-out questions the model was not trained on, greedy answers: exact "
             "match (case and punctuation ignored) for answers of up to three words, word overlap in order "
             "(ROUGE-L) for longer ones.")
    if "base" in report:
        return f"{intro} Its base model answered the same questions.\n\n{format_base_comparison(report)}"
    return (f"{intro} A held-out question may ask a fact that training asked in other words (\"12 x 7 =\" and "
            "\"What is 12 times 7?\"); the last columns score the others alone.\n\n" + format_task_report(report))


def model_info(registry: ModelRegistry, name: str) -> tuple[str, str]:
    """The picked chat model in a line (size, base, how it was finetuned) and its held-out scores."""
    try:
        ckpt = chat_model(registry, name)
    except FileNotFoundError as err:  # not shipped yet: said in the summary, not as an error
        return public_message(f"⚠️ The chat model is not available: {err}"), NO_SCORES
    meta = ckpt.meta
    line = describe(ckpt, name)
    if "hub" in meta:  # its architecture is in the picker's summary and the model card: a short line here
        line = (f"**{name}**: {meta.get('family', 'an open model')} from {meta['hub']}, "
                f"{ckpt.model.n_params() / 1e6:,.1f}M parameters, a context of {ckpt.model.cfg.context_length:,} "
                "tokens. It reads the conversation in its own chat template (the exact prompt is below) and ends its "
                "reply at an end token.")
        return public_message(line), OPEN_MODEL_SCORES
    if "finetune" in meta:
        how = finetune_method(meta["finetune"])
        stages = meta.get("stages", [])
        epochs = sum(s.get("epochs") or 0 for s in stages) if stages else meta.get("epochs_done", "?")
        in_stages = f" in {len(stages)} stages" if len(stages) > 1 else ""
        base = Path(str(meta.get("base_model", "?"))).name  # a folder's name: a path is cut to it anyway
        line += (f"<br>Finetuned from **{base}**{in_stages} on {meta.get('data', '?')} "
                 f"({meta.get('n_train', 0):,} entries, {epochs} epochs, {how}); "
                 f"prompt format: {meta.get('prompt_format', PROMPT_FORMAT)}.")
    return public_message(line), held_out_scores(registry.resolve(name).path)


def finetune_method(recorded: Any) -> str:
    """What a finetune recorded in a model's metadata trained, in words ('all layers', 'LoRA rank 8 on ...')."""
    try:  # typed field by field, as every config read from a file; a newer version's fields are skipped
        return InstructConfig.from_dict(recorded, ignore_unknown=True).method
    except ValueError:
        return "settings not recorded"


def compare(registry: ModelRegistry, left: str, right: str, message: str, max_new_tokens: float
            ) -> Iterator[tuple[str, str]]:
    """One message, two models, greedy: each model's reply to the message alone, in its chat prompt."""
    sampling = SamplingConfig(max_new_tokens=check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS,
                                                          integer=True), temperature=0.0)
    models = [chat_model(registry, left), chat_model(registry, right)]
    for ckpt in models:
        check_reply_room(ckpt, sampling.max_new_tokens)
    chat_prompt(models[0], [], message, sampling)  # an empty or too long message is refused before any reply
    replies = ["", ""]
    for i, ckpt in enumerate(models):
        for reply in chat_stream(ckpt, [], message, sampling):
            replies[i] = reply
            yield tuple(replies)
        replies[i] = replies[i] or EMPTY_REPLY
        yield tuple(replies)


# -- finetuning ----------------------------------------------------------------------------------------

def gather_instructions(runner: JobRunner, kind: str, file: str | None) -> tuple[list[Entry], str]:
    """The instruction entries (checked) and the data's name, for the tab's three kinds of data."""
    if kind == "shipped":
        return resolve_data("shipped"), "shipped"
    if kind == "book":
        try:
            return resolve_data("book"), "book"  # downloaded now if need be: being offline is said before a start
        except FileNotFoundError:  # offline, or the file changed: said without the server's cache path
            raise ValueError("The book's data is not cached and cannot be downloaded here (offline?). "
                             "Pick the shipped instruction set, or upload the file.") from None
    if kind == "upload":
        if not file:
            raise ValueError("Choose an Alpaca-format .json file to upload (a list of instruction, input, output).")
        return read_uploaded_entries(file, runner.limits.max_upload_mb * 2**20), f"your file {Path(file).name}"
    raise ValueError(f"Unknown data {kind!r}: choose shipped, book or upload.")


def picked_families(families: Any) -> list[str]:
    """The kinds of question ticked, checked (API callers can send anything); none means all of them."""
    if not isinstance(families, list) or not all(isinstance(f, str) and f in FAMILIES for f in families):
        raise ValueError(f"Kinds of question: pick among {', '.join(FAMILIES)} (none: all of them).")
    return [f for f in FAMILIES if f in families]


def instruct_config(form: ChatFinetuneForm) -> InstructConfig:
    """The panel's settings as an InstructConfig (validation ten times a run comes later), every number checked."""
    rank = check_field(InstructConfig, "lora_rank", form.lora_rank, "LoRA rank", high=MAX_RANK)
    return InstructConfig(
        epochs=check_field(InstructConfig, "epochs", form.epochs, "Epochs", high=MAX_EPOCHS),
        batch_size=check_field(InstructConfig, "batch_size", form.batch_size, "Batch size"),
        lr=check_field(InstructConfig, "lr", form.lr, "Learning rate"), mask_prompt=bool(form.mask_prompt),
        group_by_length=True, lora_rank=rank,
        lora_alpha=check_field(InstructConfig, "lora_alpha", form.lora_alpha, "LoRA alpha") if rank else 16.0,
        pretokenizer="digits" if form.digits else None)


def scheduled(cfg: InstructConfig, n_train: int) -> tuple[InstructConfig, int]:
    """The run's config, with ten validation points on the loss curve, and its number of steps."""
    steps = cfg.epochs * (n_train // cfg.batch_size)
    if steps == 0:
        raise ValueError(f"{n_train} training entries make no batch of {cfg.batch_size}: use more data or "
                         "a smaller batch.")
    return dataclasses.replace(cfg, eval_every=max(1, steps // 10)), steps


@dataclass(frozen=True)
class FinetunePlan:
    """A start's settings, checked, with its base, the entries it trains on and its steps."""

    base: BaseModel
    cfg: InstructConfig
    entries: list[Entry]
    data_name: str
    families: list[str]
    n_train: int
    steps: int


def plan_finetune(runner: JobRunner, registry: ModelRegistry, form: ChatFinetuneForm) -> FinetunePlan:
    """Every setting checked, the base within the size limits (LoRA admits larger ones), the data read."""
    cfg = instruct_config(form)
    n_entries = check_number(form.max_entries, "Training entries", 1, MAX_ENTRIES, integer=True)
    families = picked_families(form.families) if form.data == "shipped" else []
    base = finetune_base(runner, registry, form.base, lora=cfg.lora_rank > 0)
    if cfg.pretokenizer and registry.tokenizer(form.base).pretokenizer == "tokenizer.json":
        raise ValueError(f"{base.name} reads text with its Hub tokenizer (tokenizer.json), which keeps its own way "
                         "of cutting numbers: untick *Numbers digit by digit*.")
    entries, data_name = gather_instructions(runner, form.data, form.file)
    kept = split_entries(of_families(entries, families)).train
    n_train = min(n_entries, len(kept))
    cfg, steps = scheduled(cfg, n_train)
    return FinetunePlan(base, cfg, entries, data_name, families, n_train, steps)


def plan_memory(registry: ModelRegistry, plan: FinetunePlan) -> int:
    """The memory the plan's finetune needs (checked against what is free), at the longest entry it trains on."""
    tokenizer = registry.tokenizer(plan.base.name)
    train = split_entries(of_families(plan.entries, plan.families)).train[: plan.n_train]
    longest = max(len(ids) for ids, _ in InstructionDataset(train, tokenizer).items)
    return check_memory(plan.base, plan.cfg.batch_size, longest, plan.cfg.lora_rank > 0)


def check_finetune(runner: JobRunner, registry: ModelRegistry, token: str | None, form: ChatFinetuneForm,
                   request: gr.Request = None) -> str:
    """Before a start: the memory the finetune needs, and a timed step of it (the base loaded, a few steps of these
    very settings on these entries, on the app's threads) times its steps."""
    plan = plan_finetune(runner, registry, form)
    needed = plan_memory(registry, plan)
    train = split_entries(of_families(plan.entries, plan.families)).train[: plan.n_train]
    with PROBE_LOCK:
        seconds = run_limited(probe_instruct_seconds, plan.base.source, train, plan.cfg, limits=runner.limits,
                              what="Timing a step of this finetune")
    return estimate_line(plan.base, needed, seconds, plan.steps, runner.limits.max_minutes, plan.cfg.lora_rank > 0)


def start_finetune(runner: JobRunner, registry: ModelRegistry, token: str | None, form: ChatFinetuneForm,
                   request: gr.Request = None) -> tuple[str, str]:
    """Check every setting and the memory it needs, then queue the finetune; returns the first status line and the
    owner. The model saved records the Alpaca prompt it learnt (`prompt_format`): the Chat tab talks to it in that,
    even where its base (a Hub instruct model) brings a chat template."""
    owner = owner_of(token, request)
    plan = plan_finetune(runner, registry, form)
    plan_memory(registry, plan)
    cfg, n_train, families, entries = plan.cfg, plan.n_train, plan.families, plan.entries

    def prepare(folder: Path) -> Submission:
        source = form.data  # the training process reads the datasets by name, and keeps a copy of an uploaded file
        if form.data == "upload":
            source = str(save_entries(entries, folder / "instruction-data.json.gz"))
        kwargs = {"base": plan.base.source, "data": source, "cfg": cfg, "out_dir": folder / RUN_MODEL,
                  "data_name": plan.data_name, "max_train": n_train, "families": families, "base_name": form.base}
        kinds = f" of {', '.join(families)}" if families else ""
        return Submission(finetune_run, kwargs,
                          f"{cfg.method}, {n_train:,} entries{kinds}, {cfg.epochs} epoch(s), {plan.steps:,} steps")

    return PANEL.start(runner, owner, prepare), owner


def base_defaults(registry: ModelRegistry, name: str) -> tuple[Any, Any]:
    """A new base puts LoRA on (rank 8) where it is over twice the shipped one's size, off otherwise, and the digit by
    digit cut off for a Hub tokenizer, which keeps its own; the user may change either after."""
    lora = registry.lora_by_default(name)
    try:
        hub = registry.tokenizer(name).pretokenizer == "tokenizer.json"
    except (ValueError, OSError):
        hub = False
    return (gr.Slider(value=DEFAULT_LORA_RANK if lora else DEFAULT_FORM.lora_rank),
            gr.Checkbox(value=False if hub else DEFAULT_FORM.digits))


def stop_finetune(runner: JobRunner, token: str | None, request: gr.Request = None) -> str:
    return PANEL.stop(runner, token, request)


def progress_line(job: Job) -> str:
    steps = [e for e in job.events if e.kind == "step"]
    scored = [e for e in job.events if e.kind == "score"]
    if scored:
        last = scored[-1]
        who = "its base model" if last.metrics["base"] else "the finetuned model"
        return (f"Trained {last.step:,} steps. Scoring {who} on held-out questions: "
                f"{last.metrics['scored']:.0f} / {last.metrics['to_score']:.0f}…")
    if not steps:
        return "Loading the base model and the data…"
    last = steps[-1]
    elapsed = time.time() - (job.started or time.time())
    left = elapsed / last.step * (last.total_steps - last.step)
    return (f"Epoch {last.epoch}, step **{last.step:,} / {last.total_steps:,}**, train loss "
            f"{last.metrics['train_loss']:.3f}, {duration(elapsed)} elapsed, about {duration(left)} of training left.")


PANEL = Panel(kind="instruct", what="chat finetune", prefix="chat-", title="Finetuning", progress=progress_line,
              curve=loss_curve,
              stopping=("Stopping: the run keeps the weights so far (a checkpoint), then scores them on "
                        f"{EVAL_QUESTIONS} held-out questions beside its base model."))


def result_markdown(result: FinetuneRun, name: str) -> str:
    """What the run trained, what it cost, and its held-out scores per kind of question beside its base's."""
    rows = "\n".join(f"| {task} | {result.base_scores.get(task, float('nan')):.1f} | **{score:.1f}** |"
                     for task, score in result.scores.items())
    epochs = ", ".join(f"{s:.0f} s" for s in result.epoch_seconds) or "no full epoch"
    stopped = " (stopped early: these are the weights it had)" if result.stopped else ""
    share = 100 * result.trainable_params / result.total_params
    return (f"### {RUN_PREFIX}{name}{stopped}\n\n{result.method}: {result.trainable_params:,} of "
            f"{result.total_params:,} parameters trained ({share:.1f}%), {result.steps:,} steps on "
            f"{result.n_train:,} entries; per epoch: {epochs}; peak memory {result.peak_memory_mb:,.0f} MB "
            f"({result.memory_measure}). It is in the chat model picker above.\n\n"
            f"Held-out score (%) on {result.n_scored} questions the model never saw, spread over the kinds of "
            f"question; the same evaluation as `python -m gpt finetune-instruct`, on a sample:\n\n"
            f"| kind of question | base: {result.base_model} | this model |\n|---|---|---|\n{rows}")


def model_choices(registry: ModelRegistry, token: str | None = None, request: gr.Request = None
                  ) -> tuple[Any, Any, Any, Any]:
    """New choices for the chat model picker, the two side-by-side pickers and the base model picker: on a public
    server, of the runs only the asker's own."""
    asker = asker_of(token, request)
    names = visible_choices(registry, asker)
    bases = [name for name in registry.base_names(OPEN_BASES) if may_see(registry.runs_root, name, asker)]
    return (gr.Dropdown(choices=visible_choices(registry, asker, registry.chat_names())), gr.Dropdown(choices=names),
            gr.Dropdown(choices=names), gr.Dropdown(choices=bases))


def finetune_status(runner: JobRunner, registry: ModelRegistry, token: str | None, request: gr.Request = None
                    ) -> tuple[Any, ...]:
    """The owner's finetune as the page shows it: status line, loss curve, result; other sessions' only as a
    busy machine. When it has finished, the pickers get the new model."""
    view = PANEL.view(runner, token, request)
    if not view.finished:
        return (view.line, view.figure, "", view.timer, *(gr.skip(),) * 4)
    return (view.line, view.figure, result_markdown(view.job.result, view.job.name), view.timer,
            *model_choices(registry, token, request))


def download_chat(registry: ModelRegistry, name: str, token: str | None = None, request: gr.Request = None) -> str:
    """A chat model finetuned here as one zip (weights, config, tokenizer, held-out scores); on a public server,
    only the session that made or uploaded it gets it."""
    entry = registry.resolve(name)
    if (entry.kind != "run" or name not in registry.chat_names()
            or not may_see(registry.runs_root, name, asker_of(token, request))):
        raise ValueError(f"{name!r} is not a chat model finetuned here: pick one of yours (run:…) in the chat "
                         "model picker.")
    return run_zip(entry.path)


def upload_chat(runner: JobRunner, registry: ModelRegistry, file: str | None, token: str | None = None,
                request: gr.Request = None) -> tuple[str, Any]:
    """Load a chat model zip (as `download_chat` makes them) into the runs folder, the uploader's, and the chat
    model picker."""
    asker = asker_of(token, request)
    name, folder = receive_run_zip(runner, file, prefix="chat-upload-", owner=asker)
    if "finetune" not in read_config(folder).get("meta", {}):
        shutil.rmtree(runner.limits.runs_dir / name, ignore_errors=True)
        raise ValueError("Not a chat model: its metadata records no instruction finetuning. A pretrained model "
                         "goes in the Train tab's upload.")
    return f"Loaded as `{RUN_PREFIX}{name}`: pick it in the chat model picker.", gr.Dropdown(
        choices=visible_choices(registry, asker, registry.chat_names()))


# -- the tab -------------------------------------------------------------------------------------------

def _chat_panel(registry: ModelRegistry) -> tuple[gr.Dropdown, gr.Markdown, gr.Markdown]:
    with gr.Row(equal_height=True):
        picker = gr.Dropdown(visible_choices(registry, None, registry.chat_names()), value=CHAT_MODEL,
                             allow_custom_value=True, scale=1, label="Chat model", elem_id="chat-model",
                             info="the shipped one, those finetuned here (run:…), and today's open instruct models "
                                  "(Qwen3, SmolLM2-Instruct: downloaded when picked)")
        info = gr.Markdown(elem_id="chat-model-info")
    with gr.Accordion("What it can answer: held-out scores per kind of question", open=False):
        scores = gr.Markdown(elem_id="chat-scores")
    prompt = gr.Code(language=None, label="Prompt", elem_id="chat-prompt", wrap_lines=True, render=False)
    settings = [  # rendered by the ChatInterface, inside its "Sampling settings" accordion
        gr.Slider(0, 2, value=0.0, step=0.05, label="Temperature", info="0 = always the most likely token",
                  render=False),
        gr.Slider(1, MAX_NEW_TOKENS, value=96, step=1, label="Max new tokens", elem_id="chat-max-new", render=False),
        gr.Number(123, precision=0, minimum=0, label="Seed", render=False),
    ]
    with gr.Row(equal_height=True):
        new = gr.Button("New chat", variant="secondary", size="sm", scale=0, min_width=110, elem_id="chat-new")
        notice = gr.Markdown(elem_id="chat-notice")  # which earlier turns the last prompt left out, and why
    conversation = gr.ChatInterface(
        user_errors(functools.partial(chat, registry)),
        textbox=gr.Textbox(placeholder="Type an instruction…", scale=7, submit_btn=True, stop_btn=True,
                           elem_id="chat-input", render=False),
        additional_inputs=[*settings, picker],  # the picker is rendered above: it stays there
        additional_inputs_accordion="Sampling settings",
        additional_outputs=[prompt],
        examples=[[e] for e in EXAMPLES],  # sent with the settings as they are (temperature 0 by default)
        cache_examples=False,
        api_name="chat",
        fill_height=False,
    )
    with gr.Accordion("The exact prompt sent to the model", open=False):
        prompt.render()
    new.click(new_chat, None, [conversation.chatbot, conversation.chatbot_state, conversation.chatbot_value, prompt,
                               notice], api_visibility="private", queue=False)
    conversation.chatbot.clear(lambda: ("", ""), None, [prompt, notice], api_visibility="private", queue=False)
    # Each turn's prompt, once shown, brings its notice: the message and the history it was sent with.
    prompt.change(user_errors(functools.partial(chat_notice, registry)),
                  [prompt, conversation.saved_input, conversation.chatbot_state, settings[1], picker], notice,
                  api_visibility="private")
    return picker, info, scores


def _compare_panel(registry: ModelRegistry) -> tuple[gr.Dropdown, gr.Dropdown]:
    with gr.Accordion("Side by side: one message, two models", open=False):
        gr.Markdown("The same message to two models, greedy, each in its chat prompt (an Alpaca prompt for ours, its "
                    "chat template for a Hub instruct model): a base model next to a finetuned one shows what "
                    "instruction finetuning changed.")
        names = registry.names()
        choices = registry.choices(names)
        with gr.Row():
            left = gr.Dropdown(choices, value="base" if "base" in names else None, allow_custom_value=True,
                               label="Left model", elem_id="chat-left-model")
            right = gr.Dropdown(choices, value=CHAT_MODEL if CHAT_MODEL in names else None, allow_custom_value=True,
                                label="Right model", elem_id="chat-right-model")
        with gr.Row():
            message = gr.Textbox(EXAMPLES[0], label="Message", scale=4, elem_id="chat-compare-message")
            max_new = gr.Slider(1, MAX_NEW_TOKENS, value=48, step=1, label="Max new tokens")
        run = gr.Button("Answer with both", elem_id="chat-compare")
        with gr.Row():
            left_reply = gr.Textbox(label="Left reply", lines=4, interactive=False, elem_id="chat-left-reply")
            right_reply = gr.Textbox(label="Right reply", lines=4, interactive=False, elem_id="chat-right-reply")
    run.click(user_errors(functools.partial(compare, registry)), [left, right, message, max_new],
              [left_reply, right_reply], api_name="chat_compare")
    return left, right


def _finetune_panel(runner: JobRunner, registry: ModelRegistry, picker: gr.Dropdown, left: gr.Dropdown,
                    right: gr.Dropdown, tab: gr.Tab) -> tuple[gr.Dropdown, gr.BrowserState]:
    limits = runner.limits
    token = owner_token(tab)
    form: dict[str, Any] = {}  # ChatFinetuneForm's fields -> their components
    with gr.Accordion("Finetune your own chat model", open=False):
        gr.Markdown(f"Teach a language model to follow instructions (the book's chapter 7): every weight learns, "
                    f"or only small LoRA adapters (appendix E; rank 0 = every weight). At the end the model answers "
                    f"{EVAL_QUESTIONS} held-out questions beside its base. {DEFAULTS_REACH}",
                    elem_id="chat-ft-intro")
        with gr.Row():
            form["base"] = gr.Dropdown(registry.base_names(OPEN_BASES), value=DEFAULT_FORM.base,
                                       allow_custom_value=True, label="Base model", elem_id="chat-ft-base",
                                       info="shipped, trained here, local, GPT-2, or SmolLM2-135M (-Instruct) "
                                            "when on disk; a base over twice the shipped one's size trains LoRA "
                                            "adapters")
            form["data"] = gr.Radio(DATA_CHOICES, value=DEFAULT_FORM.data, label="Instruction data",
                                    elem_id="chat-ft-data")
        form["families"] = gr.CheckboxGroup(list(FAMILIES), value=DEFAULT_FORM.families, elem_id="chat-ft-families",
                                            label="Kinds of question (of the shipped set; none ticked: all 16)")
        with gr.Row():
            form["max_entries"] = gr.Slider(16, MAX_ENTRIES, value=DEFAULT_FORM.max_entries, step=1,
                                            label="Training entries (at most)", elem_id="chat-ft-entries")
            form["file"] = gr.File(file_types=[".json"], type="filepath", elem_id="chat-ft-file", height=120,
                                   label=f"Alpaca JSON: a list of instruction, input (optional), output "
                                         f"(up to {limits.max_upload_mb} MB)")
        with gr.Row():
            form["epochs"] = slider(InstructConfig, "epochs", "Epochs", DEFAULT_FORM.epochs, high=MAX_EPOCHS)
            form["lr"] = number(InstructConfig, "lr", "Learning rate", DEFAULT_FORM.lr)
            form["batch_size"] = slider(InstructConfig, "batch_size", "Batch size", DEFAULT_FORM.batch_size)
        with gr.Row():
            form["lora_rank"] = slider(InstructConfig, "lora_rank", "LoRA rank (0 = every weight trains)",
                                       DEFAULT_FORM.lora_rank, high=MAX_RANK, elem_id="chat-ft-rank")
            form["lora_alpha"] = number(InstructConfig, "lora_alpha", "LoRA alpha (the update is scaled by alpha / "
                                        "rank)", DEFAULT_FORM.lora_alpha)
            form["mask_prompt"] = gr.Checkbox(DEFAULT_FORM.mask_prompt,
                                              label="Mask the prompt from the loss (learn the answers only)")
            form["digits"] = gr.Checkbox(DEFAULT_FORM.digits, elem_id="chat-ft-digits",
                                         label="Numbers digit by digit (\"137\" as 1 3 7, as the shipped chat model "
                                               "reads them: sums are learnt per digit)")
        gr.Markdown(registry.open_bases_missing(OPEN_BASES), elem_id="chat-ft-open")
        with gr.Row():
            check = gr.Button("Check memory and time", elem_id="chat-ft-check")
            start = gr.Button("Start finetuning", variant="primary", elem_id="chat-ft-start")
            stop = gr.Button("Stop", variant="stop", elem_id="chat-ft-stop")
        estimate = gr.Markdown(elem_id="chat-ft-estimate")
        line = gr.Markdown(elem_id="chat-ft-status")
        curve = Plot(label="Loss", elem_id="chat-ft-curve")
        result = gr.Markdown(elem_id="chat-ft-result")
        with gr.Accordion("Download or upload a chat model (.zip)", open=False):
            with gr.Row():
                download = gr.Button("Download the picked chat model", elem_id="chat-download")
                zipped = gr.File(label="Chat model archive")
            uploaded = gr.Markdown()
            share_buttons(registry, picker, token, uploaded, "chat")
            upload = gr.File(file_types=[".zip"], type="filepath", label="Upload a chat model .zip")
    timer = gr.Timer(1.0, active=False)

    base = form["base"]
    watch = user_errors(functools.partial(finetune_status, runner, registry))
    watched = [line, curve, result, timer, picker, left, right, base]
    fields = {name: form[name] for name in ChatFinetuneForm.__dataclass_fields__}  # the API's order: the form's
    start.click(user_errors(on_form(ChatFinetuneForm, functools.partial(start_finetune, runner, registry))), token,
                [line, token], inputs_kwargs=fields, api_name="chat_finetune_start").success(
        watch, token, watched, api_visibility="private")
    stop.click(user_errors(functools.partial(stop_finetune, runner)), token, line, api_name="chat_finetune_stop")
    check.click(user_errors(on_form(ChatFinetuneForm, functools.partial(check_finetune, runner, registry))), token,
                estimate, inputs_kwargs=fields, api_name="chat_finetune_check", concurrency_id="finetune_probe",
                concurrency_limit=1)
    base.change(functools.partial(base_defaults, registry), base, [form["lora_rank"], form["digits"]],
                api_visibility="private")
    timer.tick(watch, token, watched, api_name="chat_finetune_status", concurrency_id="chat_finetune_status",
               concurrency_limit=8)
    download.click(user_errors(functools.partial(download_chat, registry)), [picker, token], zipped,
                   api_name="chat_download")
    upload.upload(user_errors(functools.partial(upload_chat, runner, registry)), [upload, token], [uploaded, picker],
                  api_name="chat_upload")
    tab.select(watch, token, watched, api_visibility="private")  # coming back shows the visitor's finetune
    return base, token


def build(registry: ModelRegistry, runner: JobRunner, tab: gr.Tab) -> None:
    gr.Markdown("A base model finetuned on instructions (the book's chapter 7): each message becomes an Alpaca "
                "prompt, earlier turns go into its input. An open instruct model (Qwen3, SmolLM2-Instruct) reads "
                "the conversation in its own chat template instead. Pick a chat model, compare two side by side, "
                "or finetune your own below.", elem_id="chat-intro")
    picker, info, scores = _chat_panel(registry)
    left, right = _compare_panel(registry)
    base, token = _finetune_panel(runner, registry, picker, left, right, tab)
    preference_view.build(registry)
    show = user_errors(functools.partial(model_info, registry))
    picker.change(show, picker, [info, scores], api_name="chat_model")
    refresh = user_errors(functools.partial(model_choices, registry))  # the wrapper lets Gradio see gr.Request
    tab.select(refresh, token, [picker, left, right, base], api_visibility="private")
    demo = gr.context.Context.root_block
    if demo is not None:  # each page reads the choices anew: models finetuned since the server started
        demo.load(refresh, token, [picker, left, right, base], api_visibility="private")
        demo.load(show, picker, [info, scores], api_visibility="private")
