"""What several test files share (no tests of its own; fixtures are in conftest.py).

- a tiny GPT-2 in transformers' layout and an offline Hub cache layout;
- a tiny model folder that mirrors `assets/models/` for the app tests: `base` and `instruct` are
  tiny random checkpoints on a BPE trained here, `spam` a classifier delta on top of `base` with
  test figures. Random weights are enough to check wiring, shapes and validation;
- a local HTTP server for the download tests, and a free port on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from gpt.bpe import BytePairEncoder
from gpt.checkpoint import WEIGHTS_FILE, Checkpoint, load_checkpoint, save_checkpoint
from gpt.config import GPTConfig
from gpt.files import ASSETS, sha256_of, write_text_atomic
from gpt.model import GPTModel
from gpt.tokenizer import Tokenizer

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

REPO = ASSETS.parent  # the repository root: where app.py is

# A short text that repeats: a tiny model learns it within a few steps.
STORY = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be "
    "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families, that he is considered the rightful property of some one or other of "
    "their daughters. In the beginning God created the heaven and the earth. "
) * 12


def read_corpus(name: str) -> str:
    return gzip.decompress((ASSETS / "corpora" / name).read_bytes()).decode("utf-8")


# -- a tiny GPT-2 in transformers' layout and an offline Hub cache ---------------------------------

TINY_NAME = "gpt2-tiny-test"
TINY_REPO = "test-org/tiny-gpt2"
# GPT-2's real vocabulary, so the prompts go through the real tokenizer; everything else is small.
TINY = GPTConfig(vocab_size=50257, context_length=64, emb_dim=32, n_layers=2, n_heads=4)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROMPTS = ["Every effort moves you", "It is a truth universally acknowledged, that",
           "In the beginning God created", "Héllo wörld 🙂 — 1234 + 5678 ="]


def random_hf_gpt2(cfg: GPTConfig, seed: int = 0, noise: float = 0.05) -> GPT2LMHeadModel:
    """transformers' GPT-2 with every tensor random (biases and LayerNorms too, so each mapping matters)."""
    from transformers import GPT2Config, GPT2LMHeadModel  # the reference: imported only by the tests that use it

    torch.manual_seed(seed)
    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.emb_dim,
                        n_layer=cfg.n_layers, n_head=cfg.n_heads, attn_implementation="eager")
    model = GPT2LMHeadModel(hf_cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=noise)
    return model


def put_in_hub_cache(cache_dir: Path, repo_id: str, file: Path) -> Path:
    """Lay `file` out as huggingface_hub's cache holds a download: blob, snapshot link, ref."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    data = file.read_bytes()
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    link = repo / "snapshots" / COMMIT / WEIGHTS_FILE
    link.parent.mkdir(parents=True)
    link.symlink_to(Path("../..") / "blobs" / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return link


# -- a tiny model folder for the app tests ---------------------------------------------------------

TRAINING_TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
                 "must be in want of a wife. In the beginning God created the heaven and the earth. ") * 20
SPAM_EXAMPLES = {"ham": ["See you at lunch tomorrow"], "spam": ["WIN a free prize now, text CLAIM to 80082"]}


def train_tokenizer(text: str, vocab_size: int, name: str) -> Tokenizer:
    """A BPE learnt from `text` here: the tests' tokenizers are small and made, never downloaded."""
    return BytePairEncoder.train(text, vocab_size).to_tokenizer(name)


def tiny_checkpoint(tokenizer: Tokenizer, **overrides: object) -> Checkpoint:
    """A `tiny` random model on `tokenizer` (its vocabulary), in eval mode; the same weights for the same arguments."""
    torch.manual_seed(0)
    cfg = GPTConfig.preset("tiny", vocab_size=tokenizer.n_vocab, **overrides)
    return Checkpoint(GPTModel(cfg).eval(), tokenizer, {})


