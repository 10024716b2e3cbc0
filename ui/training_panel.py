"""The job panel of the three training rooms (Train, Spam, Chat), written once: each tab says what it starts,
how its events are drawn and what its result shows; the panel owns the rest.

Who owns a job (in public mode a token this server signed, kept by the browser), starting one (the run named
once, its folder made, the job submitted to `ui/jobs.py`'s runner, the folder removed again if that fails), stopping it,
resuming it, and what the page shows while it runs: the status line, the curve (a resumed run's
earlier steps included) and whether the timer keeps ticking. Also the pieces the tabs' run uploads
share: the size check and unpacking a run zip.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from gpt.instruct.finetune import finetune_memory_bytes
from gpt.memory import require_memory
from gpt.open_models import count_text
from gpt.pretrain.archive import ArchiveError, read_run_archive, write_run_archive
from gpt.pretrain.state import loss_figure
from gpt.training.events import TrainEvent
from ui.common import public_mode, user_errors
from ui.jobs import Job, JobError, JobRunner, TrainLimits
from ui.registry import RUN_PREFIX, BaseModel, ModelRegistry

TOKEN = re.compile(r"[A-Za-z0-9_-]{8,64}")
TOKEN_KEY = "gpt-playground-owner"  # the browser's stored token: one owner per browser, for every tab
SIGNED = re.compile(r"(?P<id>[A-Za-z0-9_-]{22})\.(?P<mac>[0-9a-f]{32})")
SECRET_FILE = ".secret"  # in the runs folder: the key that signs visitors' tokens (a restart keeps them valid)
MAX_SESSIONS = 20_000  # sessions whose minted owner is remembered (about 2 MB)


class Visitors:
    """Owners on a public server are minted here, not named by the caller: a random id signed with the server's
    key, remembered for the session that asked first and kept by the browser as its token. A token the server did
    not sign is not an owner, so no caller can claim another's runs or a name of their choosing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[Path, bytes] = {}
        self._minted: OrderedDict[str, str] = OrderedDict()

    def key(self) -> bytes:
        """`GPT_APP_SECRET`, else a key kept in the runs folder (made on first use, readable by this user only)."""
        if os.environ.get("GPT_APP_SECRET"):
            return os.environ["GPT_APP_SECRET"].encode()
        path = TrainLimits.from_env().runs_dir / SECRET_FILE
        with self._lock:
            if path not in self._keys:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with contextlib.suppress(FileExistsError), os.fdopen(
                            os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                        f.write(secrets.token_hex(32))
                    self._keys[path] = bytes.fromhex(path.read_text().strip())
                except (OSError, ValueError):  # a read-only or damaged folder: tokens last as long as the process
                    self._keys[path] = secrets.token_bytes(32)
            return self._keys[path]

    def sign(self, visitor_id: str) -> str:
        return f"{visitor_id}.{hmac.new(self.key(), visitor_id.encode(), 'sha256').hexdigest()[:32]}"

    def signed(self, token: object) -> bool:
        match = SIGNED.fullmatch(token) if isinstance(token, str) else None
        return match is not None and hmac.compare_digest(self.sign(match["id"]), token)

    def of_session(self, session: str) -> str:
        """The session's owner: minted on its first question, the same one after."""
        minted = self.sign(secrets.token_urlsafe(16))  # outside the lock: signing reads the key under it
        with self._lock:  # one step, so two first questions of a session at once get the same owner
            token = self._minted.pop(session, minted)
            self._minted[session] = token
            while len(self._minted) > MAX_SESSIONS:
                self._minted.popitem(last=False)
        return token


VISITORS = Visitors()


def owner_of(token: str | None, request: gr.Request | None) -> str:
    """Who is asking. In public mode: the browser's stored token if this server signed it (it survives a reload),
    else the owner minted for the connection's session. On a laptop (local mode) any well-formed token, else the
    session itself, as everyone's runs are everyone's there."""
    public = public_mode()
    if isinstance(token, str) and (VISITORS.signed(token) if public else TOKEN.fullmatch(token)):
        return token
    session = getattr(request, "session_hash", None)
    if not session:
        raise ValueError("No session: reload the page.")
    return VISITORS.of_session(str(session)) if public else str(session)


OWNER_FILE = ".owner"  # in a run folder: a digest of the session that made it (public mode shows it to them only)


def _digest(owner: str) -> str:
    return hashlib.sha256(owner.encode("utf-8", "replace")).hexdigest()


def mark_owner(folder: Path, owner: str) -> None:
    (folder / OWNER_FILE).write_text(_digest(owner))


def owns(folder: Path, owner: str | None) -> bool:
    """Whether `owner` may list and download the run in `folder`: anyone on a laptop (`public_mode()` off); in
    public mode only the session that trained or uploaded it."""
    if not public_mode():
        return True
    try:
        return owner is not None and (folder / OWNER_FILE).read_text().strip() == _digest(owner)
    except OSError:
        return False


def asker_of(token: str | None, request: gr.Request | None) -> str | None:
    """Who asks, in public mode (None on a laptop, where every run is everyone's)."""
    return owner_of(token, request) if public_mode() else None


def run_name(prefix: str) -> str:
    """A new run's folder name: when it was made, and 48 random bits, so that on a public server a run nobody shared
    cannot be found by guessing its name (the pickers never list it to another visitor)."""
    return prefix + time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(6)


SHARED_FILE = ".shared"  # in a run folder: its owner shared it, so every visitor may list, pick and download it
RUN_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a run folder's name, as the runs get them


def may_see(runs_root: Path | None, name: str, asker: str | None) -> bool:
    """Whether `asker` (`asker_of`) may list, pick or download model `name`: shipped and Hub models are everyone's;
    a run (`run:...`) in public mode only the session's that trained or uploaded it, unless they shared it."""
    if not isinstance(name, str) or not name.strip().startswith(RUN_PREFIX):
        return True
    folder = run_folder(runs_root, name)
    if folder is None:
        return not public_mode()  # a laptop's: whoever resolves the name says what is wrong with it
    return owns(folder, asker) or (folder / SHARED_FILE).is_file()


def run_folder(runs_root: Path | None, name: str) -> Path | None:
    """The folder of run `name` (`run:...`) in `runs_root`, or None for a name no run can have."""
    folder_name = name.strip().removeprefix(RUN_PREFIX).strip() if isinstance(name, str) else ""
    return runs_root / folder_name if runs_root is not None and RUN_FOLDER.fullmatch(folder_name) else None


def share(runs_root: Path | None, name: str, shared: bool, asker: str | None) -> str:
    """Share the asker's run `name` with every visitor of a public server (a teacher's model for the class), or stop
    sharing it. Only its owner may; the shipped models are everyone's already."""
    folder = run_folder(runs_root, name)
    if not (isinstance(name, str) and name.strip().startswith(RUN_PREFIX)):
        raise ValueError("Only runs made or uploaded here can be shared; the shipped models are everyone's already.")
    if folder is None or not folder.is_dir() or not owns(folder, asker):
        raise ValueError(f"{name.strip()!r} is not one of your runs: pick one of yours to share.")
    if shared:
        (folder / SHARED_FILE).touch()
        return f"`{name.strip()}` is shared: every visitor can now pick and download it."
    (folder / SHARED_FILE).unlink(missing_ok=True)
    return f"`{name.strip()}` is yours alone again."


def visible_choices(registry: ModelRegistry, asker: str | None, names: list[str] | None = None
                    ) -> list[tuple[str, str]]:
    """(label, name) for a model dropdown: every name the picker offers (or `names`) that `asker` may see."""
    names = registry.names() if names is None else names
    return registry.choices([name for name in names if may_see(registry.runs_root, name, asker)])


def share_run(registry: ModelRegistry, name: str, token: str | None = None, request: gr.Request = None, *,
              shared: bool) -> str:
    """The Share buttons of the three training rooms: `share` the visitor's run, or stop sharing it."""
    if not public_mode():
        return (share(registry.runs_root, name, shared, None) +
                " (On this server every run is everyone's already: sharing counts on a public server.)")
    return share(registry.runs_root, name, shared, asker_of(token, request))


def share_buttons(registry: ModelRegistry, name: gr.components.Component, token: gr.BrowserState,
                  message: gr.Markdown, api_name: str) -> None:
    """Buttons that share the run named in `name` with every visitor, or stop sharing it; `message` says so."""
    with gr.Row():
        on = gr.Button("Share with every visitor", size="sm", elem_id=f"{api_name}-share")
        off = gr.Button("Stop sharing", size="sm", elem_id=f"{api_name}-unshare")
    on.click(user_errors(functools.partial(share_run, registry, shared=True)), [name, token], message,
             api_name=f"{api_name}_share")
    off.click(user_errors(functools.partial(share_run, registry, shared=False)), [name, token], message,
              api_name=f"{api_name}_unshare")


def owner_token(tab: gr.Tab | None = None) -> gr.BrowserState:
    """The component that holds the owner's token in the browser. Gradio encrypts it with a key of the server's:
    derived from the visitors' key, so that a restarted server still reads it. On a public server, opening `tab`
    keeps the visitor's owner in the browser, so that what they upload before any training is still theirs after
    a reload (the page's load events run before the browser's value is read back, so they cannot do it); the first
    start writes it too."""
    secret = hmac.new(VISITORS.key(), b"browser state", "sha256").hexdigest()[:32]
    token = gr.BrowserState(None, storage_key=TOKEN_KEY, secret=secret)
    if tab is not None:
        tab.select(user_errors(remember_owner), token, token, api_visibility="private")
    return token


def remember_owner(token: str | None, request: gr.Request = None) -> Any:
    """The visitor's owner for the browser to keep (public mode), or the token left as it is."""
    return owner_of(token, request) if public_mode() else gr.skip()


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def loss_rows(events: list[TrainEvent]) -> list[dict[str, float]]:
    """Events as the rows `loss_figure` draws: train loss per step, validation loss at each evaluation or epoch."""
    rows = []
    for e in events:
        if e.kind == "step":
            rows.append({"tokens_seen": e.tokens_seen, "train_loss": e.metrics["train_loss"]})
        elif e.kind in ("eval", "epoch") and "val_loss" in e.metrics:
            rows.append({"tokens_seen": e.tokens_seen, "val_loss": e.metrics["val_loss"]})
    return rows


def loss_curve(events: list[TrainEvent], title: str) -> go.Figure:
    """Training and validation loss against tokens seen (the Train and Chat tabs' curve)."""
    return loss_figure(loss_rows(events), title=title)


@dataclass(frozen=True)
class Submission:
    """What a tab starts: `target(monitor=..., **kwargs)` in the job runner, and a few words about it."""

    target: Callable[..., Any]
    kwargs: dict[str, Any]
    about: str = ""


@dataclass(frozen=True)
class JobView:
    """The owner's job (None before the first) as the page shows it; `finished` once it has a result to show."""

    line: str
    figure: go.Figure | None
    timer: gr.Timer
    job: Job | None = None
    finished: bool = False

    @property
    def events(self) -> list[TrainEvent]:
        """The run's events, a resumed run's earlier ones first."""
        return self.job.before + self.job.events if self.job is not None else []


def state_line(runner: JobRunner, job: Job, progress: Callable[[Job], str], what: str) -> str | None:
    """The status line of a job that has not finished with a result (None when it has: the tab shows it).

    `progress(job)` words a running job's progress; `what` names the job ("training", "finetuning").
    """
    if job.state == "queued":
        running, _ = runner.busy()
        return f"Waiting: place {runner.place_in_queue(job)} in the queue ({running} training running)."
    if job.active:
        return progress(job) + (" Stopping…" if job.state == "stopping" else "")
    if job.state == "failed":
        return f"⚠️ The {what} failed: {job.error}"
    if job.state == "cancelled":
        return "Cancelled before it started."
    if job.result is None:
        return "Stopped before the first step: there is no model yet."
    return None


@dataclass(frozen=True)
class Panel:
    """One tab's job panel: which jobs are its own, and how its events are worded and drawn."""

    kind: str  # the runner's job kind: "train", "classifier" or "instruct"
    what: str  # the job in messages: "training", "finetuning"...
    prefix: str  # of its run names, after the date
    title: str  # of its curve: "Training", "Finetuning"
    progress: Callable[[Job], str]  # a running job's status line
    curve: Callable[[list[TrainEvent], str], go.Figure]  # events, a resumed run's earlier ones first
    stopping: str  # what Stop answers

    def start(self, runner: JobRunner, owner: str, prepare: Callable[[Path], Submission]) -> str:
        """Name the run, make its folder, let `prepare(folder)` write what the job reads there and say what to run,
        and submit it; the folder goes again if anything fails. Returns the first status line."""
        name = run_name(self.prefix)
        folder = runner.limits.runs_dir / name
        folder.mkdir(parents=True)
        mark_owner(folder, owner)
        try:
            submission = prepare(folder)
            job = runner.submit(owner, name, submission.target, submission.kwargs, kind=self.kind)
        except (JobError, ValueError, OSError):
            shutil.rmtree(folder, ignore_errors=True)
            raise
        about = f" ({submission.about})" if submission.about else ""
        place = runner.place_in_queue(job)
        return (f"Queued **{RUN_PREFIX}{name}**{about}: place {place} in the queue." if place else
                f"Started **{RUN_PREFIX}{name}**{about}.")

    def stop(self, runner: JobRunner, token: str | None, request: gr.Request | None) -> str:
        runner.stop_latest(owner_of(token, request), self.kind, self.what)
        return self.stopping

    def resume(self, runner: JobRunner, token: str | None, request: gr.Request | None) -> str:
        """Continue the owner's stopped run from its checkpoint, with the same settings and data; its curve
        keeps the steps before the stop."""
        owner = owner_of(token, request)
        job = runner.job_of(owner, self.kind)
        if job is None or not runner.resumable(job):
            raise ValueError(f"There is no unfinished {self.what} to resume: start one; once it is stopped (or its "
                             "time budget ran out, or the server stopped), Resume continues it.")
        new = runner.submit(owner, job.name, job.target, {**job.kwargs, "resume": True}, kind=self.kind,
                            before=job.before + job.events)
        where = f"step {job.result.steps}" if job.result is not None else "its last checkpoint"
        return f"Resuming **{RUN_PREFIX}{new.name}** from {where}."

    def view(self, runner: JobRunner, token: str | None, request: gr.Request | None) -> JobView:
        """The owner's job: its status line and curve; other sessions' jobs only as a busy machine."""
        job = runner.job_of(owner_of(token, request), self.kind)
        if job is None:
            running, waiting = runner.busy()
            busy = f" The machine is training for {running} other session(s), {waiting} waiting." if running else ""
            return JobView(f"No {self.what} yet: set it up above and press Start." + busy, None,
                           gr.Timer(active=False))
        events = job.before + job.events
        figure = self.curve(events, f"{self.title} {job.name}") if events else None
        line = state_line(runner, job, self.progress, self.what)
        if line is not None:
            return JobView(line, figure, gr.Timer(active=job.active), job)
        ended = next((e.text for e in reversed(job.events) if e.kind in ("stopped", "done")), "")
        return JobView(f"Finished: {RUN_PREFIX}{job.name}" + (f" ({ended})." if ended else "."), figure,
                       gr.Timer(active=False), job, finished=True)


def finetune_base(runner: JobRunner, registry: ModelRegistry, name: str, lora: bool = False) -> BaseModel:
    """The base model to finetune, within the app's size limits: every weight of one training up to
    `max_params`, LoRA adapters on a frozen base up to `max_lora_params`."""
    base = registry.base_model(name)
    n_params, limits = base.config.n_params(), runner.limits
    limit = limits.max_lora_params if lora else limits.max_params
    if n_params > limit:
        hint = (f" Turn LoRA on: a frozen base may have up to {count_text(limits.max_lora_params)}."
                if not lora and n_params <= limits.max_lora_params else " Pick a smaller base model.")
        raise ValueError(f"{base.name} has {count_text(n_params)} parameters; the limit here is {count_text(limit)}"
                         f"{' with LoRA' if lora else ' when every weight trains'}.{hint}")
    return base


PROBE_LOCK = threading.Lock()  # one timed step at a time in the server: two would time each other


def check_memory(base: BaseModel, batch_size: int, tokens: int, lora: bool) -> int:
    """The memory a finetune of `base` needs (`gpt.instruct.finetune.finetune_memory_bytes`), refused in a sentence
    when the machine has not that much free; the bytes otherwise."""
    needed = finetune_memory_bytes(base.config, batch_size, tokens, lora)
    require_memory(needed, f"Finetuning {base.name} ({'LoRA' if lora else 'every weight'}, batches of "
                           f"{batch_size} x {tokens} tokens)")
    return needed


def estimate_line(base: BaseModel, needed: int, seconds: float, steps: int, limits_minutes: float, lora: bool) -> str:
    """What a finetune will take, said before it starts: its memory, the measured step and the whole run."""
    total = seconds * steps
    over = (f" The app stops a run after {limits_minutes:g} minutes (with what it has learnt so far)."
            if total > 60 * limits_minutes else "")
    return (f"**{base.name}**: {base.config.n_params() / 1e6:,.1f}M parameters, "
            f"{'LoRA adapters train, the base stays frozen' if lora else 'every weight trains'}. Needs about "
            f"**{needed / 2**20:,.0f} MB** of memory (weights, gradients, optimizer, activations). Measured here: "
            f"**{seconds:.2f} s per step** on the app's threads, so {steps:,} steps take about "
            f"**{duration(total)}** (the run's own threads may be faster or slower).{over}")


def check_upload(runner: JobRunner, file: str | None, what: str) -> Path:
    """An uploaded file's path, once it is there and within the upload limit."""
    if not file:
        raise ValueError(f"Choose a {what} to upload.")
    size = Path(file).stat().st_size
    if size > runner.limits.max_upload_mb * 2**20:
        raise ValueError(f"The file is {size / 2**20:.1f} MB: the limit is {runner.limits.max_upload_mb} MB.")
    return Path(file)


def run_zip(model_folder: Path) -> str:
    """A run (the folder above its model folder) as one zip in a fresh temporary folder, as `receive_run_zip`
    takes it back."""
    run = model_folder.parent
    return str(write_run_archive(run, Path(tempfile.mkdtemp(prefix="run-zip-")) / f"{run.name}.zip"))


UPLOADED = "upload-"  # an uploaded run's folder name contains it (`upload-...`, `chat-upload-...`)


def upload_folder(runner: JobRunner, prefix: str = UPLOADED) -> Path:
    """A new run folder's path for an upload, once the runs' disk has room for it."""
    if runner.runs_mb() > runner.limits.max_disk_mb:
        raise ValueError(f"The runs on this server fill their disk ({runner.limits.max_disk_mb:,} MB): try again "
                         "once old runs are removed.")
    return runner.limits.runs_dir / run_name(prefix)


def keep_upload(runner: JobRunner, folder: Path, owner: str | None) -> None:
    """Mark an upload as `owner`'s (public mode), who keeps at most `runs_per_visitor` uploads: past it their own
    oldest upload goes, so that one visitor's uploads cannot fill the disk."""
    if owner is None:
        return
    mark_owner(folder, owner)
    mine = [d for d in runner.limits.runs_dir.iterdir()
            if d.is_dir() and UPLOADED in d.name and owns(d, owner)]
    mine.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    for old in mine[runner.limits.runs_per_visitor:]:
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)


def receive_run_zip(runner: JobRunner, file: str | None, prefix: str = UPLOADED, owner: str | None = None
                    ) -> tuple[str, Path]:
    """Unpack a run zip (as `run_zip` makes them) into a new run folder, the uploader's: its name and its
    model folder."""
    path = check_upload(runner, file, "run .zip")
    folder = upload_folder(runner, prefix)
    try:
        model = read_run_archive(path, folder)
    except ArchiveError as err:
        raise ValueError(f"Not a run archive: {err}") from err
    keep_upload(runner, folder, owner)
    return folder.name, model
