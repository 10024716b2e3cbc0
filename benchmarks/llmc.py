"""Training beside llm.c's CPU reference, `train_gpt2.c` (Karpathy), on the same model, batch and threads (issue 35).

llm.c's C program trains GPT-2 124M in float32 at batch 4, sequence 64 (its `main` fixes both) with AdamW (lr 1e-4,
no weight decay, no clipping) and prints each step's time. This benchmark writes every file it reads, so nothing
comes from a model hub:
- `gpt2_124M.bin`: our GPT-2 124M with seeded random weights, in llm.c's checkpoint layout (version 3: float32,
  the vocabulary padded to 50,304 rows), so both programs start from the very same weights;
- its training and validation tokens: the shipped corpora's training and held-out text in GPT-2's BPE
  (`assets/gpt2.tiktoken`), in llm.c's token-file layout.
It compiles the program as its Makefile's CPU build does (`gcc -Ofast -march=native -fopenmp -DOMP`: -Ofast lets
the compiler vectorise its products' sums, which -O3 may not reorder), runs it with
OMP_NUM_THREADS set to the threads ours gets, reads the step times it prints and stops it after `--steps` steps.
Ours then trains the same weights with the same optimizer settings on the same shape (forward, cross-entropy,
backward, fused AdamW; `gpt.kernels.accelerate`'s fast modules), and the two alternate for `--runs` rounds, since
a busy machine slows whichever runs at the time. Both see the same validation batches before their first step:
equal validation losses say the two compute the same model. Each side's model FLOP utilisation is its training
FLOP/s over the matrix-product peak measured in the same run.

llm.c's sources (five files at a pinned commit) are downloaded once and hash-checked, or read from a checkout:

    python -m benchmarks.llmc [--llmc PATH/TO/llm.c] [--steps 10] [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import matmul_peak, training_flops_per_token
from gpt.config import GPTConfig
from gpt.data.corpus import join_documents, load_corpus
from gpt.data.download import RemoteFile, fetch_cached
from gpt.files import sha256_of
from gpt.kernels import accelerate
from gpt.model import GPTModel
from gpt.tokenizer import load_tokenizer
from gpt.training.loss import lm_loss
from gpt.training.optim import make_optimizer

LLMC_COMMIT = "f1e2ace651495b74ae22d45d1723443fd00ecd3a"
LLMC_SOURCES = {  # path in the repository -> sha256 at LLMC_COMMIT
    "train_gpt2.c": "6737a6c0945f5ac04d8fb534100506be9871df8c406995b34b84b3deec661258",
    "llmc/utils.h": "20d19f234334cf030e6d9d2154c690a9eea4fa41b2701fa4f06e6498ad9aa904",
    "llmc/tokenizer.h": "0f578cbdb2ef7668fbae737af89d5ad876648bdd4fa6e399dfe96a9d481827b9",
    "llmc/dataloader.h": "66ff78fec30531d6f5e7220935ca81639933c4c1eff38f693c8f9627d4d6550a",
    "llmc/rand.h": "5319491c12f5dfa2b8b33ea8abac64ee2161c5ddda430fe765c813ac482ad73b",
}
COMPILE = ("gcc", "-Ofast", "-march=native", "-fopenmp", "-DOMP", "train_gpt2.c", "-lm", "-o", "train_gpt2")
BATCH, SEQ_LEN = 4, 64  # what train_gpt2.c's main trains on
VAL_BATCHES = 5  # the validation batches it scores before its first step
LR, BETAS = 1e-4, (0.9, 0.999)  # its gpt2_update(…, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, …); eps 1e-8 is AdamW's own
MODEL_MAGIC, MODEL_VERSION = 20240326, 3  # llm.c's checkpoint header: float32 weights, padded vocabulary
TOKENS_MAGIC, TOKENS_VERSION = 20240520, 1  # its token files: uint16 ids after the header
HEADER_INTS = 256
PADDED_VOCAB = 50304  # GPT-2's 50,257 rounded up to a multiple of 128, as llm.c pads it
TRAIN_FILE = "dev/data/tinyshakespeare/tiny_shakespeare_train.bin"  # the paths main() reads, relative to its folder
VAL_FILE = "dev/data/tinyshakespeare/tiny_shakespeare_val.bin"
CHECKPOINT_FILE = "gpt2_124M.bin"


def llmc_sources(dest: Path, checkout: Path | None = None) -> Path:
    """llm.c's five source files in `dest` (their repository layout): copied from a checkout, else downloaded at
    LLMC_COMMIT into the cache; every file's sha256 is checked either way."""
    for name, sha256 in LLMC_SOURCES.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if checkout is not None:
            source = checkout / name
        else:
            url = f"https://raw.githubusercontent.com/karpathy/llm.c/{LLMC_COMMIT}/{name}"
            source = fetch_cached(RemoteFile(url, f"llmc-{LLMC_COMMIT[:7]}-{name.replace('/', '-')}", sha256))
        shutil.copyfile(source, target)
        if sha256_of(target) != sha256:
            raise ValueError(f"{source} is not llm.c's {name} at {LLMC_COMMIT[:7]} (its sha256 differs)")
    return dest


