"""Pretraining: next-token cross-entropy with AdamW (or Muon), warmup + cosine, checkpoints that resume exactly.

`pretrain` trains on documents and writes, under its run folder, `train_state.safetensors`
(everything needed to resume), `log.csv` and `loss.html` / `loss.json`; `export_model` then scores
the whole held-out text and saves `model/`, the checkpoint the app loads. It reports through a
`TrainingMonitor` and stops cleanly (with a checkpoint) when asked. Launched through
`torchrun --nproc_per_node N -m gpt pretrain ...` the same code trains data-parallel.

The loop is a few small functions around one `Pretraining` (the run's model, optimizer, data and
counters): `set_up` (with `resume_state`), `stop_reason`, `train_step`, `evaluate` and `checkpoint`.

Data order is a pure function of (seed, step): each epoch is a seeded permutation of windows, so
resuming needs only the step counter, and N processes split each global batch into N slices.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpt.bpe import BytePairEncoder
from gpt.checkpoint import save_checkpoint
from gpt.config import GPTConfig, check_options, config_from_dict, option
from gpt.data.corpus import join_documents
from gpt.data.windows import open_token_file, tokenize_to_file
from gpt.files import remove_stale_temporaries, write_text_atomic
from gpt.generate import SamplingConfig, generate
from gpt.kernels import accelerate
from gpt.model import GPTModel
from gpt.precision import AUTOCAST_CHOICES, autocast, resolve_autocast
from gpt.pretrain.state import (
    LOG_FILE,
    STATE_FILE,
    load_train_state,
    read_log,
    save_train_state,
    write_figure,
    write_log,
)
from gpt.tokenizer import Tokenizer, load_tokenizer, read_ranks
from gpt.training.distributed import Distributed, any_process, barrier, gather_rng_states, mean_over_processes
from gpt.training.events import TrainEvent, TrainingMonitor
from gpt.training.limits import MAX_BATCH, MAX_LR, MAX_SEED, MAX_STEPS, MIN_LR
from gpt.training.loss import bits_per_byte, heldout_loss, lm_loss
from gpt.training.optim import OPTIMIZERS, make_optimizer, warmup_cosine_lr

# Steps fitted to a time budget take this share of it: evaluations, samples, checkpoints and a wavering machine the rest
SCHEDULE_SHARE = 0.9


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines a run's losses (the model's shape comes from `model`)."""

    model: GPTConfig
    max_steps: int = option(1000, "optimizer steps; the cosine schedule ends here", low=1, high=MAX_STEPS)
    batch_size: int = option(8, "sequences per micro-batch, over all processes", low=1, high=MAX_BATCH)
    grad_accum: int = option(1, "micro-batches per optimizer step", low=1, high=64)
    lr: float = option(1e-3, "peak learning rate, reached after the warmup", low=MIN_LR, high=MAX_LR)
    min_lr: float = option(1e-4, "learning rate at the end of the cosine decay", low=MIN_LR / 10, high=MAX_LR)
    warmup_steps: int = option(100, "steps of linear warmup from 0", low=0, high=MAX_STEPS)
    weight_decay: float = option(0.1, "AdamW weight decay on matrices and embeddings", low=0.0, high=1.0)
    betas: tuple[float, float] = option((0.9, 0.95), "AdamW's moment decays")
    optimizer: str = option("adamw", "adamw: AdamW for every weight; muon: Muon for the blocks' matrices, AdamW for "
                            "embeddings, norms and biases (gpt.training.optim.MuonWithAdamW)", choices=OPTIMIZERS)
    grad_clip: float = option(1.0, "max global gradient norm; 0 disables clipping", low=0.0, high=10.0)
    eval_interval: int = option(100, "steps between held-out evaluations (and samples)", low=1, high=MAX_STEPS)
    eval_windows: int = option(64, "fixed held-out windows scored at each evaluation (the export scores all)",
                               low=1, high=10_000)
    checkpoint_interval: int = option(100, "steps between checkpoints", low=1, high=MAX_STEPS)
    seed: int = option(123, "seeds the initialisation, the data order and dropout", low=0, high=MAX_SEED)
    autocast: str = option("auto", "bfloat16: matmuls in bf16 over fp32 master weights; float32: exact; auto: "
                           "bfloat16 where this machine multiplies it faster (gpt.precision.fast_bfloat16)",
                           choices=AUTOCAST_CHOICES)
    compile: bool = option(False, "torch.compile the model (slow start, maybe faster steps)")
    sample_prompt: str = option("It is a truth universally acknowledged", "prompt of the samples at evaluations")
    sample_tokens: int = option(40, "tokens of each sample", low=1, high=1024)

    def __post_init__(self) -> None:
        check_options(self)
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps must be in [0, max_steps], got {self.warmup_steps}")
        if self.min_lr > self.lr:
            raise ValueError(f"need 0 < min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.model.context_length

    def learning_rate(self, step: int) -> float:
        return warmup_cosine_lr(step, self.lr, self.min_lr, self.warmup_steps, self.max_steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        """Settings read from a file, typed as the fields say; keys a later version added are skipped."""
        return config_from_dict(cls, data, ignore_unknown=True)


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


def prepare_tokens(out_dir: Path, name: str, texts: list[str], tokenizer: Tokenizer, reuse: bool) -> np.ndarray:
    """Encode documents (each followed by `<|endoftext|>`) into a uint16 file; memory-map it.

    Only a resumed run reuses the file: a new run in an old folder may bring other text or another tokenizer.
    """
    path = out_dir / f"{name}.bin"
    if not (reuse and path.is_file()):
        tokenize_to_file(texts, tokenizer, path)
    return np.asarray(open_token_file(path))


def prepare_tokenizer(spec: str, train_texts: list[str], vocab_size: int, out_dir: Path, ddp: Distributed,
                      reuse: bool, progress: bool = True) -> Tokenizer:
    """`gpt2`, a `.tiktoken` path, or `bpe`: our from-scratch BPE trained on the training text only.

    A resumed run (`reuse`) keeps the BPE already in `out_dir`; a new run trains it again.
    """
    if spec != "bpe":
        return load_tokenizer(spec)
    path = out_dir / "tokenizer.tiktoken"
    if ddp.is_main and not (reuse and path.is_file()):
        BytePairEncoder.train("\n\n".join(train_texts), vocab_size, progress=progress).save(path)
    barrier(ddp)
    return Tokenizer("bpe", read_ranks(path))


def texts_sha256(train_texts: list[str], val_texts: list[str]) -> str:
    """A digest of what a run reads, training and held-out documents apart, so a resume can check it."""
    digest = hashlib.sha256()
    for part in (train_texts, val_texts):
        for text in part:
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\x00")
        digest.update(b"\x01")
    return digest.hexdigest()


# -- the loop ------------------------------------------------------------------------------------
@dataclass
class PretrainResult:
    model: GPTModel
    log: list[dict[str, float]]
    step: int
    tokens_seen: int
    elapsed_s: float
    cfg: PretrainConfig  # the settings the run ended with: `fit_to_time` may have ended its schedule sooner


@dataclass
class Pretraining:
    """A run under way: what its steps, evaluations and checkpoints share, and its counters."""

    cfg: PretrainConfig
    ddp: Distributed
    monitor: TrainingMonitor
    out_dir: Path
    tokenizer: Tokenizer
    model: GPTModel
    optimizer: torch.optim.Optimizer
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    sampler: BatchSampler
    runner: torch.nn.Module  # the model as trained: wrapped for data parallelism, compiled
    data_sha256: str  # the text it reads: a resume on other text is refused
    log: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    tokens_seen: int = 0
    elapsed_before: float = 0.0  # seconds spent before this process resumed the run
    started: float = 0.0  # perf_counter() when this process began stepping
    first_step: int = 0  # the step this process began at (0, or where it resumed)
    window_start: float = 0.0  # tokens_per_s is a rate over the last (at most 20) steps: it follows the speed
    window_tokens: int = 0

    @property
    def state_path(self) -> Path:
        return self.out_dir / STATE_FILE

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def due(self, interval: int) -> bool:
        """True every `interval` steps, and at the last step."""
        return self.step % interval == 0 or self.step == self.cfg.max_steps

    def event(self, kind: str, **kwargs: Any) -> None:
        if self.ddp.is_main:
            self.monitor.emit(TrainEvent(kind, self.step, self.cfg.max_steps, self.tokens_seen, **kwargs))


def load_tokens(out_dir: Path, train_texts: list[str], val_texts: list[str], tokenizer: Tokenizer, ddp: Distributed,
                resume: bool) -> tuple[np.ndarray, np.ndarray]:
    """The main process encodes the text; the others map the files it wrote."""
    if ddp.is_main:
        train_tokens = prepare_tokens(out_dir, "train", train_texts, tokenizer, reuse=resume)
        val_tokens = prepare_tokens(out_dir, "val", val_texts, tokenizer, reuse=resume)
    barrier(ddp)
    if not ddp.is_main:
        train_tokens = np.asarray(open_token_file(out_dir / "train.bin"))
        val_tokens = np.asarray(open_token_file(out_dir / "val.bin"))
    return train_tokens, val_tokens


def set_up(cfg: PretrainConfig, train_texts: list[str], val_texts: list[str], tokenizer: Tokenizer, out_dir: Path,
           ddp: Distributed, monitor: TrainingMonitor, resume: bool) -> Pretraining:
    """The model (seeded), its optimizer and the encoded text; the saved state too when resuming."""
    if tokenizer.n_vocab > cfg.model.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.n_vocab} tokens but the model only {cfg.model.vocab_size}")
    if cfg.batch_size % ddp.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {ddp.world_size} processes")
    if ddp.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    barrier(ddp)
    torch.manual_seed(cfg.seed)
    model = accelerate(GPTModel(cfg.model)).to(ddp.device)  # the fast modules: the same numbers, sooner
    optimizer = make_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay, cfg.betas,
                               fused=ddp.device.type in ("cpu", "cuda"))
    train_tokens, val_tokens = load_tokens(out_dir, train_texts, val_texts, tokenizer, ddp, resume)
    run = Pretraining(cfg, ddp, monitor, out_dir, tokenizer, model, optimizer, train_tokens, val_tokens,
                      sampler=BatchSampler(train_tokens, cfg.model.context_length, cfg.batch_size, cfg.seed),
                      runner=model, data_sha256=texts_sha256(train_texts, val_texts))
    if resume:
        resume_state(run)
    else:
        torch.manual_seed(cfg.seed + ddp.rank)  # dropout masks: reproducible, different per process
    if ddp.world_size > 1:
        run.runner = torch.nn.parallel.DistributedDataParallel(model)
    if cfg.compile:
        run.runner = torch.compile(run.runner)
    run.runner.train()
    run.started = run.window_start = time.perf_counter()
    run.first_step = run.step
    return run


