"""Pretraining: next-token cross-entropy with AdamW, warmup + cosine, checkpoints that resume exactly.

`python -m gpt pretrain` trains on the shipped corpora (or text files) and writes, under `--out`:
`train_state.safetensors` (everything needed to resume: weights, optimizer moments, step, RNG
states), `model/` (the weights as a checkpoint the app loads), `log.csv`, and `loss.html` /
`loss.json` (a plotly figure of train/validation loss against tokens seen). Launched through
`torchrun --nproc_per_node N -m gpt pretrain ...` the same command trains data-parallel.

Data order is a pure function of (seed, step): each epoch is a seeded permutation of windows, so
resuming needs only the step counter, and N processes split each global batch into N slices.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from gpt.baselines import bits_per_byte
from gpt.checkpoint import save_checkpoint
from gpt.config import GPTConfig
from gpt.corpus import join_documents, load_corpus, read_text
from gpt.data import open_token_file, tokenize_to_file
from gpt.generate import SamplingConfig, generate
from gpt.model import GPTModel
from gpt.tokenizer import Tokenizer, load_tokenizer, read_ranks

STATE_FILE = "train_state.safetensors"
LOG_FILE = "log.csv"
LOG_FIELDS = ("step", "tokens_seen", "train_loss", "val_loss", "val_perplexity", "lr", "tokens_per_s", "elapsed_s")
AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's losses (the model's shape comes from `model`)."""

    model: GPTConfig
    max_steps: int = 1000  # optimizer steps; the cosine schedule ends here
    batch_size: int = 8  # sequences per micro-batch, over all processes
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    eval_interval: int = 100
    eval_windows: int = 64  # fixed validation windows scored at each evaluation (export scores them all)
    checkpoint_interval: int = 100
    seed: int = 123
    autocast: str = "bfloat16"  # matmuls in bf16, master weights fp32; "float32" for exact arithmetic
    compile: bool = False
    sample_prompt: str = "It is a truth universally acknowledged"
    sample_tokens: int = 40

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "eval_interval", "checkpoint_interval", "eval_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(f"warmup_steps must be in [0, max_steps], got {self.warmup_steps}")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        if self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)}, got {self.autocast!r}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.model.context_length

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["model"] = GPTConfig.from_dict(data["model"])
        data["betas"] = tuple(data["betas"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup from 0 to `lr`, then cosine decay to `min_lr` at `max_steps` (the scheduler)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay the matrices (linear weights, embeddings); never biases or LayerNorm gains/shifts.

    Decaying a norm's gain or a bias pulls it toward 0, which changes what the layer computes
    instead of regularising it.
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # a tied head is the embedding: named once
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# -- data ----------------------------------------------------------------------------------------
class BatchSampler:
    """Global batch `k` of an epoch: windows of `context_length + 1` tokens at seeded random starts.

    Every epoch draws a fresh offset in [0, context_length) and a fresh permutation of the
    non-overlapping windows from that offset, both from `seed + epoch`, so any step's batch can be
    rebuilt without replaying the ones before it.
    """

    def __init__(self, tokens: np.ndarray, context_length: int, batch_size: int, seed: int):
        self.tokens, self.context_length, self.batch_size, self.seed = tokens, context_length, batch_size, seed
        self.windows_per_epoch = (len(tokens) - 1 - (context_length - 1)) // context_length
        self.batches_per_epoch = self.windows_per_epoch // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(f"training text too short: {len(tokens)} tokens make fewer than {batch_size} windows "
                             f"of {context_length + 1} tokens")
        self._epoch, self._starts = -1, np.empty(0, dtype=np.int64)

    def _epoch_starts(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed + epoch)
            offset = int(torch.randint(self.context_length, (1,), generator=gen))
            order = torch.randperm(self.windows_per_epoch, generator=gen).numpy()
            self._epoch, self._starts = epoch, offset + order * self.context_length
        return self._starts

    def batch(self, k: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's slice of global micro-batch `k`: inputs and targets, each (B / world, T)."""
        epoch, within = divmod(k, self.batches_per_epoch)
        starts = self._epoch_starts(epoch)[within * self.batch_size:(within + 1) * self.batch_size]
        starts = np.array_split(starts, world_size)[rank]
        rows = np.stack([self.tokens[s:s + self.context_length + 1] for s in starts]).astype(np.int64)
        chunk = torch.from_numpy(rows)
        return chunk[:, :-1], chunk[:, 1:]


def eval_windows(tokens: np.ndarray, context_length: int) -> list[np.ndarray]:
    """Non-overlapping windows covering the whole text: every token after the first is scored once."""
    return [tokens[s:s + context_length + 1] for s in range(0, len(tokens) - 1, context_length)]


@torch.no_grad()
def evaluate(model: GPTModel, tokens: np.ndarray, max_windows: int | None = None, batch_size: int = 16,
             autocast: str = "float32") -> tuple[float, int]:
    """Mean next-token loss (nats) and the number of tokens it averages over.

    With `max_windows`, an evenly spaced subset of the windows (a quick, fixed estimate).
    """
    windows = eval_windows(tokens, model.cfg.context_length)
    if max_windows is not None and max_windows < len(windows):
        windows = [windows[i] for i in np.linspace(0, len(windows) - 1, max_windows).astype(int)]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for i in range(0, len(windows), batch_size):
        group = windows[i:i + batch_size]
        for length in sorted({len(w) for w in group}):  # the last window is shorter
            rows = torch.from_numpy(np.stack([w for w in group if len(w) == length]).astype(np.int64)).to(device)
            with autocast_context(autocast, device):
                logits = model(rows[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten(), reduction="sum")
            total += loss.item()
            count += rows[:, 1:].numel()
    model.train(was_training)
    return total / max(count, 1), count


def autocast_context(autocast: str, device: torch.device | str):
    dtype = AUTOCAST_DTYPES[autocast]
    device_type = torch.device(device).type
    return nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


# -- distributed ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def mean_over_processes(value: float, ddp: Distributed) -> float:
    if ddp.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / ddp.world_size


# -- checkpoints ---------------------------------------------------------------------------------
def save_train_state(path: Path, model: GPTModel, optimizer: torch.optim.Optimizer, cfg: TrainConfig, step: int,
                     tokens_seen: int, elapsed_s: float, rng_states: list[torch.Tensor]) -> None:
    """One safetensors file with weights, AdamW moments and RNG states; JSON metadata for the rest.

    Written to a temporary name and moved over the old file with `os.replace`, which is atomic:
    a kill at any moment leaves either the previous checkpoint or the new one, never a torn file.
    """
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()
               if not (model.cfg.tie_weights and k == "out_head.weight")}
    opt_state = optimizer.state_dict()
    for idx, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().clone().contiguous()
    for rank, rng in enumerate(rng_states):
        tensors[f"rng.cpu.{rank}"] = rng
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"config": cfg.to_dict(), "step": step, "tokens_seen": tokens_seen, "elapsed_s": elapsed_s,
            "param_groups": opt_state["param_groups"], "scheduler": {"kind": "warmup+cosine", "step": step}}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"train_state": json.dumps(meta)})
    os.replace(tmp, path)


