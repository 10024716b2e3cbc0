"""Load: 20 `gradio_client` users on every endpoint of `python app.py` (the shipped models) while a training
runs in the Train tab, and the one concurrency limit that all compute events share.

Bounded: a fixed number of calls, a time cap, 127.0.0.1 only. It asserts no errors, no data of one
session in another's replies, and a bounded growth of the server's memory; it prints the latency
(p50 / p95) per endpoint and asserts none (the machine is shared).
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from tests.helpers import REPO, free_port, make_model_folder
from tests.ui.app_client import TRAIN
from tests.ui.endpoints import CALL_TIMEOUT_S, base_values, client_call, problem
from ui.jobs import JobRunner, TrainLimits
from ui.registry import ModelRegistry
from ui.train_tab import DEFAULTS

USERS = 20
CALLS_PER_USER = 7  # the three that check sessions, and four of the rest in turn
LOAD_CAP_S = 420  # the whole load, a bound on a hang, not a speed target
START_CAP_S = 180
RSS_GROWTH_MB = 300  # what 20 sessions and their replies may add to a warm server
GEN = (0.8, 40, 0.95)
# Job control is exercised by the training user; the load is the compute every visitor asks for.
# Job controls, and the finetune panels' checks, which time real training steps one visitor at a time (a lock):
# a job's cost, not a view's
NOT_IN_THE_MIX = re.compile(r"_(start|stop|resume|upload|finetune_check)$")


def marker(user: int) -> str:
    return f"zebra{user:02d}"


# The Train tab's settings with 5,000 steps and five minutes, the most the server below allows (the page fits
# the steps to them): the training runs through the whole load.
# The settings the tab added since TRAIN was written take the page's opening values (a text box's example value
# would be refused as a number).
PAGE_SINCE = [("" if value is None else value) for value in astuple(DEFAULTS)[len(TRAIN) - 1:]]
LOAD_TRAIN = [*TRAIN[:13], 5000, 5.0, *TRAIN[15:], *PAGE_SINCE]
# The realistic mix: (endpoint, arguments for user i). Endpoints not named here run with their
# example values from view_api (they must answer with a value or a short message).
MIX: dict[str, Callable[[int], list[Any]]] = {
    "/load_model": lambda i: ["base"],
    "/tokenize": lambda i: ["base", f"Hello {marker(i)}, it is a truth.", False, "some training text, more text", 300],
    "/attention": lambda i: ["base", f"The cat {marker(i)} sat on the mat", 2, "mean over heads", 1],
    "/generate": lambda i: ["base", f"It is a truth {marker(i)}", *GEN, 12, i],
    "/next_token_probs": lambda i: ["base", f"It is a {marker(i)}", *GEN],
    "/beam_search": lambda i: ["base", f"It is a {marker(i)}", 2, 6],
    "/classify": lambda i: [f"WIN a free prize now {marker(i)}"],
    "/spam_test_figures": lambda i: [],
    "/train_preview": lambda i: [8, *LOAD_TRAIN[1:]],  # the stride, then the Train tab's settings
    "/train_check": lambda i: LOAD_TRAIN[1:],
    "/train_runs": lambda i: [],
}
SESSION_CHECKS = ("/one_token", "/chat", "/train_status")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.fixture(scope="module")
def app_process(shipped_models, tmp_path_factory: pytest.TempPathFactory):
    """`python app.py` on the shipped models, configured by its environment as a Space would be."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the server's memory from /proc")
    port = free_port()
    env = {**os.environ, "GPT_MODELS_DIR": str(shipped_models), "GPT_RUNS_DIR": str(tmp_path_factory.mktemp("runs")),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GPT_TRAIN_THREADS": "1",
           "GPT_TRAIN_MAX_MINUTES": "5", "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + START_CAP_S
    while not any("GPT from scratch playground: http" in line for line in lines):
        assert server.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.5)
    try:
        yield server, f"http://127.0.0.1:{port}", lines
    finally:
        server.send_signal(signal.SIGINT)  # Gradio closes, multiprocessing ends the training children
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def timed(client: Client, endpoint: str, args: list[Any], latencies: dict[str, list[float]]) -> tuple:
    began = time.monotonic()
    outcome = client_call(client, endpoint, args)
    latencies[endpoint].append(time.monotonic() - began)
    return outcome