def resume_state(run: Pretraining) -> None:
    """Weights, optimizer moments, the counters, this process's RNG and the log, as the last checkpoint left them.

    Temporary files of processes killed mid-write are removed first (a live process's are kept).
    """
    cfg, path = run.cfg, run.state_path
    if run.ddp.is_main:
        remove_stale_temporaries(run.out_dir)
    meta, rng = load_train_state(path, run.model, run.optimizer)
    try:
        saved = PretrainConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path.name} in {path.parent.name} records settings that are not valid ({err}); "
                         "start the run again in a new folder") from None
    if replace(saved, max_steps=cfg.max_steps) != cfg:
        raise ValueError(f"{path} was written by a run with other settings; resume with the same flags "
                         "(only --max-steps may change)")
    run.step, run.tokens_seen, run.elapsed_before = meta["step"], meta["tokens_seen"], meta["elapsed_s"]
    if cfg.max_steps < run.step:
        raise ValueError(f"{path} is at step {run.step}, past --max-steps {cfg.max_steps}")
    if meta.get("data_sha256") and meta["data_sha256"] != run.data_sha256:
        raise ValueError(f"{path} was trained on other text; resume with the same --text (and held-out "
                         "text) as the run began with, or start a new run in another folder")
    # A changed max_steps lengthens or shortens the run: the cosine from here on ends at the new step.
    # Resuming on more processes than saved the run: the new ones start from rank 0's state.
    torch.set_rng_state(rng.get(f"rng.cpu.{run.ddp.rank}", rng["rng.cpu.0"]))
    if "rng.cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["rng.cuda"])
    run.log = log_up_to(run.out_dir / LOG_FILE, run.step)