def llmc_tensors(model: GPTModel) -> list[torch.Tensor]:
    """Our GPT-2's weights in the order and shapes of llm.c's ParameterTensors (each layer's tensors stacked)."""
    cfg = model.cfg
    if cfg.vocab_size > PADDED_VOCAB or not cfg.tie_weights or cfg.positions != "learned" or cfg.norm != "layernorm":
        raise ValueError("llm.c trains GPT-2: learned positions, LayerNorm, a tied head, at most 50,304 tokens")
    blocks = model.trf_blocks

    def stacked(get) -> torch.Tensor:
        return torch.stack([get(block).detach() for block in blocks])

    wte = torch.zeros(PADDED_VOCAB, cfg.emb_dim)
    wte[:cfg.vocab_size] = model.tok_emb.weight.detach()
    return [wte, model.pos_emb.weight.detach(),
            stacked(lambda b: b.norm1.weight), stacked(lambda b: b.norm1.bias),
            stacked(lambda b: b.att.qkv.weight), stacked(lambda b: b.att.qkv.bias),
            stacked(lambda b: b.att.out_proj.weight), stacked(lambda b: b.att.out_proj.bias),
            stacked(lambda b: b.norm2.weight), stacked(lambda b: b.norm2.bias),
            stacked(lambda b: b.ff.fc.weight), stacked(lambda b: b.ff.fc.bias),
            stacked(lambda b: b.ff.proj.weight), stacked(lambda b: b.ff.proj.bias),
            model.final_norm.weight.detach(), model.final_norm.bias.detach()]


def write_llmc_checkpoint(model: GPTModel, path: Path) -> None:
    """`model` as llm.c's `gpt2_build_from_checkpoint` reads it: 256 int32 of header, then every weight, float32."""
    cfg = model.cfg
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:8] = [MODEL_MAGIC, MODEL_VERSION, cfg.context_length, cfg.vocab_size, cfg.n_layers, cfg.n_heads,
                  cfg.emb_dim, PADDED_VOCAB]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for tensor in llmc_tensors(model):
            f.write(tensor.float().contiguous().numpy().tobytes())


def write_llmc_tokens(ids: list[int], path: Path) -> None:
    """Token ids as llm.c's DataLoader reads them: 256 int32 of header (magic, version, count), then uint16 ids."""
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:3] = [TOKENS_MAGIC, TOKENS_VERSION, len(ids)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(ids, dtype=np.uint16).tobytes())


def validation_batches(ids: list[int], n: int = VAL_BATCHES) -> list[torch.Tensor]:
    """The batches llm.c's unshuffled loader gives: batch i is B*T+1 ids from position i*B*T, as (B, T+1) rows of
    inputs with their next tokens."""
    span = BATCH * SEQ_LEN
    batches = []
    for i in range(n):
        chunk = torch.tensor(ids[i * span: (i + 1) * span + 1], dtype=torch.long)
        batches.append(torch.stack([chunk[:-1].view(BATCH, SEQ_LEN), chunk[1:].view(BATCH, SEQ_LEN)]))
    return batches


@dataclass
class LlmcRun:
    """What one run of train_gpt2.c printed: its validation loss before training and each step's time."""

    val_loss: float | None
    step_seconds: list[float]
    losses: list[float]


def parse_llmc_line(line: str, run: LlmcRun) -> None:
    """Read one line of train_gpt2.c's output into `run`: "val loss X" and "step K: train loss X (took Y ms)"."""
    if line.startswith("val loss ") and run.val_loss is None:
        run.val_loss = float(line.split()[2])
    elif line.startswith("step ") and "(took " in line:
        run.losses.append(float(line.split("train loss ")[1].split()[0]))
        run.step_seconds.append(float(line.split("(took ")[1].split()[0]) / 1000)