def load_train_state(path: Path, model: GPTModel, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore weights and optimizer in place; return the metadata and the RNG tensors."""
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} not found")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["train_state"])
    tensors = load_file(str(path))
    model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    if model.cfg.tie_weights:
        model_state["out_head.weight"] = model_state["tok_emb.weight"]
    model.load_state_dict(model_state)
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    return meta, rng


def any_process(flag: bool, ddp: Distributed) -> bool:
    """True on every process if it is true on one (clocks differ: all must stop at the same step)."""
    if ddp.world_size == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t)


def gather_rng_states(ddp: Distributed) -> list[torch.Tensor]:
    """Every process's CPU RNG state (dropout masks differ per process and must all resume)."""
    state = torch.get_rng_state()
    if ddp.world_size == 1:
        return [state]
    states = [torch.empty_like(state) for _ in range(ddp.world_size)]
    dist.all_gather(states, state)
    return states


# -- logging -------------------------------------------------------------------------------------
def read_log(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def write_log(path: Path, rows: list[dict[str, float]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})
    os.replace(tmp, path)


def loss_figure(rows: list[dict[str, float]], title: str = "Pretraining loss"):
    """Train and validation loss against tokens seen (what the app's training tab shows)."""
    import plotly.graph_objects as go

    train = [r for r in rows if "train_loss" in r]
    val = [r for r in rows if "val_loss" in r]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[r["tokens_seen"] for r in train], y=[r["train_loss"] for r in train],
                             mode="lines", name="train"))
    fig.add_trace(go.Scatter(x=[r["tokens_seen"] for r in val], y=[r["val_loss"] for r in val],
                             mode="lines+markers", name="validation (held out)"))
    fig.update_layout(title=title, xaxis_title="tokens seen", yaxis_title="cross-entropy loss (nats)",
                      template="plotly_white")
    return fig