def log_up_to(path: Path, step: int) -> list[dict[str, float]]:
    """The log's rows up to the state's `step`, one per step; rows past it (the log is written first) are dropped.

    A log deleted or cut short would resume into a curve with a hole and a card that miscounts: refused.
    """
    advice = f"restore {path.name} from a copy of the run, or start the run again in a new folder"
    if not path.is_file():
        raise ValueError(f"{path.name} in {path.parent.name} is missing, so the run cannot be resumed "
                         f"(its state is at step {step}); {advice}")
    try:
        rows = [r for r in read_log(path) if r["step"] <= step]
    except (KeyError, TypeError, ValueError, csv.Error) as err:
        raise ValueError(f"{path.name} in {path.parent.name} is damaged and cannot be resumed ({err}); "
                         f"{advice}") from None
    if [r["step"] for r in rows] != list(range(1, step + 1)):
        last = rows[-1]["step"] if rows else 0
        problem = "has no rows" if not rows else f"stops at step {last}" if len(rows) == last else \
            f"has {len(rows)} rows up to step {last}"
        problem += f", but the state is at step {step}"
        raise ValueError(f"{path.name} in {path.parent.name} {problem}: it must have one row per step; {advice}")
    return rows


def stop_reason(run: Pretraining, stop_step: int | None, time_limit_s: float | None) -> str:
    """Why to stop before the next step, or '' to go on; every process gets the same answer."""
    if stop_step is not None and run.step >= stop_step:
        return f"stopped at step {run.step} as asked"
    out_of_time = time_limit_s is not None and time.perf_counter() - run.started > time_limit_s
    if any_process(out_of_time or run.monitor.stop_requested, run.ddp):
        return f"stopped at step {run.step}: " + ("time limit reached" if out_of_time else "stop requested")
    return ""