def run_llmc(workdir: Path, steps: int, threads: int) -> LlmcRun:
    """Run the compiled train_gpt2 in `workdir` until it has printed `steps` steps, then stop it."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    line_buffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []  # else its lines come only in 4 KB blocks
    run = LlmcRun(None, [], [])
    with subprocess.Popen([*line_buffered, "./train_gpt2"], cwd=workdir, env=env, stdout=subprocess.PIPE,
                          text=True) as proc:
        try:
            for line in proc.stdout:
                parse_llmc_line(line.strip(), run)
                if len(run.step_seconds) >= steps:
                    break
        finally:
            proc.kill()
    if len(run.step_seconds) < steps:
        raise RuntimeError(f"train_gpt2 stopped after {len(run.step_seconds)} steps (exit code {proc.returncode})")
    return run


def our_run(model: GPTModel, train_ids: list[int], val: list[torch.Tensor], steps: int) -> LlmcRun:
    """Ours on the same shape: the validation loss of llm.c's batches, then `steps` timed training steps."""
    model.eval()
    with torch.no_grad():
        val_loss = statistics.fmean(lm_loss(model(x), y).item() for x, y in val)
    model.train()
    opt = make_optimizer("adamw", model, lr=LR, weight_decay=0.0, betas=BETAS, fused=True)
    span = BATCH * SEQ_LEN
    run = LlmcRun(val_loss, [], [])
    for step in range(steps):
        chunk = torch.tensor(train_ids[step * span: (step + 1) * span + 1], dtype=torch.long)
        inputs, targets = chunk[:-1].view(BATCH, SEQ_LEN), chunk[1:].view(BATCH, SEQ_LEN)
        start = time.perf_counter()
        loss = lm_loss(model(inputs), targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        run.step_seconds.append(time.perf_counter() - start)
        run.losses.append(loss.item())
    return run


def corpus_ids() -> tuple[list[int], list[int]]:
    """GPT-2 token ids of the shipped corpora's training text (its first 400,000 characters) and held-out text."""
    split = load_corpus()
    tokenizer = load_tokenizer("gpt2")
    train_text = join_documents(d.text for d in split.train)[:400_000]
    return tokenizer.encode(train_text), tokenizer.encode(join_documents(d.text for d in split.held_out)[:200_000])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llmc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llmc", type=Path, help="a checkout of karpathy/llm.c (default: download its sources)")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed per run (llm.c's main runs 40)")
    parser.add_argument("--runs", type=int, default=3, help="rounds, llm.c then ours in each")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--preset", default="gpt2-small", help="the model's shape (GPT-2's vocabulary and context "
                        "whatever the preset; a small one checks the set-up quickly)")
    args = parser.parse_args(argv)
    if not 2 <= args.steps <= 40:
        parser.error("--steps must be 2 to 40: train_gpt2.c trains 40 steps")
    if shutil.which("gcc") is None:
        print("llm.c needs gcc (apt-get install gcc); nothing measured")
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = GPTConfig.preset(args.preset, drop_rate=0.0, vocab_size=GPTConfig().vocab_size,
                           context_length=GPTConfig().context_length)
    model = GPTModel(cfg)
    train_ids, val_ids = corpus_ids()
    val = validation_batches(val_ids)
    with tempfile.TemporaryDirectory(prefix="llmc-") as tmp:
        workdir = llmc_sources(Path(tmp), args.llmc)
        subprocess.run(COMPILE, cwd=workdir, check=True)
        write_llmc_checkpoint(model, workdir / CHECKPOINT_FILE)
        write_llmc_tokens(train_ids, workdir / TRAIN_FILE)
        write_llmc_tokens(val_ids, workdir / VAL_FILE)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        accelerate(model)
        results: dict[str, list[LlmcRun]] = {"llm.c": [], "ours": []}
        for _ in range(args.runs):
            results["llm.c"].append(run_llmc(workdir, args.steps, args.threads))
            model.load_state_dict(initial)  # every run of ours starts from the weights llm.c reads
            results["ours"].append(our_run(model, train_ids, val, args.steps))
    peak = matmul_peak(torch.float32)
    flops = training_flops_per_token(cfg, SEQ_LEN)
    tokens = BATCH * SEQ_LEN
    print(f"{args.preset} ({model.n_params() / 1e6:.0f}M parameters), float32, batch {BATCH} x {SEQ_LEN} tokens, "
          f"{args.threads} threads, AdamW lr {LR:g}; "
          f"{args.runs} runs of {args.steps} steps each (the first step of a run is left out as warm-up); "
          f"matrix-product peak {peak / 1e9:.0f} GFLOP/s")
    print("| | validation loss before training | median step (ms) | tokens/s | model FLOP utilisation |")
    print("|---|---|---|---|---|")
    medians = {}
    for name, runs in results.items():
        seconds = [s for run in runs for s in run.step_seconds[1:]]
        medians[name] = statistics.median(seconds)
        rate = tokens / medians[name]
        print(f"| {name} | {runs[0].val_loss:.4f} | {1000 * medians[name]:.0f} | {rate:,.0f} | "
              f"{100 * rate * flops / peak:.0f}% |")
    per_run = ", ".join(f"{statistics.median(c.step_seconds[1:]) / statistics.median(o.step_seconds[1:]):.2f}"
                        for c, o in zip(results["llm.c"], results["ours"], strict=True))
    print(f"ours / llm.c (speed): {medians['llm.c'] / medians['ours']:.2f}x (per run: {per_run})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
