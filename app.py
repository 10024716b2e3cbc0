"""The GPT-from-scratch playground: `python app.py` serves it offline on the shipped models.

Honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Gradio reads them), GPT_MODELS_DIR to serve
models from another folder than `assets/models`, the server's limits (`ServeLimits`: GPT_APP_*),
and the Train tab's GPT_TRAIN_* limits and GPT_RUNS_DIR (`ui/jobs.py`, `TrainLimits`). The
README's "Limits of a public app" lists them all.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # must precede the gradio import

from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from starlette.datastructures import Headers  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402

from ui import (  # noqa: E402
    attention_tab,
    chat_tab,
    classroom,
    generate_tab,
    labels,
    model_card_view,
    picker,
    reasoning_tab,
    spam_tab,
    tokenizer_tab,
    tour_tab,
    train_tab,
)
from ui.common import SafeBlocks  # noqa: E402
from ui.jobs import JobRunner, env_number  # noqa: E402
from ui.registry import MODELS_DIR, ModelRegistry  # noqa: E402

THEME = gr.themes.Soft()  # a built-in theme: its fonts are bundled, nothing is fetched
CSS = "#model-summary {align-self: center}\n" + labels.CSS + spam_tab.CSS + classroom.CSS
COMPUTE = "compute"  # the one concurrency group of every event that runs a model or trains a tokenizer
FILES_PER_UPLOAD = 5  # an upload request holds at most this many files of the largest size allowed


@dataclass(frozen=True)
class ServeLimits:
    """What the server takes at once; the defaults suit a 2-vCPU, 16 GB Hugging Face Space.

    Events run side by side (a Generate click streams text and draws two charts), each on one
    thread: on a small CPU box, two events with two threads each oversubscribe the cores, and
    PyTorch's threads then wait on each other (the README's app section gives the figures). The
    concurrency is one limit for all tabs together, not one per button.
    """

    concurrency: int = 2  # GPT_APP_CONCURRENCY: compute events running at once, all tabs together
    queue_size: int = 32  # GPT_APP_QUEUE_SIZE: events waiting; more are told the queue is full
    max_request_mb: float = 10.0  # GPT_APP_MAX_REQUEST_MB: one request's body (pasted text); uploads aside
    torch_threads: int = 1  # GPT_APP_TORCH_THREADS: PyTorch threads of each event
    sessions: int = 400  # GPT_APP_SESSIONS: sessions whose state the server keeps (~0.7 MB each); the oldest go first
    cache_hours: float = 2.0  # GPT_APP_CACHE_HOURS: uploaded and generated files are deleted once this old

    @classmethod
    def from_env(cls) -> ServeLimits:
        return cls(
            concurrency=env_number("GPT_APP_CONCURRENCY", cls.concurrency),
            queue_size=env_number("GPT_APP_QUEUE_SIZE", cls.queue_size),
            max_request_mb=env_number("GPT_APP_MAX_REQUEST_MB", cls.max_request_mb, float),
            torch_threads=env_number("GPT_APP_TORCH_THREADS", cls.torch_threads),
            sessions=env_number("GPT_APP_SESSIONS", cls.sessions),
            cache_hours=env_number("GPT_APP_CACHE_HOURS", cls.cache_hours, float),
        )


class RequestSizeLimit:
    """ASGI middleware: a request body over the limit is refused (413) before it is read into memory.

    A declared Content-Length over the limit is refused at once; a body without one (chunked) is
    counted as it arrives and refused once past the limit. Uploads (`.../upload`) have their own,
    larger limit; Gradio's `max_file_size` bounds each file in them.
    """

    def __init__(self, app: Any, max_bytes: int, upload_bytes: int):
        self.app, self.max_bytes, self.upload_bytes = app, max_bytes, upload_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.upload_bytes if scope["path"].rstrip("/").endswith("/upload") else self.max_bytes
        message = f"The request is larger than this app takes ({limit / 2**20:g} MB)."
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await PlainTextResponse(message, status_code=413)(scope, receive, send)
        seen = 0

        async def receive_within_limit() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, message)  # FastAPI and Gradio's upload route answer it as is
            return msg

        await self.app(scope, receive_within_limit, send)


def share_compute(demo: gr.Blocks, limit: int) -> None:
    """Put every queued event in one concurrency group of `limit`: Gradio's limit is per event otherwise.

    Events given a group of their own (the Train tab's status poller) and cancel events keep theirs.
    """
    for fn in demo.fns.values():
        own_group = fn.concurrency_id != str(id(fn.fn))
        if fn.queue and not own_group and not fn.is_cancel_function:
            fn.concurrency_id, fn.concurrency_limit = COMPUTE, limit


def build_app(registry: ModelRegistry | None = None, runner: JobRunner | None = None) -> gr.Blocks:
    runner = runner or JobRunner()
    registry = registry or ModelRegistry(os.environ.get("GPT_MODELS_DIR", MODELS_DIR))
    if registry.runs_root is None:  # the picker offers what the Train tab trains
        registry.runs_root = runner.limits.runs_dir.resolve()
    with SafeBlocks(title="GPT from scratch", analytics_enabled=False) as demo:
        gr.Markdown("# GPT from scratch\nHow a GPT turns text into tokens, attends, predicts, classifies and chats: "
                    "every model here was written and trained from scratch (or loaded from OpenAI's GPT-2).")
        classroom.toggle()
        model = picker.build(registry, demo)
        model_card_view.build(registry, model)  # "How this model was made": follows the picked model
        with gr.Tabs() as tabs:
            with gr.Tab("Start here", id="start"):
                tour_tab.build(registry, model, tabs, demo)
            with gr.Tab("Tokenizer", id="tokenizer"):
                tokenizer_tab.build(registry, model, demo)
            with gr.Tab("Attention", id="attention"):
                attention_tab.build(registry, model, demo)
            with gr.Tab("Generate", id="generate"):
                generate_tab.build(registry, model, demo)
            with gr.Tab("Train", id="train") as train:
                train_tab.build(runner, registry, model, train)
            with gr.Tab("Spam", id="spam") as spam:
                spam_tab.build(registry, runner, spam)
            with gr.Tab("Chat", id="chat") as chat:
                chat_tab.build(registry, runner, chat)
            with gr.Tab("Reasoning", id="reasoning") as reasoning:
                reasoning_tab.build(registry, reasoning, runner)
    return demo


KEPT_VALUE_SIZE = 10_000  # the longest text (characters) or list (items) a session keeps a copy of


def keep_inputs_small() -> None:
    """Gradio copies every event's inputs and outputs into its session (`SessionState.config_values`, read only
    for deep links, which this app does not offer): a 5 MB text, and the tokens shown for it, stayed with its
    session until `GPT_APP_SESSIONS` newer sessions pushed it out, 400 of them up to gigabytes. A text or list
    longer than KEPT_VALUE_SIZE is kept empty."""
    from gradio.state_holder import SessionState

    keep = SessionState._update_value_in_config
    if getattr(keep, "keeps_inputs_small", False):
        return

    def update(self: SessionState, key: int, value: Any) -> None:
        large = isinstance(value, str | list | tuple) and len(value) > KEPT_VALUE_SIZE
        keep(self, key, type(value)() if large else value)

    update.keeps_inputs_small = True  # type: ignore[attr-defined]
    SessionState._update_value_in_config = update


M_ARENA_MAX = -8  # glibc's mallopt parameter
TRIM_EVERY_S = 5.0
_trimming = threading.Event()


def give_back_freed_memory() -> None:
    """Keep glibc from holding freed memory: each of Gradio's worker threads would get its own malloc arena (up to 8
    per core) and freed blocks stay in the process. Two arenas, and `malloc_trim` every few seconds, hand them back
    to the system; the server's size then follows what it holds. Once per process; nothing where libc is not
    glibc's."""
    if _trimming.is_set():
        return
    _trimming.set()
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        return

    def trim() -> None:
        while True:
            time.sleep(TRIM_EVERY_S)
            libc.malloc_trim(0)

    threading.Thread(target=trim, name="malloc-trim", daemon=True).start()


