"""Inference speed of our model beside Hugging Face transformers' GPT2LMHeadModel, in one run.

Both get the same random weights of one shape (gpt2-small by default, or the shape of a checkpoint
folder such as assets/models/base), the same threads and the same inputs; ours runs with its fast
modules (`to_precision` swaps them in, as for the app and the CLI). The machines are shared, so the
ratio is the figure to read, not the absolute speed. Each precision of ours is timed beside
transformers in the same precision (int8, which transformers has no CPU path for, beside its
float32). A decode step reads every weight once, so the weights' bytes over the memory bandwidth
is the fastest decoding can be: the share of that limit reached is printed. The bandwidth is
measured in turns with the decode timings (a full read of a buffer far larger than the caches),
so that both see the same load on a shared host.

Today's open models (a name of `gpt.open_models.CATALOGUE`, such as smollm2-135m or qwen3-0.6b) are
timed in their own shape beside transformers' own class (LlamaForCausalLM, Qwen3ForCausalLM), made from
the catalogue's config.json with seeded random weights rounded to bfloat16 (as the Hub stores them),
saved with `save_pretrained` and read back by our loader (`gpt.open_models.load_hub_folder`), so the
loading path is the app's. int8 is timed there beside transformers' int8: PyTorch's dynamic
quantization of its linear layers (per output channel, as ours). Each precision's greedy tokens,
ours and transformers', are checked against transformers in float32, and the bytes a decode step
reads count the KV cache read as well as the weights.

    python -m benchmarks.inference [--dtype float32 bfloat16 int8] [--model assets/models/base] [--repeats 5]
    python -m benchmarks.inference --shape smollm2-135m qwen3-0.6b --dtype float32 bfloat16 int8 \
        --prefill-len 128 --prompt-len 16 --new-tokens 64
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import format_table, hf_model, interleaved_median_seconds, throughput_row
from benchmarks.machine import memory_read
from gpt.checkpoint import read_config
from gpt.config import PRESETS, GPTConfig
from gpt.generate import SamplingConfig, generate
from gpt.model import GPTModel
from gpt.open_models import CATALOGUE, load_hub_folder
from gpt.quantize import PRECISIONS, to_precision

DECODE = "decode"
MEMORY_READ = "memory read"  # the bandwidth probe timed in turns with the decode workload


def config_of(model: str) -> GPTConfig:
    """A preset's shape, or a checkpoint folder's (its weights are not read: the timing needs the shape only)."""
    return GPTConfig.preset(model) if model in PRESETS else read_config(model)["model"]


def run_benchmarks(model: str = "gpt2-small", precision: str = "float32", repeats: int = 3,
                   prefill_len: int = 256, prompt_len: int = 32, new_tokens: int = 128,
                   with_hf: bool = True, probe_bytes: int = 2 * 1024**3
                   ) -> tuple[list[dict[str, float | str]], int, float]:
    """The rows of one precision, the bytes of our weights in it, and the memory bandwidth (bytes/s)
    measured in turns with the decode timings."""
    torch.manual_seed(0)
    cfg = config_of(model)
    ours = to_precision(GPTModel(cfg).eval(), precision)
    prefill_len = min(prefill_len, cfg.context_length)
    prefill_ids = torch.randint(0, cfg.vocab_size, (1, prefill_len))
    batch_ids = torch.randint(0, cfg.vocab_size, (8, prefill_len))
    prompt = torch.randint(0, cfg.vocab_size, (1, prompt_len))
    greedy = SamplingConfig(max_new_tokens=new_tokens, temperature=0, stop_at_eot=False)

    hf_dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    hf = hf_model(cfg, hf_dtype).eval() if with_hf else None
    workloads = [
        (f"prefill 1x{prefill_len}", prefill_len,
         lambda: ours(prefill_ids, last_only=True),
         None if hf is None else lambda: hf(prefill_ids, logits_to_keep=1)),
        (f"prefill 8x{prefill_len}", 8 * prefill_len,
         lambda: ours(batch_ids, last_only=True),
         None if hf is None else lambda: hf(batch_ids, logits_to_keep=1)),
        (f"{DECODE} {prompt_len}+{new_tokens} (KV cache)", new_tokens,
         lambda: generate(ours, prompt[0].tolist(), greedy),
         None if hf is None else lambda: hf.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                     do_sample=False, pad_token_id=0)),
    ]
    with torch.inference_mode():
        rows, bandwidth = time_workloads(workloads, repeats, probe_bytes)
    return rows, decode_bytes(ours), bandwidth


def time_workloads(workloads: list[tuple[str, int, Any, Any]], repeats: int, probe_bytes: int
                   ) -> tuple[list[dict[str, float | str]], float]:
    """Each (name, tokens, ours, transformers or None) workload timed in turns, a memory read of `probe_bytes`
    beside each decode one; the rows and the bandwidth that read measured (0.0 without a decode workload)."""
    rows: list[dict[str, float | str]] = []
    bandwidth = 0.0
    for name, n_tokens, ours_fn, hf_fn in workloads:
        steps = {"ours": ours_fn} if hf_fn is None else {"ours": ours_fn, "transformers": hf_fn}
        if name.startswith(DECODE):
            steps[MEMORY_READ] = memory_read(probe_bytes)
        seconds = interleaved_median_seconds(steps, repeats)
        if MEMORY_READ in seconds:
            bandwidth = probe_bytes / seconds.pop(MEMORY_READ)
        rows.append(throughput_row(name, n_tokens, seconds))
    return rows, bandwidth


def decode_bytes(model: GPTModel) -> int:
    """Bytes a decode step reads: every weight but the embedding tables, of which it reads one row each (a
    head tied to the token embedding is read whole, as the head)."""
    state = model.state_dict(keep_vars=True)
    tensors = {t.data_ptr(): t for name, t in state.items() if name not in ("tok_emb.weight", "pos_emb.weight")}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def bandwidth_line(rows: list[dict[str, float | str]], n_bytes: int, bandwidth: float, kv_bytes: int = 0) -> str:
    """What the memory allows a decode step, and the share of it ours and transformers reach.

    `n_bytes` are the weights a step reads, `kv_bytes` the keys and values it reads on average (0: not counted).
    """
    decode = next(r for r in rows if str(r["workload"]).startswith(DECODE))
    limit = bandwidth / (n_bytes + kv_bytes)
    shares = ", ".join(f"{name} {100 * float(decode[name]) / limit:.0f}%" for name in ("ours", "transformers")
                       if name in decode)
    kv = f" + {kv_bytes / 1e6:,.1f} MB of KV cache" if kv_bytes else ""
    return (f"a decode step reads {n_bytes / 1e6:,.1f} MB of weights{kv}; memory bandwidth {bandwidth / 1e9:.1f} "
            f"GB/s allows {limit:.1f} decode tokens/s; reached: {shares}")


# -- today's open models, beside transformers' own classes -----------------------------------------------

@dataclass
class OpenResult:
    """One precision of one open-model shape: the table's rows, the bytes a decode step reads, the bandwidth, and
    how many of each side's greedy tokens equal transformers' in float32 (from the first)."""

    precision: str
    rows: list[dict[str, float | str]]
    weight_bytes: int
    kv_bytes: int
    bandwidth: float
    greedy_equal: dict[str, int]
    new_tokens: int


def hf_open_model(hub: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """transformers' own class for a config.json (LlamaForCausalLM, Qwen3ForCausalLM, ...): seeded random weights
    (its own initialisation), rounded to bfloat16 as a Hub checkpoint stores them, held in float32."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(**hub)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval().to(torch.bfloat16).float()