def user_plan(user: int, others: list[str]) -> list[str]:
    """The user's endpoints: the session checks, then the rest of the mix in turn (every endpoint gets several)."""
    rest = list(MIX) + others
    return [*SESSION_CHECKS, *(rest[(user * (CALLS_PER_USER - 3) + j) % len(rest)] for j in range(CALLS_PER_USER - 3))]


def arguments(endpoint: str, user: int, examples: dict[str, list[Any]]) -> list[Any]:
    """The user's arguments; parameters a tab added since (and endpoints not in the mix) get their example values."""
    mine = marker(user)
    own = {"/one_token": lambda: ["base", f"Now {mine} said", *GEN, user],
           "/chat": lambda: [f"Repeat the word {mine}.", 0.0, 8, user],
           "/train_status": lambda: [None]}.get(endpoint) or (lambda: MIX[endpoint](user) if endpoint in MIX else [])
    args = own()
    return args + examples[endpoint][len(args):]


def run_user(url: str, user: int, examples: dict[str, list[Any]], others: list[str], run_name: str,
             latencies: dict) -> list[str]:
    """One visitor's calls; returns what went wrong (errors, or another session's data in a reply)."""
    # twenty clients ask for the app's config at once while it trains: a bound on a hung request, not a speed target
    client = Client(url, verbose=False, httpx_kwargs={"timeout": CALL_TIMEOUT_S})
    wrong = []
    mine, theirs = marker(user), [marker(u) for u in range(USERS) if u != user]
    for endpoint in user_plan(user, others):
        how, value = timed(client, endpoint, arguments(endpoint, user, examples), latencies)
        text = str(value)
        if endpoint in MIX or endpoint in SESSION_CHECKS:
            if how != "value":
                wrong.append(f"user {user} {endpoint}: {how}: {text[:300]}")
                continue
        elif problem((how, value), []) is not None:
            wrong.append(f"user {user} {endpoint}: {problem((how, value), [])}")
        if any(other in text for other in theirs):
            wrong.append(f"user {user} {endpoint}: another session's marker in {text[:300]}")
        if endpoint == "/one_token" and not value[0].startswith(f"Now {mine} said"):
            wrong.append(f"user {user} /one_token: the text is not the user's own: {value[0][:100]!r}")
        if endpoint == "/chat" and mine not in value[-1]:
            wrong.append(f"user {user} /chat: its own message is not in the prompt: {value[-1][:200]!r}")
        if endpoint == "/train_status" and run_name in text:
            wrong.append(f"user {user} /train_status: sees another session's training {run_name}")
    return wrong