def write_figure(out_dir: Path, rows: list[dict[str, float]]) -> None:
    fig = loss_figure(rows)
    fig.write_html(str(out_dir / "loss.html"), include_plotlyjs="cdn")
    (out_dir / "loss.json").write_text(fig.to_json())


# -- the loop ------------------------------------------------------------------------------------
def prepare_tokens(out_dir: Path, name: str, texts: list[str], tokenizer: Tokenizer, reuse: bool) -> np.ndarray:
    """Encode documents (each followed by `<|endoftext|>`) into a uint16 file; memory-map it.

    Only a resumed run reuses the file: a new run in an old folder may bring other text or another tokenizer.
    """
    path = out_dir / f"{name}.bin"
    if not (reuse and path.is_file()):
        tmp = path.with_name(path.name + ".tmp")
        tokenize_to_file(texts, tokenizer, tmp)
        os.replace(tmp, path)
    return np.asarray(open_token_file(path))


@dataclass
class TrainResult:
    model: GPTModel
    log: list[dict[str, float]]
    step: int
    tokens_seen: int
    elapsed_s: float


def train(cfg: TrainConfig, train_texts: list[str], val_texts: list[str], tokenizer: Tokenizer, out_dir: str | Path,
          resume: bool = False, stop_step: int | None = None, time_limit_s: float | None = None,
          device: str = "cpu", progress: bool = True) -> TrainResult:
    """Train (or resume) until `max_steps`, or until `stop_step` / `time_limit_s` (a checkpoint is saved).

    `stop_step` and `time_limit_s` interrupt a run without changing its schedule, so a later
    `resume=True` continues the very same run.
    """
    out_dir = Path(out_dir)
    torch_device = torch.device(device)
    ddp = init_distributed(torch_device)
    if tokenizer.n_vocab > cfg.model.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.n_vocab} tokens but the model only {cfg.model.vocab_size}")
    if cfg.batch_size % ddp.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {ddp.world_size} processes")
    if ddp.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if ddp.world_size > 1:
        dist.barrier()

    torch.manual_seed(cfg.seed)
    model = GPTModel(cfg.model).to(torch_device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                                  fused=torch_device.type in ("cpu", "cuda"))
    if ddp.is_main:
        train_tokens = prepare_tokens(out_dir, "train", train_texts, tokenizer, reuse=resume)
        val_tokens = prepare_tokens(out_dir, "val", val_texts, tokenizer, reuse=resume)
    if ddp.world_size > 1:
        dist.barrier()
        if not ddp.is_main:
            train_tokens = np.asarray(open_token_file(out_dir / "train.bin"))
            val_tokens = np.asarray(open_token_file(out_dir / "val.bin"))

    step, tokens_seen, elapsed_before = 0, 0, 0.0
    log: list[dict[str, float]] = []
    state_path = out_dir / STATE_FILE
    if resume:
        meta, rng = load_train_state(state_path, model, optimizer)
        saved = TrainConfig.from_dict(meta["config"])
        if saved != cfg:
            raise ValueError(f"{state_path} was written by a run with other settings; resume with the same flags")
        step, tokens_seen, elapsed_before = meta["step"], meta["tokens_seen"], meta["elapsed_s"]
        # Resuming on more processes than saved the run: the new ones start from rank 0's state.
        torch.set_rng_state(rng.get(f"rng.cpu.{ddp.rank}", rng["rng.cpu.0"]))
        if "rng.cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["rng.cuda"])
        log = [r for r in read_log(out_dir / LOG_FILE) if r["step"] <= step]
    else:
        torch.manual_seed(cfg.seed + ddp.rank)  # dropout masks: reproducible, different per process

    sampler = BatchSampler(train_tokens, cfg.model.context_length, cfg.batch_size, cfg.seed)
    runner: torch.nn.Module = model
    if ddp.world_size > 1:
        runner = torch.nn.parallel.DistributedDataParallel(model)
    if cfg.compile:
        runner = torch.compile(runner)
    runner.train()

    def checkpoint() -> None:
        rng_states = gather_rng_states(ddp)
        if ddp.is_main:
            save_train_state(state_path, model, optimizer, cfg, step, tokens_seen,
                             elapsed_before + time.perf_counter() - start, rng_states)
            write_log(out_dir / LOG_FILE, log)

    def evaluation() -> dict[str, float]:
        val_loss, _ = evaluate(model, val_tokens, cfg.eval_windows, autocast=cfg.autocast)
        row = {"val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 50.0))}
        if ddp.is_main and progress:
            sample = sample_text(model, tokenizer, cfg.sample_prompt, cfg.sample_tokens)
            tqdm.write(f"step {step}: val loss {val_loss:.3f} (ppl {row['val_perplexity']:.1f}) | {sample!r}")
        return row

    start = time.perf_counter()
    bar = tqdm(total=cfg.max_steps, initial=step, desc="pretrain", unit="step", disable=not (progress and ddp.is_main))
    window_start, window_tokens = time.perf_counter(), 0
    while step < cfg.max_steps:
        out_of_time = time_limit_s is not None and time.perf_counter() - start > time_limit_s
        if (stop_step is not None and step >= stop_step) or any_process(out_of_time, ddp):
            break
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):
            inputs, targets = sampler.batch(step * cfg.grad_accum + micro, ddp.rank, ddp.world_size)
            inputs, targets = inputs.to(torch_device), targets.to(torch_device)
            sync = ddp.world_size == 1 or micro == cfg.grad_accum - 1
            with (nullcontext() if sync else runner.no_sync()), autocast_context(cfg.autocast, torch_device):
                logits = runner(inputs)
                loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
                (loss / cfg.grad_accum).backward()
            loss_sum += loss.item()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += cfg.tokens_per_step
        window_tokens += cfg.tokens_per_step
        train_loss = mean_over_processes(loss_sum / cfg.grad_accum, ddp)
        tokens_per_s = window_tokens / max(time.perf_counter() - window_start, 1e-9)
        row: dict[str, float] = {"step": step, "tokens_seen": tokens_seen, "train_loss": train_loss, "lr": lr,
                                 "tokens_per_s": tokens_per_s, "elapsed_s": elapsed_before + time.perf_counter() - start}
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            row |= evaluation()
        log.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_s:.0f}")
        if step % 20 == 0:
            window_start, window_tokens = time.perf_counter(), 0
        if step % cfg.checkpoint_interval == 0 or step == cfg.max_steps:
            checkpoint()
            if ddp.is_main:
                write_figure(out_dir, log)
    bar.close()
    if step < cfg.max_steps and step > 0:  # interrupted by stop_step or the time limit
        checkpoint()
    return TrainResult(model, log, step, tokens_seen, elapsed_before + time.perf_counter() - start)


