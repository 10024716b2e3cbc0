"""The app's one job runner: trainings run in their own processes, queued, owned by the session that started them.

A training never runs inside a browser request: `submit` starts a child process (spawned, so it
shares no state with the server: not its threads, not its random generator) and a supervising
thread that collects the child's `TrainEvent`s. Closing the page leaves the job running; the
owner can come back, watch it, and stop it. Other sessions see that the machine is busy and their
place in the queue, and nothing more. Limits come from environment variables (`TrainLimits`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import queue
import shutil
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt.data.download import cache_dir
from gpt.training.events import TrainEvent, TrainingMonitor

log = logging.getLogger("gpt.app")


def env_number(name: str, default: float, kind: type = int) -> Any:
    raw = os.environ.get(name)
    try:
        return kind(raw) if raw else default
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class TrainLimits:
    """What one training may ask for; the defaults suit a 2-vCPU, 16 GB Hugging Face Space."""

    max_running: int = 1  # GPT_TRAIN_MAX_RUNNING: trainings at once
    max_queued: int = 4  # GPT_TRAIN_MAX_QUEUED: trainings waiting for a free slot
    max_chars: int = 8_000_000  # GPT_TRAIN_MAX_CHARS: training text (all sources together)
    max_upload_mb: int = 20  # GPT_TRAIN_MAX_UPLOAD_MB: one uploaded .txt file or run zip
    max_params: int = 30_000_000  # GPT_TRAIN_MAX_PARAMS
    max_lora_params: int = 200_000_000  # GPT_TRAIN_MAX_LORA_PARAMS: a base finetuned with LoRA (its weights frozen)
    max_vocab: int = 8_192  # GPT_TRAIN_MAX_VOCAB: our BPE's vocabulary (trained in a limited child process)
    max_steps: int = 20_000  # GPT_TRAIN_MAX_STEPS
    max_minutes: float = 60.0  # GPT_TRAIN_MAX_MINUTES: a training is stopped (with a checkpoint) after this
    keep_runs: int = 20  # GPT_TRAIN_KEEP_RUNS: finished runs kept on disk; the oldest are removed
    runs_per_visitor: int = 5  # GPT_TRAIN_RUNS_PER_VISITOR: one visitor's runs kept; past it, their own oldest go
    max_disk_mb: int = 5_000  # GPT_TRAIN_MAX_DISK_MB: all runs together; past it, a new run is refused (resumes go on)
    protect_hours: float = 2.0  # GPT_TRAIN_PROTECT_HOURS: another visitor's run is never pruned this soon after it ends
    threads: int = 2  # GPT_TRAIN_THREADS: torch threads of a training process
    max_memory_mb: int = 4096  # GPT_JOB_MAX_MEMORY_MB: one child process's memory (never more than 80% of what is free)
    probe_seconds: float = 120.0  # GPT_JOB_PROBE_SECONDS: a probe or a preview's tokenizer, in its child, at most
    runs_dir: Path = field(default_factory=lambda: cache_dir() / "runs")  # GPT_RUNS_DIR

    @classmethod
    def from_env(cls) -> TrainLimits:
        return cls(
            max_running=env_number("GPT_TRAIN_MAX_RUNNING", cls.max_running),
            max_queued=env_number("GPT_TRAIN_MAX_QUEUED", cls.max_queued),
            max_chars=env_number("GPT_TRAIN_MAX_CHARS", cls.max_chars),
            max_upload_mb=env_number("GPT_TRAIN_MAX_UPLOAD_MB", cls.max_upload_mb),
            max_params=env_number("GPT_TRAIN_MAX_PARAMS", cls.max_params),
            max_lora_params=env_number("GPT_TRAIN_MAX_LORA_PARAMS", cls.max_lora_params),
            max_vocab=env_number("GPT_TRAIN_MAX_VOCAB", cls.max_vocab),
            max_steps=env_number("GPT_TRAIN_MAX_STEPS", cls.max_steps),
            max_minutes=env_number("GPT_TRAIN_MAX_MINUTES", cls.max_minutes, float),
            keep_runs=env_number("GPT_TRAIN_KEEP_RUNS", cls.keep_runs),
            runs_per_visitor=env_number("GPT_TRAIN_RUNS_PER_VISITOR", cls.runs_per_visitor),
            protect_hours=env_number("GPT_TRAIN_PROTECT_HOURS", cls.protect_hours, float),
            max_disk_mb=env_number("GPT_TRAIN_MAX_DISK_MB", cls.max_disk_mb),
            threads=env_number("GPT_TRAIN_THREADS", cls.threads),
            max_memory_mb=env_number("GPT_JOB_MAX_MEMORY_MB", cls.max_memory_mb),
            probe_seconds=env_number("GPT_JOB_PROBE_SECONDS", cls.probe_seconds, float),
            runs_dir=Path(os.environ.get("GPT_RUNS_DIR") or cache_dir() / "runs"),
        )


def free_memory_mb() -> int | None:
    """MemAvailable of /proc/meminfo in MB (None where there is none: not Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_limit_mb(limits: TrainLimits) -> int:
    """One child's memory limit: `max_memory_mb`, less where the machine has less than that free (80% of it)."""
    free = free_memory_mb()
    return limits.max_memory_mb if free is None else max(256, min(limits.max_memory_mb, int(0.8 * free)))


def limit_memory(mb: int) -> None:
    """In a child process: its data segment (heap and anonymous maps, what tensors take) at most `mb`; past it an
    allocation fails (MemoryError, or torch's RuntimeError) instead of the machine swapping or the OOM killer
    choosing. RLIMIT_DATA, not RLIMIT_AS: torch's libraries map gigabytes of address space they never touch."""
    try:
        import resource
    except ImportError:  # not POSIX: no limit
        return
    limit = mb * 2**20
    for which in (getattr(resource, "RLIMIT_DATA", None), getattr(resource, "RLIMIT_AS", None)):
        if which is None:
            continue
        if which == getattr(resource, "RLIMIT_AS", None):
            limit = 4 * limit + 8 * 2**30  # the address space: only a backstop, well above the data limit
        with contextlib.suppress(ValueError, OSError):  # a hard limit below ours: keep it
            resource.setrlimit(which, (limit, resource.getrlimit(which)[1]))


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and (
        "can't allocate memory" in str(err) or "not enough memory" in str(err)))


