"""Our model beside the engines people pick for CPU inference: ONNX Runtime, CTranslate2 and OpenVINO (issue 35).

Every engine gets the same random GPT-2 weights (transformers' GPT2LMHeadModel of the shape, seeded; ours loads
its state dict through `gpt.pretrained.hub_to_ours`), the same token ids and the same threads, and is exported by
this benchmark itself:
- ONNX: `torch.onnx.export` of `ExportedGPT2`, GPT-2's forward written with explicit past keys and values (one
  graph for the prompt and for each decoded token), every product a MatMul (+ Add) against a constant weight, so
  ONNX Runtime's dynamic quantization reaches them all (it skips Gemm); the head reads its own (C, vocab) copy of
  the token embedding. int8 for ONNX Runtime is its `quantize_dynamic`, per output channel (per tensor changes
  greedy tokens), of the weights' MatMuls only (`MatMulConstBOnly`: attention's products stay float).
- OpenVINO reads the same ONNX file; its precision hint (`INFERENCE_PRECISION_HINT`) and KV-cache precision are set
  for each row (its CPU default is bfloat16 compute where the CPU has it, and an 8-bit KV cache). Its int8 row
  reads a copy whose weights are int8 per output channel behind `DequantizeLinear`, which its CPU plugin keeps
  compressed; its products then quantize the activations per call in groups of 32 (its CPU default, set
  explicitly; 0, float activations as ours, measured no different).
- CTranslate2: its own Transformers converter, fed the model in memory and GPT-2's vocabulary rebuilt from the
  shipped ranks (`assets/gpt2.tiktoken`) in place of vocab.json; its int8 is `compute_type="int8"`.

Each precision is timed in turns (`benchmarks.common.interleaved_median_seconds`, as `benchmarks.inference`):
prefill is one forward pass to the last token's logits, decode is greedy generation with each engine's KV cache.
Every engine's greedy tokens are checked against transformers in float32. Decode is read against the memory
bandwidth measured in turns with it (the bytes of ours in that precision plus the KV cache, over the bandwidth);
prefill against the matrix-product peak (`benchmarks.machine.matmul_peak`) measured in the same run. An engine
whose package is absent (`pip install -r requirements-bench.txt`) or that has no path for a precision on this CPU
is left out with a one-line note.

    python -m benchmarks.peers [--dtype float32 bfloat16 int8] [--engines onnxruntime ctranslate2 openvino]
        [--model gpt2-small] [--repeats 3] [--prefill-len 256] [--prompt-len 32] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.common import hf_model, interleaved_median_seconds, throughput_row
from benchmarks.inference import (
    DECODE,
    MEMORY_READ,
    config_of,
    decode_bytes,
    hf_in_precision,
    kv_read_bytes,
    same_prefix,
)
from benchmarks.machine import matmul_peak, memory_read
from gpt.config import GPTConfig
from gpt.generate import SamplingConfig, generate
from gpt.hub_tokenizer import bytes_to_unicode
from gpt.model import GPTModel
from gpt.pretrained import hub_to_ours
from gpt.quantize import PRECISIONS, to_precision
from gpt.tokenizer import gpt2_tokenizer

ENGINES = ("onnxruntime", "ctranslate2", "openvino")
PACKAGES = {"onnxruntime": ("onnxruntime", "onnx"), "ctranslate2": ("ctranslate2",), "openvino": ("openvino", "onnx")}
PREFILL = "prefill"


def missing(engine: str) -> str | None:
    """Why an engine cannot run here (its packages not installed), or None."""
    absent = [p for p in PACKAGES[engine] if importlib.util.find_spec(p) is None]
    return f"{', '.join(absent)} not installed (pip install -r requirements-bench.txt)" if absent else None


# -- the ONNX export ----------------------------------------------------------------------------------------

class ExportedGPT2(nn.Module):
    """GPT-2's forward (transformers' GPT2LMHeadModel weights) with the KV cache as inputs and outputs, for export.

    `forward(input_ids (B, T), past_keys, past_values (L, B, H, P, D))` returns the last position's logits (B, V)
    and the keys and values of all P + T positions. The products are `x @ W + b` with W (in, out), as GPT-2's
    Conv1D stores it: MatMul + Add in ONNX.
    """

    def __init__(self, hf: nn.Module):
        super().__init__()
        cfg = hf.config
        self.n_layers, self.n_heads, self.emb_dim = cfg.n_layer, cfg.n_head, cfg.n_embd
        self.eps = cfg.layer_norm_epsilon
        state = {k.removeprefix("transformer."): v.detach().float().clone() for k, v in hf.state_dict().items()
                 if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        state["head"] = state.pop("lm_head.weight", state["wte.weight"]).t().contiguous()
        self.weights = nn.ParameterDict({k.replace(".", "_"): nn.Parameter(v, requires_grad=False)
                                         for k, v in state.items()})

    def w(self, name: str) -> torch.Tensor:
        return self.weights[name.replace(".", "_")]

    def norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return nn.functional.layer_norm(x, (self.emb_dim,), self.w(f"{name}.weight"), self.w(f"{name}.bias"), self.eps)

    def linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ self.w(f"{name}.weight") + self.w(f"{name}.bias")

    def forward(self, input_ids: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t = input_ids.shape
        p = past_keys.shape[3]
        heads, head_dim = self.n_heads, self.emb_dim // self.n_heads
        pos = torch.arange(t) + p
        x = self.w("wte.weight")[input_ids] + self.w("wpe.weight")[pos]
        visible = torch.arange(t + p)[None, :] <= pos[:, None]  # (T, P + T): causal, after the past
        keys, values = [], []
        for i in range(self.n_layers):
            qkv = self.linear(self.norm(x, f"h.{i}.ln_1"), f"h.{i}.attn.c_attn")
            q, k, v = (part.reshape(b, t, heads, head_dim).transpose(1, 2) for part in qkv.split(self.emb_dim, 2))
            k, v = torch.cat([past_keys[i], k], 2), torch.cat([past_values[i], v], 2)
            keys.append(k)
            values.append(v)
            scores = (q @ k.transpose(2, 3)) * (1.0 / math.sqrt(head_dim))
            scores = scores.masked_fill(~visible, float("-inf")).softmax(-1)
            y = (scores @ v).transpose(1, 2).reshape(b, t, self.emb_dim)
            x = x + self.linear(y, f"h.{i}.attn.c_proj")
            h = nn.functional.gelu(self.linear(self.norm(x, f"h.{i}.ln_2"), f"h.{i}.mlp.c_fc"), approximate="tanh")
            x = x + self.linear(h, f"h.{i}.mlp.c_proj")
        logits = self.norm(x[:, -1:], "ln_f") @ self.w("head")
        return logits[:, 0], torch.stack(keys), torch.stack(values)

    def empty_past(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.n_layers, batch, self.n_heads, 0, self.emb_dim // self.n_heads)


def export_onnx(hf: nn.Module, path: Path) -> Path:
    """`ExportedGPT2` of `hf` as an ONNX file, with the batch, the new tokens and the past positions dynamic."""
    module = ExportedGPT2(hf).eval()
    ids = torch.zeros(1, 2, dtype=torch.long)
    past = torch.zeros(module.n_layers, 1, module.n_heads, 3, module.emb_dim // module.n_heads)
    past_axes = {1: "batch", 3: "past"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(module, (ids, past, past), str(path), dynamo=False, opset_version=17,
                          input_names=["input_ids", "past_keys", "past_values"],
                          output_names=["logits", "present_keys", "present_values"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "new"}, "past_keys": past_axes,
                                        "past_values": past_axes, "logits": {0: "batch"},
                                        "present_keys": {1: "batch", 3: "total"},
                                        "present_values": {1: "batch", 3: "total"}})
    return path


def quantize_for_onnxruntime(src: Path, dst: Path) -> Path:
    """ONNX Runtime's dynamic int8: the weights' MatMuls, int8 per output channel, activations quantized per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its advice to pre-process, logged on the root logger
    try:
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)
    return dst


