"""The server's memory under thousands of anonymous sessions (issue 36): `python app.py` on the shipped models, then
N raw calls of `/tokenize`, each a new session (`/gradio_api/call` draws a new session hash for every call), some
with a large text; the server's RSS is printed every `--every` sessions.

    OMP_NUM_THREADS=1 GRADIO_ANALYTICS_ENABLED=False NO_PROXY=127.0.0.1,localhost \\
        python -m benchmarks.sessions --sessions 3000 [--capacity 400]

Gradio keeps each session's state (a copy of every component's config, ~0.7 MB for this app, more after a large
input) until `state_session_capacity` newer sessions push it out: `GPT_APP_SESSIONS` (app.py) is that capacity.
Traffic goes to 127.0.0.1 only; the loop is bounded by `--sessions` and `--max-minutes`. `--large-rounds N`
instead sends N rounds of 5 MB calls (`large_rounds`) and prints the RSS after each.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **env_extra}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True).start()
    deadline = time.monotonic() + 300
    while not any("playground: http" in line for line in lines):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("".join(lines)[-3000:])
        time.sleep(0.5)
    return server, f"http://127.0.0.1:{port}"


def call(http: httpx.Client, url: str, text: str, endpoint: str = "tokenize") -> bool:
    """One raw call (a new session) of `/tokenize` or `/attention` on `text`; whether it completed."""
    data = (["base", text, False, "ab ab ab", 257] if endpoint == "tokenize" else ["base", text, 0, "one head", 0])
    posted = http.post(f"{url}/gradio_api/call/{endpoint}", json={"data": data})
    if posted.status_code != 200:
        return False
    with http.stream("GET", f"{url}/gradio_api/call/{endpoint}/{posted.json()['event_id']}") as stream:
        return any(line.startswith("event: complete") for line in stream.iter_lines())


def large_rounds(server: subprocess.Popen, url: str, rounds: int) -> dict[str, Any]:
    """Rounds of ten `/tokenize` and four `/attention` calls of 5 MB each, two at a time: the server's RSS after each
    round (what the sweep of hostile inputs does to memory, in a few minutes)."""
    text = ("lorem ipsum dolor sit amet " * 200_000)[:5_000_000]
    figures: dict[str, Any] = {"rss_mb": [round(rss_mb(server.pid))], "answered": 0}
    with httpx.Client(timeout=300) as http, ThreadPoolExecutor(2) as pool:
        for _ in range(rounds):
            for endpoint, n in (("tokenize", 10), ("attention", 4)):
                figures["answered"] += sum(pool.map(call, [http] * n, [url] * n, [text] * n, [endpoint] * n))
            time.sleep(2)
            figures["rss_mb"].append(round(rss_mb(server.pid)))
            print(f"RSS after round {len(figures['rss_mb']) - 1}: {figures['rss_mb'][-1]} MB", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--capacity", type=int, default=None, help="GPT_APP_SESSIONS (default: the app's)")
    parser.add_argument("--large-every", type=int, default=50, help="every Nth session sends 100k characters")
    parser.add_argument("--max-minutes", type=float, default=25)
    parser.add_argument("--large-rounds", type=int, default=0,
                        help="instead: this many rounds of 5 MB calls (`large_rounds`), RSS after each")
    args = parser.parse_args()
    extra = {} if args.capacity is None else {"GPT_APP_SESSIONS": str(args.capacity)}
    server, url = start_app(extra)
    figures = {"capacity": args.capacity or "app default", "rss_mb": {}}
    try:
        if args.large_rounds:
            time.sleep(2)
            print(json.dumps(large_rounds(server, url, args.large_rounds)))
            return
        time.sleep(2)
        figures["rss_mb"][0] = round(rss_mb(server.pid))
        print(f"0 sessions: {figures['rss_mb'][0]} MB", flush=True)
        deadline = time.monotonic() + 60 * args.max_minutes
        done = ok = 0
        with httpx.Client(timeout=60) as http, ThreadPoolExecutor(4) as pool:
            while done < args.sessions and time.monotonic() < deadline:
                batch = [("x " * 50_000 if (done + i) % args.large_every == 0 else f"session {done + i}")
                         for i in range(min(args.every, args.sessions - done))]
                ok += sum(pool.map(lambda t: call(http, url, t), batch))
                done += len(batch)
                figures["rss_mb"][done] = round(rss_mb(server.pid))
                print(f"{done} sessions ({ok} answered): {figures['rss_mb'][done]} MB", flush=True)
        figures["answered"] = ok
        print(json.dumps(figures))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