def out_of_memory_message(mb: int) -> str:
    return (f"This ran past the memory limit of a job here ({mb:,} MB, GPT_JOB_MAX_MEMORY_MB): make it smaller "
            "(a smaller model, batch, context or vocabulary, or less text).")


def _limited_child(fn: Callable[..., Any], args: tuple, memory_mb: int, threads: int, conn: Any) -> None:
    limit_memory(memory_mb)
    try:
        import torch

        torch.set_num_threads(threads)
        conn.send(("ok", fn(*args)))
    except (ValueError, FileNotFoundError) as err:
        conn.send(("error", str(err)))
    except Exception as err:  # noqa: BLE001 - the server learns of any failure
        if is_out_of_memory(err):
            conn.send(("memory", ""))
        else:
            traceback.print_exc()
            conn.send(("failed", type(err).__name__))
    finally:
        conn.close()


def run_limited(fn: Callable[..., Any], *args: Any, limits: TrainLimits, what: str) -> Any:
    """`fn(*args)` (module-level, picklable) in a spawned child under the job memory limit and `probe_seconds`:
    work sized by a visitor's numbers (a probe step, a tokenizer on their text) never grows the server, which
    gets the result back, or a one-line ValueError. `what` names the work in that message."""
    mb = memory_limit_mb(limits)
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_limited_child, args=(fn, args, mb, limits.threads, send), daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(limits.probe_seconds):
            raise ValueError(f"{what} took longer than {limits.probe_seconds:g} s, the limit here "
                             "(GPT_JOB_PROBE_SECONDS): make it smaller.")
        try:
            kind, value = receive.recv()
        except EOFError:  # the child died without a word: killed for memory, most likely
            kind, value = "memory", ""
    finally:
        receive.close()
        if process.is_alive():
            process.kill()
        process.join(timeout=10)
    if kind == "ok":
        return value
    if kind == "memory":
        raise ValueError(f"{what}: {out_of_memory_message(mb)}")
    if kind == "error":
        raise ValueError(value)
    raise RuntimeError(f"{what} failed in its process ({value}); details are in the server log")