def weight_only_int8(src: Path, dst: Path) -> Path:
    """A copy whose MatMul weights are int8 with one scale per output channel behind DequantizeLinear (symmetric,
    as `gpt.quantize`): the weight-only int8 that OpenVINO's CPU plugin runs compressed."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    replaced: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        name = node.input[1]
        if name not in replaced:
            w = numpy_helper.to_array(weights[name]).astype(np.float32)
            if w.ndim != 2:
                continue
            scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
            q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            graph.initializer.remove(weights[name])
            graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                      numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
                                      numpy_helper.from_array(np.zeros_like(scale, np.int8), f"{name}_zero")])
            graph.node.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                                               [f"{name}_dequantized"], axis=1))
            replaced[name] = f"{name}_dequantized"
        node.input[1] = replaced[name]
    nodes = list(graph.node)  # DequantizeLinear nodes were appended: put the graph back in topological order
    dequant = [n for n in nodes if n.op_type == "DequantizeLinear"]
    del graph.node[:]
    graph.node.extend(dequant + [n for n in nodes if n.op_type != "DequantizeLinear"])
    onnx.save(model, str(dst))
    return dst


# -- the engines --------------------------------------------------------------------------------------------

class Engine:
    """One engine in one precision: the last position's logits of a prompt, and greedy tokens after it."""

    name = "engine"

    def last_logits(self, ids: list[int]) -> np.ndarray:
        raise NotImplementedError

    def prefill(self, ids: list[int]) -> object:
        return self.last_logits(ids)

    def greedy(self, prompt: list[int], new_tokens: int) -> list[int]:
        raise NotImplementedError


