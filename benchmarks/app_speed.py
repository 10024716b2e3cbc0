"""The app's speed figures: offline start to a served page, and each tab's latency on the shipped models.

    python -m benchmarks.app_speed [--models DIR] [--repeats N]

Starts `python app.py` exactly as a user would (offline, analytics off), times the first HTTP 200,
then drives the named endpoints with gradio_client (the full server round trip) and calls the same
event functions in-process (the work alone). Prints medians as a markdown table, with the targets.
Then the streaming of the Generate tab on the picked model: tokens/s of the tab's event function,
of the library's `stream`, and of the model's cached forward steps alone, so that the share of the
time spent outside the model (sampling, decoding text, Python) is visible.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")

TARGETS_MS = {"tokenizer, 1,000 characters": 100, "attention heatmaps, 64 tokens": 1000,
              "first streamed token": 500, "spam prediction": 200}


def start_app(models: Path, port: int) -> tuple[subprocess.Popen, float]:
    """`python app.py`, and the seconds until its page answers 200."""
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GPT_MODELS_DIR": str(models)}
    start = time.perf_counter()
    app = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    while True:
        if app.poll() is not None:
            raise SystemExit("the app exited during start-up; run `python app.py` to see why")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                if response.status == 200:
                    return app, time.perf_counter() - start
        except OSError:
            time.sleep(0.05)


def unavailable(measure: Callable[[], float]) -> float | None:
    """A figure, or None when its model is not there (the app shows a message instead)."""
    from gradio_client.exceptions import AppError

    try:
        return measure()
    except (AppError, ValueError, FileNotFoundError):
        return None


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls pay for lazy imports and caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def texts(tokenizer) -> tuple[str, str]:
    """1,000 characters of Austen, and a text of exactly 64 tokens for the model's tokenizer."""
    from ui.tokenizer_tab import default_training_text

    prose = default_training_text(20_000)
    start = prose.index("It is a truth")
    thousand = prose[start:start + 1000]
    ids = tokenizer.encode(prose[start:])[:64]
    return thousand, tokenizer.decode(ids)