def tiny_tokenizer_json(vocab_size: int = 300) -> str:
    """A byte-level BPE of `vocab_size` tokens trained here, for the folder's tokenizer.json: the loader reads one,
    and the benchmark feeds token ids, so any tokenizer no larger than the model's vocabulary will do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["Every effort moves you forward, and the quick brown fox jumps over it."] * 20, trainer)
    return tok.to_str()


def save_hf_folder(hf: torch.nn.Module, folder: Path) -> Path:
    """`save_pretrained` (safetensors, in bfloat16 as the Hub's files) and a tokenizer.json: a Hub model's folder."""
    hf.to(torch.bfloat16).save_pretrained(folder)
    hf.float()  # the values were bfloat16's already: nothing is lost
    (folder / "tokenizer.json").write_text(tiny_tokenizer_json(min(300, hf.config.vocab_size)))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    return folder


def hf_in_precision(hf: torch.nn.Module, precision: str) -> torch.nn.Module:
    """transformers' model in `precision`: float32 as it is, a bfloat16 copy, or a copy whose linear layers are
    PyTorch's dynamic int8 (int8 weights, one scale per output channel, activations quantized per call)."""
    if precision == "float32":
        return hf
    if precision == "bfloat16":
        return copy.deepcopy(hf).to(torch.bfloat16).eval()
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # PyTorch warns that its quantized tensors are deprecated
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(hf), {torch.nn.Linear: per_channel_dynamic_qconfig}).eval()


def kv_read_bytes(cfg: GPTConfig, prompt_len: int, new_tokens: int, element_size: int) -> int:
    """Keys and values a decode step reads, averaged over the steps of a `prompt_len`+`new_tokens` run: each step
    reads every layer's cache up to its position."""
    mean_positions = prompt_len + new_tokens / 2
    return round(2 * cfg.n_layers * cfg.kv_dim * mean_positions * element_size)