class PastKVEngine(Engine):
    """An engine that runs the exported graph: one call per step, the keys and values passed back in."""

    def __init__(self, shape: tuple[int, int, int]):
        self.layers, self.heads, self.head_dim = shape

    def step(self, ids: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def empty(self) -> np.ndarray:
        return np.zeros((self.layers, 1, self.heads, 0, self.head_dim), np.float32)

    def last_logits(self, ids: list[int]) -> np.ndarray:
        return self.step(np.asarray([ids], np.int64), self.empty(), self.empty())[0][0]

    def greedy(self, prompt: list[int], new_tokens: int) -> list[int]:
        ids, keys, values = np.asarray([prompt], np.int64), self.empty(), self.empty()
        out: list[int] = []
        for _ in range(new_tokens):
            logits, keys, values = self.step(ids, keys, values)
            out.append(int(logits[0].argmax()))
            ids = np.asarray([[out[-1]]], np.int64)
        return out


class OnnxRuntimeEngine(PastKVEngine):
    name = "onnxruntime"

    def __init__(self, path: Path, shape: tuple[int, int, int], threads: int):
        import onnxruntime as ort

        super().__init__(shape)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def step(self, ids: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.session.run(None, {"input_ids": ids, "past_keys": keys, "past_values": values}))


class OpenVinoEngine(PastKVEngine):
    name = "openvino"

    def __init__(self, path: Path, shape: tuple[int, int, int], threads: int, precision: str):
        import openvino as ov

        super().__init__(shape)
        core = ov.Core()
        hint = "bf16" if precision == "bfloat16" else "f32"
        # int8: its CPU default, activations quantized per call in groups of 32 for the int8 weights' products
        self.config = {"INFERENCE_PRECISION_HINT": hint, "KV_CACHE_PRECISION": hint, "INFERENCE_NUM_THREADS": threads,
                       "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                       "DYNAMIC_QUANTIZATION_GROUP_SIZE": 32 if precision == "int8" else 0}
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", self.config)
        self.request = self.compiled.create_infer_request()

    def step(self, ids: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
        out = self.request.infer({"input_ids": ids, "past_keys": keys, "past_values": values}, share_outputs=False)
        return tuple(out[o] for o in self.compiled.outputs)


class CTranslate2Engine(Engine):
    name = "ctranslate2"

    def __init__(self, folder: Path, vocabulary: list[str], threads: int, precision: str):
        import ctranslate2

        compute = {"float32": "float32", "bfloat16": "bfloat16", "int8": "int8"}[precision]
        self.generator = ctranslate2.Generator(str(folder), device="cpu", compute_type=compute,
                                               intra_threads=threads, inter_threads=1)
        self.vocabulary = vocabulary

    def tokens(self, ids: list[int]) -> list[str]:
        return [self.vocabulary[i] for i in ids]

    def last_logits(self, ids: list[int]) -> np.ndarray:
        return np.asarray(self.generator.forward_batch([self.tokens(ids)]))[0, -1]

    def prefill(self, ids: list[int]) -> object:
        """The prompt's forward pass and the logits of its last position only (one generated token)."""
        return self.generator.generate_batch([self.tokens(ids)], max_length=1, sampling_topk=1,
                                             include_prompt_in_result=False)

    def greedy(self, prompt: list[int], new_tokens: int) -> list[int]:
        result = self.generator.generate_batch([self.tokens(prompt)], max_length=new_tokens, min_length=new_tokens,
                                               sampling_topk=1, include_prompt_in_result=False)
        return list(result[0].sequences_ids[0])


def gpt2_vocabulary(vocab_size: int) -> list[str]:
    """GPT-2's token strings (vocab.json's keys, in id order) rebuilt from the shipped ranks: each token's bytes
    through GPT-2's byte-to-character table; the first `vocab_size - 1` of them and `<|endoftext|>` last."""
    table = bytes_to_unicode()
    ranks = gpt2_tokenizer().ranks
    by_rank = sorted(ranks, key=ranks.__getitem__)
    return ["".join(table[b] for b in token) for token in by_rank[:vocab_size - 1]] + ["<|endoftext|>"]


class _Vocabulary:
    """What CTranslate2's GPT-2 loader reads of a transformers tokenizer."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.bos_token = self.eos_token = self.unk_token = tokens[-1]

    def get_vocab(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}


def convert_for_ctranslate2(hf: nn.Module, vocabulary: list[str], folder: Path) -> Path:
    """CTranslate2's Transformers converter on the model in memory (float32; int8 is chosen when loading)."""
    from ctranslate2.converters import TransformersConverter

    source = folder.parent / f"{folder.name}-source"
    hf.config.save_pretrained(source)  # the converter reads the config from a folder

    class InMemory(TransformersConverter):
        def load_model(self, model_class: Any, path: str, **kwargs: Any) -> nn.Module:
            return hf

        def load_tokenizer(self, tokenizer_class: Any, path: str, **kwargs: Any) -> _Vocabulary:
            return _Vocabulary(vocabulary)

    InMemory(str(source)).convert(str(folder), force=True)
    return folder


def bfloat16_note(engine: str) -> str | None:
    """Why an engine has no bfloat16 row on this CPU, or None when it has one."""
    if engine == "onnxruntime":
        return "ONNX Runtime has no bfloat16 CPU kernels for these ops"
    if engine == "ctranslate2":
        import ctranslate2

        if "bfloat16" not in ctranslate2.get_supported_compute_types("cpu"):
            return "CTranslate2 offers no bfloat16 compute type on this CPU"
    if engine == "openvino":
        import openvino as ov

        if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            return "OpenVINO's CPU plugin has no BF16 capability on this CPU"
    return None


@dataclass
class Exports:
    """What the benchmark exported once, from the float32 weights, for every precision."""

    onnx: Path | None = None
    onnx_int8_dynamic: Path | None = None
    onnx_int8_weights: Path | None = None
    ct2: Path | None = None
    vocabulary: list[str] = field(default_factory=list)


def export_all(hf: nn.Module, engines: list[str], folder: Path) -> Exports:
    exports = Exports()
    if {"onnxruntime", "openvino"} & set(engines):
        exports.onnx = export_onnx(hf, folder / "gpt2.onnx")
    if "onnxruntime" in engines:
        exports.onnx_int8_dynamic = quantize_for_onnxruntime(exports.onnx, folder / "gpt2-int8-dynamic.onnx")
    if "openvino" in engines:
        exports.onnx_int8_weights = weight_only_int8(exports.onnx, folder / "gpt2-int8-weights.onnx")
    if "ctranslate2" in engines:
        exports.vocabulary = gpt2_vocabulary(hf.config.vocab_size)
        exports.ct2 = convert_for_ctranslate2(hf, exports.vocabulary, folder / "ct2")
    return exports


def build_engine(engine: str, precision: str, exports: Exports, shape: tuple[int, int, int], threads: int
                 ) -> Engine:
    if engine == "onnxruntime":
        assert exports.onnx is not None and exports.onnx_int8_dynamic is not None
        return OnnxRuntimeEngine(exports.onnx_int8_dynamic if precision == "int8" else exports.onnx, shape, threads)
    if engine == "openvino":
        assert exports.onnx is not None and exports.onnx_int8_weights is not None
        return OpenVinoEngine(exports.onnx_int8_weights if precision == "int8" else exports.onnx, shape, threads,
                              precision)
    assert exports.ct2 is not None
    return CTranslate2Engine(exports.ct2, exports.vocabulary, threads, precision)


def ours_from(hf: nn.Module, cfg: GPTConfig, precision: str) -> GPTModel:
    """Our model with transformers' weights, in `precision` with its fast modules (as the app runs it)."""
    model = GPTModel(cfg).eval()
    model.load_state_dict(hub_to_ours({k: v.detach().float() for k, v in hf.state_dict().items()}), strict=True)
    if precision == "bfloat16":
        model = model.to(torch.bfloat16)
    return to_precision(model, precision)


# -- the run ------------------------------------------------------------------------------------------------

def prefill_flops(cfg: GPTConfig, n_tokens: int) -> float:
    """FLOPs of a prefill of `n_tokens` to the last position's logits: the blocks' products for every token,
    attention's scores and sums counted whole (T x T per head), the head for one token."""
    blocks = 2 * n_tokens * 12 * cfg.n_layers * cfg.emb_dim**2
    attention = 4 * cfg.n_layers * cfg.emb_dim * n_tokens**2
    return blocks + attention + 2 * cfg.emb_dim * cfg.vocab_size


@dataclass
class PeersResult:
    """The long table (one row per precision, workload and engine), the limits measured, and the notes."""

    rows: list[dict[str, Any]]
    notes: list[str]
    limits: dict[str, str]
    new_tokens: int


@contextmanager
def _workdir(workdir: str | Path | None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        yield Path(tmp)


def run_peers(model: str = "gpt2-small", precisions: list[str] | tuple[str, ...] = PRECISIONS,
              engines: list[str] | tuple[str, ...] = ENGINES, repeats: int = 3, prefill_len: int = 256,
              prompt_len: int = 32, new_tokens: int = 128, seed: int = 0, probe_bytes: int = 2 * 1024**3,
              workdir: str | Path | None = None, with_hf: bool = True, peaks: dict[str, float] | None = None
              ) -> PeersResult:
    """Ours, transformers and the engines present, in each precision, on the same weights and token ids, in turns.

    `peaks`: FLOP/s of each precision's matrix products (default: measured now, `matmul_peak`)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg = config_of(model)
    threads = torch.get_num_threads()
    notes: list[str] = []
    present = []
    for engine in engines:
        why = missing(engine)
        if why:
            notes.append(f"{engine}: skipped, {why}")
        else:
            present.append(engine)
    torch.manual_seed(seed)
    hf = hf_model(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    prefill_len = min(prefill_len, cfg.context_length)
    prefill_ids = torch.randint(0, cfg.vocab_size, (1, prefill_len), generator=gen)
    prompt = torch.randint(0, cfg.vocab_size, (1, prompt_len), generator=gen)
    prefill_list, prompt_list = prefill_ids[0].tolist(), prompt[0].tolist()
    greedy = SamplingConfig(max_new_tokens=new_tokens, temperature=0, stop_at_eot=False)
    hf_generate = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    shape = (cfg.n_layers, cfg.n_heads, cfg.emb_dim // cfg.n_heads)
    if peaks is None:
        peaks = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
        peaks["int8"] = peaks["float32"]  # PyTorch has no int8 product fast on every CPU: read against float32's
    rows: list[dict[str, Any]] = []
    limits: dict[str, str] = {}
    with _workdir(workdir) as folder, torch.inference_mode():
        reference = hf.generate(prompt, **hf_generate)[0, prompt_len:].tolist()
        exports = export_all(hf, present, folder)
        for precision in precisions:
            ours = ours_from(hf, cfg, precision)
            steps_of: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
                "ours": (lambda ours=ours: ours(prefill_ids, last_only=True),
                         lambda ours=ours: generate(ours, prompt_list, greedy))}
            greedy_of: dict[str, Callable[[], list[int]]] = {"ours": lambda ours=ours: generate(ours, prompt_list,
                                                                                              greedy)}
            if with_hf and precision != "int8":
                theirs = hf_in_precision(hf, precision)
                steps_of["transformers"] = (lambda t=theirs: t(prefill_ids, logits_to_keep=1),
                                            lambda t=theirs: t.generate(prompt, **hf_generate))
                greedy_of["transformers"] = lambda t=theirs: t.generate(prompt, **hf_generate)[0, prompt_len:].tolist()
            elif with_hf:
                notes.append("transformers int8: no row (GPT-2's Conv1D layers are not nn.Linear, so PyTorch's "
                             "dynamic quantization leaves them float)")
            for engine in present:
                why = bfloat16_note(engine) if precision == "bfloat16" else None
                if why:
                    notes.append(f"{engine} bfloat16: skipped, {why}")
                    continue
                e = build_engine(engine, precision, exports, shape, threads)
                steps_of[engine] = (lambda e=e: e.prefill(prefill_list), lambda e=e: e.greedy(prompt_list, new_tokens))
                greedy_of[engine] = lambda e=e: e.greedy(prompt_list, new_tokens)
            equal = {name: same_prefix(fn(), reference) for name, fn in greedy_of.items()}
            element = 2 if precision == "bfloat16" else 4
            weight_bytes = decode_bytes(ours)
            kv_bytes = kv_read_bytes(cfg, prompt_len, new_tokens, element)
            workloads = [(f"{PREFILL} 1x{prefill_len}", prefill_len, 0),
                         (f"{DECODE} {prompt_len}+{new_tokens}", new_tokens, 1)]
            for workload, n_tokens, which in workloads:
                steps = {name: pair[which] for name, pair in steps_of.items()}
                if which == 1:
                    steps[MEMORY_READ] = memory_read(probe_bytes)
                seconds = interleaved_median_seconds(steps, repeats)
                if MEMORY_READ in seconds:
                    bandwidth = probe_bytes / seconds.pop(MEMORY_READ)
                    limit = bandwidth / (weight_bytes + kv_bytes)
                    limits[precision] = (f"{precision}: a decode step reads {weight_bytes / 1e6:,.1f} MB of weights + "
                                         f"{kv_bytes / 1e6:,.1f} MB of KV cache; {bandwidth / 1e9:.1f} GB/s allows "
                                         f"{limit:.1f} tokens/s; matrix-product peak "
                                         f"{peaks[precision] / 1e9:.0f} GFLOP/s"
                                         + (" (float32's)" if precision == "int8" else ""))
                speed = throughput_row(workload, n_tokens, seconds)
                for name in steps_of:
                    tokens_s = float(speed[name])
                    if which == 1:
                        share = tokens_s / limit
                    else:
                        share = prefill_flops(cfg, n_tokens) * tokens_s / n_tokens / peaks[precision]
                    rows.append({"precision": precision, "workload": workload, "engine": name,
                                 "tokens_s": tokens_s, "ours_over": float(speed["ours"]) / tokens_s,
                                 "share": share, "greedy_equal": equal[name]})
            del ours, steps_of, greedy_of
    return PeersResult(rows, notes, limits, new_tokens)


def format_peers(result: PeersResult, title: str) -> str:
    """The long table: one line per precision, workload and engine."""
    head = ["precision", "workload", "engine", "tokens/s", "ours / engine", "share of limit",
            f"greedy = transformers float32 (of {result.new_tokens})"]
    lines = [title, "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result.rows:
        kind = "bandwidth" if str(r["workload"]).startswith(DECODE) else "peak"
        lines.append(f"| {r['precision']} | {r['workload']} | {r['engine']} | {r['tokens_s']:,.1f} | "
                     f"{r['ours_over']:.2f}x | {100 * r['share']:.0f}% of {kind} | {r['greedy_equal']} |")
    return "\n".join([*lines, *result.limits.values(), *result.notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "--preset", default="gpt2-small", help="a GPT-2 preset or checkpoint folder")
    parser.add_argument("--dtype", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prefill-len", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--no-hf", action="store_true", help="leave transformers out (its greedy float32 tokens "
                        "stay the reference)")
    args = parser.parse_args(argv)
    result = run_peers(args.model, args.dtype, args.engines, args.repeats, args.prefill_len, args.prompt_len,
                       args.new_tokens, with_hf=not args.no_hf)
    title = (f"{args.model} shape, random weights, {torch.get_num_threads()} threads, median of {args.repeats} "
             f"rounds in turns")
    print(format_peers(result, title), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