@pytest.mark.slow
def test_twenty_users_on_every_endpoint_while_a_training_runs(app_process):
    server, url, log = app_process
    trainer = Client(url, verbose=False)
    api = trainer.view_api(return_format="dict", print_info=False)["named_endpoints"]
    examples = {name: base_values(ep) for name, ep in api.items()}
    others = [name for name in api
              if name not in MIX and name not in SESSION_CHECKS and not NOT_IN_THE_MIX.search(name)]
    warm: dict[str, list[float]] = defaultdict(list)
    for endpoint in [*MIX, *SESSION_CHECKS, *others]:  # every model and cache loaded once: what stays is not growth
        timed(trainer, endpoint, arguments(endpoint, 99, examples), warm)
    before = rss_mb(server.pid)

    line, _ = trainer.predict(*LOAD_TRAIN, api_name="/train_start")
    run_name = re.search(r"\*\*run:([\w-]+)\*\*", line).group(1)
    deadline = time.monotonic() + START_CAP_S
    while "Step" not in trainer.predict(None, api_name="/train_status")[0] and time.monotonic() < deadline:
        time.sleep(1)  # the training process is spawned and imports torch: the load starts once it trains

    latencies: dict[str, list[float]] = defaultdict(list)
    began = time.monotonic()
    with ThreadPoolExecutor(USERS) as pool:
        futures = [pool.submit(run_user, url, u, examples, others, run_name, latencies) for u in range(USERS)]
        done, hung = wait(futures, timeout=LOAD_CAP_S)
    elapsed = time.monotonic() - began
    status = trainer.predict(None, api_name="/train_status")[0]
    trainer.predict(None, api_name="/train_stop")
    after = rss_mb(server.pid)

    wrong = [w for f in done for w in f.result()]
    calls = sum(map(len, latencies.values()))
    print(f"\n{USERS} users, {calls} calls in {elapsed:.0f} s, training {run_name}: {status[:80]}")
    print(f"server RSS {before:.0f} MB after warm-up, {after:.0f} MB after the load (+{after - before:.0f} MB)")
    print(f"  {'endpoint':28} {'calls':>5} {'p50 s':>7} {'p95 s':>7}")
    for endpoint, times in sorted(latencies.items()):
        p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
        print(f"  {endpoint:28} {len(times):5d} {statistics.median(times):7.2f} {p95:7.2f}")
    assert not hung, f"{len(hung)} users did not finish within {LOAD_CAP_S} s"
    last_traceback = "".join(log).split("Traceback")[-1] if "Traceback" in "".join(log) else ""
    assert not wrong, "\n".join(wrong[:30]) + f"\n\nthe server's last traceback:{last_traceback[:4000]}"
    assert calls == USERS * CALLS_PER_USER
    assert "Step" in status or "Preparing" in status, status  # the training ran alongside
    assert after - before < RSS_GROWTH_MB
    assert server.poll() is None and "Traceback" not in "".join(log)


# -- one concurrency limit for all compute ----------------------------------------------------------

def test_every_compute_event_shares_one_concurrency_group(tmp_path):
    """The app's events (ChatInterface's too) are in one group of 2; the Train tab's poller keeps its own."""
    from app import COMPUTE, build_app, share_compute

    demo = build_app(ModelRegistry(make_model_folder(tmp_path / "models")),
                     JobRunner(TrainLimits(runs_dir=tmp_path / "runs")))
    share_compute(demo, 2)
    queued = [fn for fn in demo.fns.values() if fn.queue]
    groups = {fn.api_name: fn.concurrency_id for fn in queued if fn.api_name}
    assert groups["train_status"] == "train_status"
    assert {groups[name] for name in ("generate", "tokenize", "chat", "classify", "train_check")} == {COMPUTE}
    assert sum(fn.concurrency_id == COMPUTE for fn in queued) >= 0.8 * len(queued)
    assert all(fn.concurrency_limit == 2 for fn in queued if fn.concurrency_id == COMPUTE)


def test_gradio_runs_at_most_two_compute_events_at_once():
    """Three listeners with the default limit of 2 each ran 6 at once; in one group, never more than 2."""
    import gradio as gr

    from app import ServeLimits, serve
    from ui.common import SafeBlocks

    running, most, lock = 0, 0, threading.Lock()

    def slow(seconds: float) -> float:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(seconds)
        with lock:
            running -= 1
        return seconds

    with SafeBlocks() as demo:
        box = gr.Number(0.5, label="Seconds")
        for name in ("a", "b", "c"):  # three listeners, three functions: three default groups
            gr.Button(name).click(lambda s: slow(s), box, box, api_name=name)
    port = free_port()
    serve(demo, ServeLimits(concurrency=2), 1, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        jobs = [client.submit(0.5, api_name=f"/{name}") for name in "abcabc"]
        assert [job.result(timeout=60) for job in jobs] == [0.5] * 6
    finally:
        demo.close()
    assert most == 2