def sample_text(model: GPTModel, tokenizer: Tokenizer, prompt: str, max_new_tokens: int, seed: int = 0) -> str:
    """A short top-k sample from a fixed prompt (its own generator: the training RNG is untouched)."""
    was_training = model.training
    model.eval()
    ids = generate(model, tokenizer.encode(prompt),
                   SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_k=40, seed=seed),
                   eot_id=tokenizer.eot_id, vocab_size=tokenizer.n_vocab)
    model.train(was_training)
    return prompt + tokenizer.decode(ids)


# -- command line --------------------------------------------------------------------------------
def build_tokenizer(spec: str, train_texts: list[str], vocab_size: int, out_dir: Path, ddp: Distributed,
                    reuse: bool, progress: bool = True) -> Tokenizer:
    """`gpt2`, a `.tiktoken` path, or `bpe`: our from-scratch BPE trained on the training text only.

    A resumed run (`reuse`) keeps the BPE already in `out_dir`; a new run trains it again.
    """
    if spec != "bpe":
        return load_tokenizer(spec)
    path = out_dir / "tokenizer.tiktoken"
    if ddp.is_main and not (reuse and path.is_file()):
        from gpt.bpe import BytePairEncoder

        BytePairEncoder.train("\n\n".join(train_texts), vocab_size, progress=progress).save(path)
    if ddp.world_size > 1:
        dist.barrier()
    return Tokenizer("bpe", read_ranks(path))