def first_token_ms(submit: Callable[[], object], repeats: int) -> float:
    """Time until the streamed continuation is first non-empty (the first token on screen)."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for output in submit():
            if output[0]:
                times.append(time.perf_counter() - start)
                break
    return 1000 * statistics.median(times[1:])


def streaming_figures(registry, model_name: str, new_tokens: int = 128, repeats: int = 3) -> dict[str, float]:
    """Tokens/s of the Generate tab's stream, of `gpt.generate.stream`, and of the forward steps alone."""
    import torch

    from gpt.generate import SamplingConfig, stream
    from ui import generate_tab

    ckpt = registry.load(model_name)
    model, prompt = ckpt.model, ckpt.tokenizer.encode("It is a truth universally acknowledged, that")
    sampling = SamplingConfig(max_new_tokens=new_tokens, temperature=0.8, top_k=40, top_p=0.95, seed=123,
                              stop_at_eot=False)

    def tab() -> int:
        outputs = list(generate_tab.generate(registry, model_name, "It is a truth universally acknowledged, that",
                                             0.8, 40, 0.95, new_tokens, 123))
        return len(ckpt.tokenizer.encode(outputs[-1][0]))

    def library() -> int:
        return sum(1 for _ in stream(model, prompt, sampling, vocab_size=ckpt.tokenizer.n_vocab))

    def forward_only() -> int:
        with torch.inference_mode():
            cache = model.new_cache(1)
            logits = model(torch.tensor([prompt]), cache, last_only=True)
            for _ in range(new_tokens - 1):
                logits = model(logits[:, -1].argmax(-1, keepdim=True), cache, last_only=True)
        return new_tokens

    def rate(fn: Callable[[], int]) -> float:
        fn()
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            n = fn()
            runs.append(n / (time.perf_counter() - start))
        return statistics.median(runs)

    return {"Generate tab (event function)": rate(tab), "gpt.generate.stream": rate(library),
            "model forward steps alone": rate(forward_only)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=REPO / "assets" / "models")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--port", type=int, default=7899)
    args = parser.parse_args()

    import torch

    from ui import attention_tab, generate_tab, spam_tab, tokenizer_tab
    from ui.registry import ModelRegistry

    torch.set_num_threads(int(os.environ.get("GPT_APP_TORCH_THREADS", "1")))  # as app.py does

    registry = ModelRegistry(args.models)
    model = registry.default()
    thousand, sixty_four = texts(registry.tokenizer(model))
    training = tokenizer_tab.default_training_text()
    gen = (0.8, 40, 0.95, 32, 123)  # temperature, top-k, top-p, max new tokens, seed
    spam_text = "WINNER! You have won a free prize, call now to claim"

    app, startup_s = start_app(args.models, args.port)
    try:
        from gradio_client import Client

        client = Client(f"http://127.0.0.1:{args.port}", verbose=False)
        served = {
            "tokenizer, 1,000 characters": unavailable(lambda: median_ms(lambda: client.predict(
                model, thousand, False, training, 512, api_name="/tokenize"), args.repeats)),
            "attention heatmaps, 64 tokens": unavailable(lambda: median_ms(lambda: client.predict(
                model, sixty_four, 1, "all heads", 1, api_name="/attention"), args.repeats)),
            "first streamed token": unavailable(lambda: first_token_ms(lambda: client.submit(
                model, "It is a truth universally acknowledged, that", *gen, api_name="/generate"), args.repeats)),
            "spam prediction": unavailable(lambda: median_ms(lambda: client.predict(
                spam_text, api_name="/classify"), args.repeats)),
        }
        # What any call costs: the picker's summary of a model already in memory is next to no work.
        round_trip = median_ms(lambda: client.predict(model, api_name="/load_model"), args.repeats)
    finally:
        app.terminate()
        app.wait(timeout=30)

    local = {
        "tokenizer, 1,000 characters": unavailable(lambda: median_ms(lambda: tokenizer_tab.tokenize(
            registry, model, thousand, False, training, 512), args.repeats)),
        "attention heatmaps, 64 tokens": unavailable(lambda: median_ms(lambda: attention_tab.attention(
            registry, model, sixty_four, 1, "all heads", 1), args.repeats)),
        "first streamed token": unavailable(lambda: first_token_ms(lambda: generate_tab.generate(
            registry, model, "It is a truth universally acknowledged, that", *gen), args.repeats)),
        "spam prediction": unavailable(lambda: median_ms(lambda: spam_tab.classify(registry, spam_text),
                                                         args.repeats)),
    }
    print(f"models: {args.models} (picker: {model}); medians of {args.repeats} runs; torch threads: "
          f"{torch.get_num_threads()}\n")
    print("| figure | target | through the server (gradio_client) | event function alone |")
    print("|---|---|---|---|")
    print(f"| offline start to a served page | < 10 s | {startup_s:.1f} s | |")
    print(f"| server round trip of a no-op (`/load_model`, cached) | | {round_trip:.0f} ms | |")
    def cell(ms: float | None) -> str:
        return "model missing" if ms is None else f"{ms:.0f} ms"

    for name, target in TARGETS_MS.items():
        print(f"| {name} | < {target} ms | {cell(served[name])} | {cell(local[name])} |")

    rates = unavailable(lambda: streaming_figures(registry, model))
    if rates is not None:
        forward = rates["model forward steps alone"]
        print(f"\nstreaming 128 tokens on {model} (tokens/s; time outside the model's forward steps):")
        print("| path | tokens/s | outside the forward steps |\n|---|---|---|")
        for name, value in rates.items():
            print(f"| {name} | {value:.0f} | {100 * (1 - value / forward):.0f}% |")


if __name__ == "__main__":
    main()