def train_bpe_ranks(text: str, vocab_size: int) -> dict[bytes, int]:
    """A BPE's ranks trained on `text` (run in a limited child by `run_limited`: its memory grows with the text)."""
    from gpt.bpe import BytePairEncoder

    return BytePairEncoder.train(text, vocab_size).ranks


def probe_seconds_per_step(cfg: Any) -> float:
    """`recipe_seconds_per_step(cfg)` (a fresh model and batch of the visitor's sizes: in a limited child)."""
    from gpt.pretrain.recipes import recipe_seconds_per_step

    return recipe_seconds_per_step(cfg)


def probe_classifier_seconds(base: Any, cfg: Any, data_mix: Any) -> float:
    """Seconds per step of a classifier finetune of `base` (loaded in the limited child, not the server)."""
    from gpt.classify.app_defaults import seconds_per_step

    return seconds_per_step(base, cfg, data_mix, steps=2)


def probe_instruct_seconds(base: Any, entries: list, cfg: Any) -> float:
    """Seconds per step of an instruction finetune of `base` on `entries` (loaded in the limited child)."""
    from gpt.instruct.finetune import seconds_per_step
    from gpt.pretrained import load_model

    return seconds_per_step(load_model(base), entries, cfg)


class JobError(ValueError):
    """A job request that cannot be honoured: the queue is full, the session has one already, not yours..."""


@dataclass
class Job:
    id: str
    owner: str  # the session that started it: only it may stop it
    name: str  # the run's folder name under the runs directory
    target: Callable[..., Any]  # what runs: target(monitor=..., **kwargs), in the child process
    kwargs: dict[str, Any]  # its arguments: a resumed job reuses them
    kind: str = "train"  # which tab's job: "train", "classifier" or "instruct"; each tab shows only its own
    state: str = "queued"  # queued, running, stopping, stopped (by its owner), done, failed, cancelled
    events: list[TrainEvent] = field(default_factory=list)
    before: list[TrainEvent] = field(default_factory=list)  # a resumed run's events up to its stop
    result: Any = None  # what the target returned: a frozen dataclass of the run's figures
    error: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    _stop: Any = None  # the child's stop flag (a multiprocessing Event)
    _process: Any = None  # the child process, while it runs

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running", "stopping")


def _child(target: Callable[..., Any], kwargs: dict[str, Any], events: Any, stop: Any, threads: int,
           max_seconds: float, memory_mb: int | None = None) -> None:
    """The training process: run `target(monitor=..., **kwargs)`, sending every event and the outcome back.

    Past `max_seconds` the job is asked to stop, as if its owner had pressed Stop: whatever the job,
    it keeps what it has and ends.
    """
    if memory_mb:
        limit_memory(memory_mb)
    import torch

    torch.set_num_threads(threads)
    monitor = TrainingMonitor(lambda e: events.put(("event", e)))
    deadline = time.monotonic() + max_seconds
    parent = os.getppid()

    def check_stop(_: TrainEvent) -> None:  # a server that died (kill -9) leaves no orphan: it checkpoints and ends
        if stop.is_set() or time.monotonic() > deadline or os.getppid() != parent:
            monitor.request_stop()

    monitor.listeners.insert(0, check_stop)
    try:
        events.put(("result", target(monitor=monitor, **kwargs)))
    except (ValueError, FileNotFoundError) as err:  # bad input: its message is for the user
        events.put(("error", str(err)))
    except Exception as err:  # noqa: BLE001 - a failure of memory has a message of its own
        if memory_mb and is_out_of_memory(err):
            events.put(("error", out_of_memory_message(memory_mb)))
            return
        traceback.print_exc()
        events.put(("error", f"the training failed ({type(err).__name__}); details are in the server log"))