def read_corpus(text_files: list[str], val_fraction: float) -> tuple[list[str], list[str], str]:
    """Training and held-out documents: the shipped corpora, or text files split at `val_fraction`."""
    if not text_files:
        split = load_corpus()
        return [d.text for d in split.train], [d.text for d in split.held_out], "austen+kjv (gpt/corpus.py split)"
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    train_texts, val_texts = [], []
    for name in text_files:
        text = read_text(Path(name))
        cut = int(len(text) * (1 - val_fraction))
        train_texts.append(text[:cut])
        val_texts.append(text[cut:])
    return train_texts, val_texts, ", ".join(Path(n).name for n in text_files)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(model=GPTConfig.preset("tiny"))
    parser.add_argument("--out", default="runs/base", help="run folder: checkpoints, logs, figure, model/")
    parser.add_argument("--text", nargs="*", default=[], help="text files (.txt or .txt.gz) instead of the shipped corpora")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="held-out tail of each --text file")
    parser.add_argument("--preset", default="shipped-small")
    parser.add_argument("--tokenizer", default="bpe", help="bpe (train our BPE to the preset's vocab), gpt2, or a .tiktoken file")
    for name in ("context_length", "emb_dim", "n_layers", "n_heads", "vocab_size"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help="override the preset")
    parser.add_argument("--drop-rate", type=float, default=None, help="override the preset")
    parser.add_argument("--max-steps", type=int, default=d.max_steps)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--grad-accum", type=int, default=d.grad_accum)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--min-lr", type=float, default=d.min_lr)
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip)
    parser.add_argument("--eval-interval", type=int, default=d.eval_interval)
    parser.add_argument("--eval-windows", type=int, default=d.eval_windows)
    parser.add_argument("--checkpoint-interval", type=int, default=d.checkpoint_interval)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--autocast", choices=sorted(AUTOCAST_DTYPES), default=d.autocast)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (slow start, faster steps)")
    parser.add_argument("--resume", action="store_true", help=f"continue from OUT/{STATE_FILE}")
    parser.add_argument("--time-limit-min", type=float, default=None, help="stop (with a checkpoint) after this long")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> None:
    out_dir = Path(args.out)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    ddp = init_distributed(device)
    if ddp.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    train_texts, val_texts, corpus_name = read_corpus(args.text, args.val_fraction)
    overrides = {k: getattr(args, k) for k in ("context_length", "emb_dim", "n_layers", "n_heads", "drop_rate", "vocab_size")
                 if getattr(args, k) is not None}
    model_cfg = GPTConfig.preset(args.preset, **overrides)
    tokenizer = build_tokenizer(args.tokenizer, train_texts, model_cfg.vocab_size, out_dir, ddp, args.resume,
                                not args.quiet)
    cfg = TrainConfig(
        model=model_cfg, max_steps=args.max_steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        min_lr=args.min_lr, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        eval_interval=args.eval_interval, eval_windows=args.eval_windows, checkpoint_interval=args.checkpoint_interval,
        seed=args.seed, autocast=args.autocast, compile=args.compile,
    )
    time_limit = None if args.time_limit_min is None else 60 * args.time_limit_min
    result = train(cfg, train_texts, val_texts, tokenizer, out_dir, resume=args.resume, time_limit_s=time_limit,
                   device=args.device, progress=not args.quiet)
    if ddp.is_main:
        export_model(result, cfg, tokenizer, val_texts, out_dir, corpus_name)
    if ddp.world_size > 1:
        dist.destroy_process_group()


def export_model(result: TrainResult, cfg: TrainConfig, tokenizer: Tokenizer, val_texts: list[str], out_dir: Path,
                 corpus_name: str) -> dict[str, Any]:
    """Score the whole held-out text, then save `OUT/model/` (bf16) with the figures in the config's meta."""
    directory = out_dir / "model"
    val_tokens = np.asarray(open_token_file(out_dir / "val.bin"))
    loss, n_scored = evaluate(result.model, val_tokens, autocast=cfg.autocast)
    n_bytes = len(join_documents(val_texts).encode("utf-8"))
    meta = {
        "corpus": corpus_name, "steps": result.step, "max_steps": cfg.max_steps, "tokens_seen": result.tokens_seen,
        "train_tokens": len(open_token_file(out_dir / "train.bin")),
        "train_time_s": round(result.elapsed_s, 1), "held_out_loss": round(loss, 4),
        "held_out_perplexity": round(math.exp(loss), 2), "held_out_tokens": n_scored, "held_out_bytes": n_bytes,
        "held_out_bits_per_byte": round(bits_per_byte(loss * n_scored, n_bytes), 4),
        "final_train_loss": round(result.log[-1]["train_loss"], 4) if result.log else None,
        "train_config": cfg.to_dict(), "torch": torch.__version__,
    }
    save_checkpoint(result.model, directory, tokenizer, meta, dtype=torch.bfloat16)
    (directory / "metrics.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"held-out loss {loss:.4f}, perplexity {math.exp(loss):.2f}, {meta['held_out_bits_per_byte']:.4f} bits/byte "
          f"over {n_bytes} bytes; model saved to {directory}")
    return meta