def same_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two greedy runs share."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def run_open_model(hub: dict[str, Any], precisions: list[str] | tuple[str, ...] = PRECISIONS, repeats: int = 3,
                   prefill_len: int = 128, prompt_len: int = 16, new_tokens: int = 64, seed: int = 0,
                   probe_bytes: int = 2 * 1024**3, workdir: str | Path | None = None) -> list[OpenResult]:
    """An open model's shape (its config.json, `hub`), ours against transformers' own class in each precision,
    on the same weights (saved by transformers, read by our loader) and token ids, in turns."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # generate()'s notes on its generation config, once per call
    hf_logging.disable_progress_bar()
    hf = hf_open_model(hub, seed)
    gen = torch.Generator().manual_seed(seed)
    vocab = hub["vocab_size"]
    prefill_ids = torch.randint(0, vocab, (1, prefill_len), generator=gen)
    prompt = torch.randint(0, vocab, (1, prompt_len), generator=gen)
    greedy = SamplingConfig(max_new_tokens=new_tokens, temperature=0, stop_at_eot=False)
    hf_generate = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    results = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, torch.inference_mode():
        folder = save_hf_folder(hf, Path(tmp) / "model")
        reference = hf.generate(prompt, **hf_generate)[0, prompt_len:].tolist()  # transformers, float32
        for precision in precisions:
            ours = load_hub_folder(folder, torch.bfloat16 if precision == "bfloat16" else torch.float32).model
            ours = to_precision(ours, precision)
            theirs = hf_in_precision(hf, precision)
            workloads = [
                (f"prefill 1x{prefill_len}", prefill_len,
                 lambda ours=ours: ours(prefill_ids, last_only=True),
                 lambda theirs=theirs: theirs(prefill_ids, logits_to_keep=1)),
                (f"{DECODE} {prompt_len}+{new_tokens} (KV cache)", new_tokens,
                 lambda ours=ours: generate(ours, prompt[0].tolist(), greedy),
                 lambda theirs=theirs: theirs.generate(prompt, **hf_generate)),
            ]
            rows, bandwidth = time_workloads(workloads, repeats, probe_bytes)
            tokens = {"ours": generate(ours, prompt[0].tolist(), greedy),
                      "transformers": theirs.generate(prompt, **hf_generate)[0, prompt_len:].tolist()}
            kv_size = ours.tok_emb.weight.element_size()  # the cache holds the activations' dtype
            results.append(OpenResult(precision, rows, decode_bytes(ours),
                                      kv_read_bytes(ours.cfg, prompt_len, new_tokens, kv_size), bandwidth,
                                      {k: same_prefix(v, reference) for k, v in tokens.items()}, new_tokens))
            del ours, theirs
    return results


def greedy_line(result: OpenResult) -> str:
    """How far each side's greedy tokens follow transformers' in float32."""
    parts = [f"{name} {n}/{result.new_tokens}" for name, n in result.greedy_equal.items()]
    return f"greedy tokens equal to transformers float32 (leading tokens): {', '.join(parts)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "--preset", "--shape", nargs="+", default=["gpt2-small"],
                        help="presets (gpt2-small, ...), checkpoint folders, or open models of the catalogue "
                             f"({', '.join(CATALOGUE)}), whose shapes are timed")
    parser.add_argument("--dtype", nargs="+", choices=PRECISIONS, default=["float32"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prefill-len", type=int, default=None, help="tokens of the prefill rows "
                        "(default 256, open models 128)")
    parser.add_argument("--prompt-len", type=int, default=None, help="prompt before decoding (default 32, open "
                        "models 16)")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens decoded (default 128, open models 64)")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers reference (GPT-2 shapes)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    for model in args.model:
        if model in CATALOGUE:
            lengths = {"prefill_len": args.prefill_len or 128, "prompt_len": args.prompt_len or 16,
                       "new_tokens": args.new_tokens or 64}
            for result in run_open_model(CATALOGUE[model].hub_config, args.dtype, args.repeats, **lengths):
                title = (f"{model} shape, random weights, {result.precision} beside transformers "
                         f"{result.precision}, {threads} threads, median of {args.repeats}")
                print(format_table(result.rows, title))
                print(bandwidth_line(result.rows, result.weight_bytes, result.bandwidth, result.kv_bytes))
                print(greedy_line(result) + "\n", flush=True)
            continue
        lengths = {"prefill_len": args.prefill_len or 256, "prompt_len": args.prompt_len or 32,
                   "new_tokens": args.new_tokens or 128}
        for precision in args.dtype:
            rows, n_bytes, bandwidth = run_benchmarks(model, precision, args.repeats, with_hf=not args.no_hf,
                                                      **lengths)
            reference = " (transformers in float32)" if precision == "int8" else ""
            title = f"{model}, random weights, {precision}{reference}, {threads} threads, median of {args.repeats}"
            print(format_table(rows, title))
            print(bandwidth_line(rows, n_bytes, bandwidth) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