def serve(demo: gr.Blocks, limits: ServeLimits, max_upload_mb: float, **launch_kwargs: Any) -> gr.Blocks:
    """Queue and launch `demo` within `limits`: one concurrency group for all compute, the queue's size,
    the request size, and `max_upload_mb` for each uploaded file (the Train tab's limit: refused at the door)."""
    share_compute(demo, limits.concurrency)
    keep_inputs_small()
    give_back_freed_memory()
    upload = int(max_upload_mb * 2**20)
    middleware = Middleware(RequestSizeLimit, max_bytes=int(limits.max_request_mb * 2**20),
                            upload_bytes=FILES_PER_UPLOAD * upload + 2**20)  # a megabyte for the form's framing
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    age = max(60, int(3600 * limits.cache_hours))  # Gradio reads it when launching: checked every quarter of the age
    demo.delete_cache = (max(60, age // 4), age)
    launch_kwargs.setdefault("state_session_capacity", limits.sessions)  # Gradio's default, 10,000, is gigabytes
    demo.launch(theme=THEME, css=CSS, head=classroom.HEAD, max_file_size=upload,
                app_kwargs={"middleware": [middleware]}, prevent_thread_lock=True, **launch_kwargs)
    return demo


def main() -> None:
    limits = ServeLimits.from_env()
    torch.set_num_threads(limits.torch_threads)
    runner = JobRunner()
    demo = serve(build_app(runner=runner), limits, runner.limits.max_upload_mb)
    print(f"GPT from scratch playground: {demo.local_url}", flush=True)

    def stop(signum: int, _frame: Any) -> None:  # SIGTERM would end the server and leave its trainings running
        print(f"Stopping: {runner.shutdown()} training(s) stopped.", flush=True)
        demo.close()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        demo.block_thread()
    finally:
        runner.shutdown()


if __name__ == "__main__":
    main()