def fit_schedule_to_time(run: Pretraining, time_limit_s: float, step_at_check: int, checked_at: float) -> None:
    """End the cosine sooner when the steps planned no longer fit the time left at the recent pace.

    Steps fitted to a rate measured at the start overrun when the machine slows later; stopped by the clock, a run
    keeps a high learning rate and a worse loss than a shorter schedule that decays in time. The pace is the slower
    of the whole run's and that since the last check (evaluations included, as the steps ahead have them too);
    the schedule only ever shortens, and never below the step already reached or the warmup.
    """
    now = time.perf_counter()
    steps_here = run.step - step_at_check
    if steps_here <= 0 or run.step >= run.cfg.max_steps:
        return
    pace = max((now - checked_at) / steps_here, (now - run.started) / max(run.step - run.first_step, 1))
    left_s = time_limit_s - (now - run.started)
    fits = max(run.step + max(1, int(SCHEDULE_SHARE * left_s / pace)), run.cfg.warmup_steps)
    if fits < run.cfg.max_steps:
        run.cfg = replace(run.cfg, max_steps=fits)
        run.event("refit", text=f"the machine slowed: the schedule now ends at step {fits}",
                  metrics={"seconds_per_step": pace})


def accumulate_gradients(run: Pretraining) -> float:
    """Forward and backward over the step's micro-batches; their mean loss on this process."""
    cfg, ddp = run.cfg, run.ddp
    loss_sum = 0.0
    for micro in range(cfg.grad_accum):
        inputs, targets = run.sampler.batch(run.step * cfg.grad_accum + micro, ddp.rank, ddp.world_size)
        inputs, targets = inputs.to(ddp.device), targets.to(ddp.device)
        # DDP all-reduces gradients on every backward; accumulating, only the last micro-step needs it.
        sync = ddp.world_size == 1 or micro == cfg.grad_accum - 1
        with (nullcontext() if sync else run.runner.no_sync()), autocast(cfg.autocast, ddp.device):
            loss = lm_loss(run.runner(inputs), targets)
            (loss / cfg.grad_accum).backward()
        loss_sum += loss.item()
    return loss_sum / cfg.grad_accum