def make_model_folder(root: Path) -> Path:
    """base, instruct (context 512: room for an Alpaca prompt on a 300-token BPE) and spam, all tiny and random."""
    from gpt.classify.classifier import METRICS_FILE, ClassifierMetrics, attach_classifier_head, save_classifier

    torch.manual_seed(0)
    tokenizer = train_tokenizer(TRAINING_TEXT, 300, "tiny-bpe")
    cfg = GPTConfig.preset("tiny", vocab_size=tokenizer.n_vocab, context_length=512)
    for name in ("base", "instruct"):
        save_checkpoint(GPTModel(cfg), root / name, tokenizer, meta={"purpose": "app tests"})
    base = root / "base"
    model = attach_classifier_head(load_checkpoint(base).model, 2)
    base_ref = {"checkpoint": str(base), "sha256": sha256_of(base / WEIGHTS_FILE)}
    save_classifier(model, root / "spam", base_ref, ["ham", "spam"], trainable_blocks=1, dtype="float32")
    metrics = ClassifierMetrics.from_predictions([0, 0, 1, 1], [0, 1, 1, 1], ["ham", "spam"], "app tests",
                                                 SPAM_EXAMPLES)
    write_text_atomic(root / "spam" / METRICS_FILE, metrics.to_json())
    return root


# -- the network, on 127.0.0.1 only ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """A local HTTP server in a thread: GET serves `body`, POST answers like Ollama's /api/chat.

    `requests` counts what reached it (a cached download must not); use it as a context manager.
    """

    def __init__(self, body: bytes = b"", reply: str = ""):
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                outer.requests += 1
                json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(json.dumps({"message": {"role": "assistant", "content": reply}}).encode())

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


APP_START_TIMEOUT_S = 120  # the machine may be busy; a quiet one starts in a few seconds


@contextlib.contextmanager
def app_process(models: Path, runs: Path, log: Path, port: int | None = None, **env: str) -> Iterator[str]:
    """`python app.py` on 127.0.0.1 and `port` (a free one by default), serving `models` and training into `runs`:
    its URL.

    `env` adds environment variables (GPT_TRAIN_THREADS=...). The server's output goes to `log`; a
    traceback in it is printed when the app stops, since a failure reaches the page only as a message.
    """
    import pytest

    port = port or free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GPT_MODELS_DIR": str(models), "GPT_RUNS_DIR": str(runs), "GRADIO_ANALYTICS_ENABLED": "False",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1", **env}
    with open(log, "w") as out:
        app = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + APP_START_TIMEOUT_S
        while f"GPT from scratch playground: {url}" not in log.read_text():  # app.py prints its URL
            if app.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        app.terminate()
        app.wait(timeout=30)
        if "Traceback" in log.read_text():
            print(log.read_text()[-5000:])


# -- today's open models (issue 32): tiny random instruct models in a Hugging Face cache -------------------

# Two repositories as if downloaded: Qwen3's shape (QK-norm, heads wider than hidden / heads, grouped KV heads,
# tied) and SmolLM2-Instruct's, a Llama (3 query heads sharing one KV head, tied); both on a byte-level BPE with
# ChatML's special tokens and a ChatML template, as their real tokenizers are.
HUB_QWEN = "test-org/tiny-qwen3-instruct"
HUB_SMOL = "test-org/tiny-smollm2-instruct"
HUB_CONTEXT = 512  # room for a chat prompt and a reply on a 500-token BPE


def hub_chat_models(cache_dir: Path) -> dict[str, Path]:
    """Write the two tiny instruct models into the Hub cache at `cache_dir`: {repo id: snapshot folder}.

    Built by transformers' own classes on a tokenizer.json trained here, with chat templates shaped as theirs
    (`tests/hub_models.py`): nothing is downloaded.
    """
    from tests.hub_models import (  # transformers is slow to import: only the tests that need these pay for it
        CHATML_TEMPLATE,
        QWEN_LIKE_TEMPLATE,
        byte_level_json,
        put_folder_in_hub_cache,
        random_hf,
        save_hf,
    )

    tokenizer_json = byte_level_json()
    im_end = json.loads(tokenizer_json)["added_tokens"][2]
    assert im_end["content"] == "<|im_end|>"
    snapshots = {}
    for repo_id, family, template in ((HUB_QWEN, "qwen3", QWEN_LIKE_TEMPLATE), (HUB_SMOL, "smollm2", CHATML_TEMPLATE)):
        hf = random_hf(family, vocab_size=512, max_position_embeddings=HUB_CONTEXT, eos_token_id=im_end["id"],
                       bos_token_id=None)
        folder = save_hf(hf, cache_dir.parent / "hub-folders" / family, tokenizer_json)
        (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>", "bos_token": None,
                                                                  "chat_template": template}))
        (folder / "README.md").write_text(f"---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n\n# {repo_id}\n"
                                          "A tiny random model for the app's tests.\n")
        snapshots[repo_id] = put_folder_in_hub_cache(cache_dir, repo_id, folder)
    return snapshots