RECORDS = ".jobs"  # under the runs folder: what each unfinished job ran, so that it can resume after a restart
TAB_OF_KIND = {"train": "Train", "classifier": "Spam", "instruct": "Chat", "reasoning": "Reasoning"}  # in messages
RESTARTED = "the server stopped while it ran; Resume continues it from its last checkpoint"


class JobRunner:
    """Queue and run jobs, at most `limits.max_running` at once; thread-safe.

    Each job's owner, target and arguments are written to `<runs>/.jobs/<name>.pickle` (the server's own
    folder: uploads unpack into run folders of names the server makes) until the job finishes; a new
    runner reads them back as ended jobs, so their owner can resume them after a restart.
    """

    def __init__(self, limits: TrainLimits | None = None):
        self.limits = limits or TrainLimits.from_env()
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._running = 0
        self._context = mp.get_context("spawn")
        self._closed = False  # set by `shutdown`: nothing starts any more
        self._restore()

    # -- records of unfinished jobs ----------------------------------------------------------------
    def _record(self, name: str) -> Path:
        return self.limits.runs_dir / RECORDS / f"{name}.pickle"

    def _write_record(self, job: Job) -> None:
        path = self._record(job.name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps({"owner": job.owner, "name": job.name, "target": job.target,
                                         "kwargs": job.kwargs, "kind": job.kind, "created": job.created}))
            os.replace(tmp, path)
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            log.warning("job %s: no record written; it cannot resume after a restart", job.name)

    def _drop_record(self, name: str) -> None:
        self._record(name).unlink(missing_ok=True)

    def _restore(self) -> None:
        folder = self.limits.runs_dir / RECORDS
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.pickle")):
            try:
                record = pickle.loads(path.read_bytes())  # noqa: S301 - written by this server, in its own folder
            except Exception:  # noqa: BLE001 - an unreadable record is dropped, not fatal
                path.unlink(missing_ok=True)
                continue
            if not (self.limits.runs_dir / record["name"]).is_dir():
                path.unlink(missing_ok=True)
                continue
            job = Job(uuid.uuid4().hex, record["owner"], record["name"], record["target"], record["kwargs"],
                      record["kind"], state="failed", error=RESTARTED, created=record["created"],
                      finished=path.stat().st_mtime, _stop=self._context.Event())
            self._jobs[job.id] = job

    def resumable(self, job: Job) -> bool:
        """Whether `job` ended before finishing and left a checkpoint to go on from: stopped or out of time, or its
        process (or the server) died after a checkpoint."""
        if job.active:
            return False
        if job.result is not None:
            return not job.result.finished
        from gpt.pretrain.state import STATE_FILE
        from gpt.reasoning.state import STATE_FILE as RL_STATE_FILE
        from ui.registry import RUN_MODEL

        folder = self.limits.runs_dir / job.name  # a GRPO run keeps its state beside its model
        states = (folder / STATE_FILE, folder / RUN_MODEL / RL_STATE_FILE)
        return job.state == "failed" and any(state.is_file() for state in states)

    # -- asking ----------------------------------------------------------------------------------
    def job_of(self, owner: str, kind: str | None = None) -> Job | None:
        """The owner's most recent job (of `kind`, when given)."""
        with self._lock:
            mine = [j for j in self._jobs.values() if j.owner == owner and kind in (None, j.kind)]
        return max(mine, key=lambda j: j.created) if mine else None

    def runs_mb(self) -> float:
        """What the runs folder holds, in MB."""
        root = self.limits.runs_dir
        if not root.is_dir():
            return 0.0
        total = 0
        for path in root.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file():
                    total += path.stat().st_size
        return total / 2**20

    def place_in_queue(self, job: Job) -> int:
        """1 for the next to start, 2 after it...; 0 when not waiting."""
        with self._lock:
            for place, waiting in enumerate(self._waiting, 1):
                if waiting is job:
                    return place
        return 0

    def busy(self) -> tuple[int, int]:
        """(running, waiting) jobs: what another session is told about the machine."""
        with self._lock:
            return self._running, len(self._waiting)

    # -- acting ----------------------------------------------------------------------------------
    def submit(self, owner: str, name: str, target: Callable[..., Any], kwargs: dict[str, Any],
               kind: str = "train", before: list[TrainEvent] | None = None) -> Job:
        """Queue `target(monitor=..., **kwargs)` (a picklable, module-level function) for `owner`.

        One job per owner at a time, whatever its kind: the machine is shared. `before` are the events of
        the jobs this one continues (a resumed run), so that its curve is the whole run's.
        """
        with self._lock:
            busy = next((j for j in self._jobs.values() if j.owner == owner and j.active), None)
            if busy is not None:
                where = TAB_OF_KIND.get(busy.kind, busy.kind)
                raise JobError(f"You already have a training queued or running (in the {where} tab): stop it first.")
            if len(self._waiting) >= self.limits.max_queued and self._running >= self.limits.max_running:
                raise JobError(f"The queue is full ({self.limits.max_queued} trainings waiting): try again later.")
            resuming = any(j.name == name for j in self._jobs.values())
            if not resuming and self.runs_mb() > self.limits.max_disk_mb:
                raise JobError(f"The runs on this server fill their disk ({self.limits.max_disk_mb:,} MB, "
                               "GPT_TRAIN_MAX_DISK_MB): try again once old runs are removed.")
            job = Job(uuid.uuid4().hex, owner, name, target, kwargs, kind, before=list(before or []),
                      _stop=self._context.Event())
            self._jobs[job.id] = job
            self._waiting.append(job)
        self._write_record(job)
        self._start_waiting()
        return job

    def stop(self, job: Job, owner: str) -> None:
        """Ask the owner's job to stop: a waiting one is cancelled, a running one checkpoints and ends."""
        if job.owner != owner:
            raise JobError("Only the session that started this training can stop it.")
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
                job.state, job.finished = "cancelled", time.time()
                self._drop_record(job.name)
                return
            if job.state == "running":
                job.state = "stopping"
                job._stop.set()

    def stop_latest(self, owner: str, kind: str, what: str) -> None:
        """Stop the owner's running job of `kind`; `what` names it in the message when there is none."""
        job = self.job_of(owner, kind)
        if job is None or not job.active:
            raise ValueError(f"You have no {what} running.")
        self.stop(job, owner)

    def wait(self, job: Job, timeout: float) -> bool:
        """Block until `job` has ended (for tests and scripts); True if it did."""
        deadline = time.monotonic() + timeout
        while job.active and time.monotonic() < deadline:
            time.sleep(0.05)
        return not job.active

    def shutdown(self, grace_s: float = 10.0) -> int:
        """Stop every job (the server is stopping: SIGTERM, Ctrl-C): the waiting are cancelled, the running asked to
        stop (they checkpoint), and any child still alive after `grace_s` is killed. Returns how many were running."""
        with self._lock:
            self._closed = True
            for job in self._waiting:
                job.state, job.finished = "cancelled", time.time()
            self._waiting.clear()
            # The supervisor clears `_process` when a child ends, so hold each process object here.
            running = [(j, j._process) for j in self._jobs.values()
                       if j._process is not None and j.state in ("running", "stopping")]
        for job, _ in running:
            job._stop.set()
        deadline = time.monotonic() + grace_s
        for _, process in running:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        return len(running)

    # -- running ---------------------------------------------------------------------------------
    def _start_waiting(self) -> None:
        with self._lock:
            if self._closed:
                return
            starting = []
            while self._waiting and self._running < self.limits.max_running:
                starting.append(self._waiting.popleft())
                self._running += 1
        for job in starting:
            job.state, job.started = "running", time.time()
            threading.Thread(target=self._supervise, args=(job,), daemon=True, name=f"job-{job.name}").start()

    def _supervise(self, job: Job) -> None:
        events = self._context.Queue()
        process = self._context.Process(target=_child, daemon=True,
                                        args=(job.target, job.kwargs, events, job._stop, self.limits.threads,
                                              60 * self.limits.max_minutes, memory_limit_mb(self.limits)))
        outcome: tuple[str, Any] | None = None
        try:
            process.start()
            job._process = process
            if self._closed:  # the server began stopping while this one started
                process.kill()
            while outcome is None:
                try:
                    kind, value = events.get(timeout=0.5)
                except queue.Empty:
                    if not process.is_alive():
                        break
                    continue
                if kind == "event":
                    job.events.append(value)
                else:
                    outcome = (kind, value)
            process.join(timeout=30)
        except Exception:  # noqa: BLE001 - a supervisor that dies would leave the slot taken forever
            log.exception("job %s: supervising failed", job.name)
        if outcome is None:
            state, job.error = "failed", "the training process ended without a result (out of memory?)"
        elif outcome[0] == "error":
            state, job.error = "failed", outcome[1]
        else:
            job.result = outcome[1]
            state = "stopped" if job._stop.is_set() else "done"
        job.finished = time.time()
        job._process = None
        if state == "done" and getattr(job.result, "finished", True):
            self._drop_record(job.name)
        with self._lock:
            self._running -= 1
        self._prune_runs(ended=job)
        job.state = state  # last: whoever waits for the job finds the old runs already pruned
        self._start_waiting()

    def _prune_runs(self, ended: Job) -> None:
        """Keep the newest `keep_runs` run folders; never one that a queued or running job uses: its own, or
        `<name>-b` (the Train tab's second recipe). `ended`, whose process has just ended, uses none any more.

        A visitor keeps at most `runs_per_visitor` runs: past it, their own oldest go first. Another visitor's
        run is never pruned while it is in use or less than `protect_hours` after it ended (its session may
        still be looking at it): the total may then stay above `keep_runs` for a while."""
        root = self.limits.runs_dir
        if not root.is_dir():
            return
        now = time.time()
        with self._lock:
            in_use = {j.name for j in self._jobs.values() if j.active and j is not ended}
            owners = {j.name: j for j in sorted(self._jobs.values(), key=lambda j: j.created)}  # the latest job wins
        runs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                       and d.name.removesuffix("-b") not in in_use),
                      key=lambda d: d.stat().st_mtime, reverse=True)

        def job_of_run(d: Path) -> Job | None:
            return owners.get(d.name.removesuffix("-b"))

        mine = [d for d in runs if (j := job_of_run(d)) is not None and j.owner == ended.owner]
        gone: set[Path] = set()  # a run and its second recipe (`-b`) count as one
        mine_runs = [d for d in mine if not d.name.endswith("-b")]
        for old in mine_runs[self.limits.runs_per_visitor:]:
            gone.update(d for d in mine if d.name.removesuffix("-b") == old.name)

        def protected(d: Path) -> bool:
            j = job_of_run(d)
            recent = now - (j.finished or now) < 3600 * self.limits.protect_hours if j is not None else False
            return j is not None and j.owner != ended.owner and recent

        kept = [d for d in runs if d not in gone]
        gone.update(d for d in kept[self.limits.keep_runs:] if not protected(d))
        for old in gone:
            shutil.rmtree(old, ignore_errors=True)
            self._drop_record(old.name)