def train_step(run: Pretraining) -> dict[str, float]:
    """One optimizer step at the schedule's learning rate; its log row, reported as a "step" event."""
    cfg = run.cfg
    if run.step % 20 == 0:
        run.window_start, run.window_tokens = time.perf_counter(), 0
    lr = cfg.learning_rate(run.step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    train_loss = accumulate_gradients(run)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    run.tokens_seen += cfg.tokens_per_step
    run.window_tokens += cfg.tokens_per_step
    row: dict[str, float] = {
        "step": run.step, "tokens_seen": run.tokens_seen, "train_loss": mean_over_processes(train_loss, run.ddp),
        "lr": lr, "tokens_per_s": run.window_tokens / max(time.perf_counter() - run.window_start, 1e-9),
        "elapsed_s": run.elapsed()}
    run.event("step", metrics={k: row[k] for k in ("train_loss", "lr", "tokens_per_s", "elapsed_s")})
    return row


def evaluate(run: Pretraining) -> dict[str, float]:
    """The loss on the fixed held-out windows (an "eval" event) and a sample (a "sample" event)."""
    cfg = run.cfg
    val_loss, _ = heldout_loss(run.model, run.val_tokens, cfg.eval_windows, precision=cfg.autocast)
    row = {"val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 50.0))}
    run.event("eval", metrics=row)
    if run.ddp.is_main:
        run.event("sample", text=sample_text(run.model, run.tokenizer, cfg.sample_prompt, cfg.sample_tokens))
    return row


def checkpoint(run: Pretraining) -> None:
    """The log, then the state to resume from (every process's RNG in it), then the loss figure."""
    rng_states = gather_rng_states(run.ddp)
    if run.ddp.is_main:
        remove_stale_temporaries(run.out_dir)  # a live process's are kept: other ranks write beside this one
        write_log(run.out_dir / LOG_FILE, run.log)  # the log first: a kill in between leaves rows that resume drops
        save_train_state(run.state_path, run.model, run.optimizer, run.cfg.to_dict(), run.step, run.tokens_seen,
                         run.elapsed(), rng_states, run.data_sha256)
        write_figure(run.out_dir, run.log)
    run.event("checkpoint", path=str(run.state_path))


def pretrain(cfg: PretrainConfig, train_texts: list[str], val_texts: list[str], tokenizer: Tokenizer,
             out_dir: str | Path, ddp: Distributed | None = None, resume: bool = False, stop_step: int | None = None,
             time_limit_s: float | None = None, monitor: TrainingMonitor | None = None,
             fit_to_time: bool = False) -> PretrainResult:
    """Train (or resume) until `max_steps`, or until `stop_step`, `time_limit_s` or a stop request.

    Each interruption saves a checkpoint without changing the schedule, so a later `resume=True`
    continues the very same run. `ddp` (from `init_distributed`) says the device and the processes.
    `fit_to_time` (with `time_limit_s`) ends the schedule sooner if the machine slows (`fit_schedule_to_time`).
    """
    run = set_up(cfg, train_texts, val_texts, tokenizer, Path(out_dir), ddp or Distributed(),
                 monitor or TrainingMonitor(), resume)
    run.event("start", metrics={"params": run.model.n_params(), "train_tokens": len(run.train_tokens),
                                "val_tokens": len(run.val_tokens)})
    interrupted = ""
    step_at_check, checked_at = run.step, run.started
    while run.step < run.cfg.max_steps:
        interrupted = stop_reason(run, stop_step, time_limit_s)
        if interrupted:
            break
        row = train_step(run)
        if run.due(run.cfg.eval_interval):
            row |= evaluate(run)
            if fit_to_time and time_limit_s is not None:
                if step_at_check > run.first_step:  # the first window holds the first, slow step: no measure of pace
                    fit_schedule_to_time(run, time_limit_s, step_at_check, checked_at)
                step_at_check, checked_at = run.step, time.perf_counter()
        run.log.append(row)
        if run.due(run.cfg.checkpoint_interval):
            checkpoint(run)
    if interrupted and run.step > 0:
        checkpoint(run)
    elapsed = run.elapsed()
    run.event("stopped" if interrupted else "done", text=interrupted or f"finished {run.step} steps",
              metrics={"elapsed_s": elapsed})
    return PretrainResult(run.model, run.log, run.step, run.tokens_seen, elapsed, run.cfg)


def sample_text(model: GPTModel, tokenizer: Tokenizer, prompt: str, max_new_tokens: int, seed: int = 0) -> str:
    """A short top-k sample from a fixed prompt (its own generator: the training RNG is untouched)."""
    was_training = model.training
    model.eval()
    ids = generate(model, tokenizer.encode(prompt),
                   SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_k=40, seed=seed),
                   eot_id=tokenizer.eot_id, vocab_size=tokenizer.n_vocab)
    model.train(was_training)
    return prompt + tokenizer.decode(ids)


def export_model(result: PretrainResult, cfg: PretrainConfig, tokenizer: Tokenizer, val_texts: list[str],
                 out_dir: Path, corpus_name: str, baselines: dict[str, float] | None = None) -> dict[str, Any]:
    """Score the whole held-out text, then save `OUT/model/` (bf16) with the figures in the config's meta.

    `baselines` (bits per byte of other compressors on the same held-out text) are stored beside them.
    """
    directory = out_dir / "model"
    val_tokens = np.asarray(open_token_file(out_dir / "val.bin"))
    loss, n_scored = heldout_loss(result.model, val_tokens, precision=cfg.autocast)
    n_bytes = len(join_documents(val_texts).encode("utf-8"))
    meta = {
        "corpus": corpus_name, "steps": result.step, "max_steps": cfg.max_steps, "tokens_seen": result.tokens_seen,
        "train_tokens": len(open_token_file(out_dir / "train.bin")),
        "train_time_s": round(result.elapsed_s, 1), "held_out_loss": round(loss, 4),
        "held_out_perplexity": round(math.exp(loss), 2), "held_out_tokens": n_scored, "held_out_bytes": n_bytes,
        "held_out_bits_per_byte": round(bits_per_byte(loss * n_scored, n_bytes), 4),
        "final_train_loss": round(result.log[-1]["train_loss"], 4) if result.log else None,
        "params": result.model.n_params(), "tokenizer": tokenizer.name,
        "baselines": {name: round(bpb, 4) for name, bpb in (baselines or {}).items()},
        "train_config": cfg.to_dict(), "torch": torch.__version__,
        "arithmetic": resolve_autocast(cfg.autocast, result.model.tok_emb.weight.device),
    }
    save_checkpoint(result.model, directory, tokenizer, meta, dtype=torch.bfloat16)
    write_text_atomic(directory / "metrics.json", json.dumps(meta, indent=2) + "\n")
    return meta
