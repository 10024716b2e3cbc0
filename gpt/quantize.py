"""int8 weights: every linear layer's weight as int8 with float scales; embeddings and norms stay float.

A weight row w (one output channel) is stored as round(w / s) in [-127, 127] with s = max|w| / 127,
so each weight is off by at most s / 2. With `group_size` g, every g consecutive inputs of a row get
their own scale: an outlier then costs precision only in its group. Decoding reads each weight once
per token, so a quarter of the bytes is up to four times the speed where memory is the limit.

Three ways to multiply, the fastest measured once per process for decoding (one row) and for
prefill (many rows), never assumed (`GPT_INT8_KERNEL=pack|dynamic|dequant` forces one):
- `pack`: PyTorch's int8 weight kernel (`aten._weight_int8pack_mm`, per-channel scales), the
  activations in bfloat16;
- `dynamic`: int8 weights times int8 activations (`quantized::linear_dynamic`, fbgemm), each call's
  activations rounded to 7 bits with one scale: what transformers' and ONNX Runtime's dynamic int8
  run, several times faster than `pack` on a CPU without bfloat16 instructions, with about four times
  its logit error and a second (packed) copy of the int8 weights in memory;
- `dequant`: the float32 weight rebuilt for each call.
int8 is its own precision: its outputs differ from float32 by the rounding of the weights (reported
per layer by `quantize_model`) and of the activations the kernel rounds.

The `pack` kernel reads 16 inputs at a time with aligned vector loads and checks neither: a layer whose
input width is not a multiple of 16, or a misaligned tensor, would read garbage or crash the
process, so such layers dequantize instead.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from gpt.kernels import FEW_ROWS, accelerate, median_seconds_in_turns
from gpt.model import GPTModel

KERNELS = ("pack", "dynamic", "dequant")
KERNEL_ENV = "GPT_INT8_KERNEL"
PRECISIONS = ("float32", "bfloat16", "int8")  # what a loaded model can be run in
PACK_WIDTH = 16  # the int8 kernel's step over the inputs: layers it may run must have a multiple of it
ALIGNMENT = 64  # bytes; what PyTorch's CPU allocator gives every tensor, and more than the kernel's loads need


class QuantizedLinear(nn.Module):
    """y = x W^T + b with W held as int8 rows times float scales (per row, or per group of inputs)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int | None = None):
        super().__init__()
        if group_size is not None and (group_size < 1 or in_features % group_size):
            raise ValueError(f"group size {group_size} must divide the layer's {in_features} inputs")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        n_groups = 1 if group_size is None else in_features // group_size
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, n_groups))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int | None = None) -> QuantizedLinear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size)
        w = linear.weight.detach().float()
        groups = w.reshape(w.shape[0], layer.scales.shape[1], -1)  # (out, groups, inputs per group)
        scales = (groups.abs().amax(-1) / 127).clamp(min=1e-12)
        layer.weight_int8.copy_((groups / scales[..., None]).round().clamp(-127, 127).reshape_as(w).to(torch.int8))
        layer.scales.copy_(scales)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def dequantize(self) -> torch.Tensor:
        """The float32 weight these int8 values and scales stand for, (out, in)."""
        w = self.weight_int8.float().reshape(self.out_features, self.scales.shape[1], -1)
        return (w * self.scales.float()[..., None]).reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2d = x.reshape(-1, self.in_features)
        kernel = int8_kernel(x.device.type, x2d.shape[0])
        if kernel == "dynamic" and self.group_size is None:
            y = torch.ops.quantized.linear_dynamic(x2d.float().contiguous(), self._dynamic_weight(), reduce_range=True)
            y = y.to(x.dtype)
        elif kernel == "pack" and self._packable():
            xb = x2d.to(torch.bfloat16).contiguous()
            if xb.data_ptr() % ALIGNMENT:  # a view into a larger tensor: copy it to an aligned start
                xb = xb.clone()
            scales = self.scales[:, 0].to(torch.bfloat16)
            y = torch.ops.aten._weight_int8pack_mm(xb, self.weight_int8, scales).to(x.dtype)
            y = y if self.bias is None else y + self.bias.to(x.dtype)
        else:
            y = F.linear(x2d, self.dequantize().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        return y.reshape(*x.shape[:-1], self.out_features)

    def _dynamic_weight(self) -> torch.ScriptObject:
        """The weight in the layout of PyTorch's int8 x int8 product (fbgemm), made on first use and again after
        a load, a move or a change in place. The product quantizes each call's activations to 7 bits with one
        scale (`reduce_range`: the 8-bit products' int16 sums cannot saturate)."""
        key = tuple((t.data_ptr(), -1 if t.is_inference() else t._version)  # inference tensors keep no version
                    for t in (self.weight_int8, self.scales, self.bias) if t is not None)
        if self.__dict__.get("_dynamic_key") != key:
            with warnings.catch_warnings():  # PyTorch marks quantized tensors deprecated; this kernel still reads one
                warnings.simplefilter("ignore", UserWarning)
                weight = torch._make_per_channel_quantized_tensor(
                    self.weight_int8, self.scales[:, 0].double(), torch.zeros(self.out_features, dtype=torch.long), 0)
            bias = None if self.bias is None else self.bias.float()
            self.__dict__["_dynamic"] = torch.ops.quantized.linear_prepack(weight, bias)
            self.__dict__["_dynamic_key"] = key
        return self.__dict__["_dynamic"]

    def _load_from_state_dict(self, *args: object, **kwargs: object) -> None:
        self.__dict__.pop("_dynamic_key", None)  # loading fills the buffers in place: pack them again
        super()._load_from_state_dict(*args, **kwargs)

    def _packable(self) -> bool:
        """Whether the int8 kernel can run this layer: one scale per row, a width and a weight it reads safely."""
        return (self.group_size is None and self.in_features % PACK_WIDTH == 0
                and self.weight_int8.data_ptr() % ALIGNMENT == 0)

    def extra_repr(self) -> str:
        groups = "per output channel" if self.group_size is None else f"groups of {self.group_size}"
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 {groups}"



@cache
def _measured_kernel(few_rows: bool, threads: int) -> str:
    """The fastest of the int8 kernels and dequantize-then-multiply on a GPT-2-small layer, for one row
    (decoding) or 256 (prefill): a CPU without vector code for a kernel can win one and lose the other by far.

    Another than `pack` must win clearly (by 10%) to be chosen: on a shared machine a near tie would otherwise
    flip from one process to the next, and with it the rounding of the outputs.
    """
    with torch.random.fork_rng(devices=[]):  # random operands; the global RNG (training's) is left as it was
        layer = QuantizedLinear.from_linear(nn.Linear(768, 3072))
        x = torch.randn(1 if few_rows else 256, 768)
    xb, scales = x.to(torch.bfloat16), layer.scales[:, 0].to(torch.bfloat16)
    candidates = {"pack": lambda: torch.ops.aten._weight_int8pack_mm(xb, layer.weight_int8, scales),
                  "dynamic": lambda: torch.ops.quantized.linear_dynamic(x, layer._dynamic_weight(), reduce_range=True),
                  "dequant": lambda: F.linear(x, layer.dequantize())}
    calls = 20 if few_rows else 1  # a one-row product is too short to time alone on a busy machine
    steps = {}
    for name, step in candidates.items():
        try:
            step()
        except (RuntimeError, AttributeError, NotImplementedError):  # a build or CPU without this kernel
            continue
        steps[name] = lambda step=step: [step() for _ in range(calls)]
    seconds = median_seconds_in_turns(steps)
    handicap = {name: 1.0 if name == "pack" else 1 / 0.9 for name in seconds}
    return min(seconds, key=lambda name: seconds[name] * handicap[name])


def int8_kernel(device_type: str = "cpu", rows: int = 1) -> str:
    """`pack`, `dynamic` or `dequant` for products of `rows` rows: forced by GPT_INT8_KERNEL, else measured
    once (CPU only; other devices dequantize)."""
    forced = os.environ.get(KERNEL_ENV, "").strip().lower()
    if forced and forced not in KERNELS:
        raise ValueError(f"{KERNEL_ENV} must be one of {', '.join(KERNELS)}, got {forced!r}")
    if device_type != "cpu":
        return "dequant"
    return forced or _measured_kernel(rows <= FEW_ROWS, torch.get_num_threads())


# -- a whole model -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerError:
    """What rounding did to one layer's weight."""

    name: str
    shape: tuple[int, int]
    relative_error: float  # ||W - deq(W)|| / ||W||
    max_abs_error: float


def linear_layers(model: GPTModel) -> list[tuple[str, nn.Module, str]]:
    """(name, parent module, attribute) of every linear layer int8 applies to: the blocks' and the output head."""
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear | QuantizedLinear) and (name.startswith("trf_blocks.") or
                                                                     name == "out_head")]
    return [(name, model.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2]) for name, _ in found]


def quantize_model(model: GPTModel, group_size: int | None = None) -> list[LayerError]:
    """Replace every linear layer of the blocks and the head with int8, in place; the rounding error per layer.

    A head tied to the token embedding gets its own int8 copy: the embedding stays float for the lookups.
    """
    errors = []
    for name, parent, attr in linear_layers(model):
        linear = getattr(parent, attr)
        if isinstance(linear, QuantizedLinear):
            raise ValueError(f"{name} is already int8")
        layer = QuantizedLinear.from_linear(linear, group_size).to(linear.weight.device)
        w = linear.weight.detach().float()
        diff = w - layer.dequantize()
        errors.append(LayerError(name, tuple(w.shape), (diff.norm() / w.norm().clamp(min=1e-12)).item(),
                                 diff.abs().max().item()))
        setattr(parent, attr, layer)
    model.float()  # embeddings, norms and scales in float32: the int8 product casts what it needs
    return errors


def quantized_skeleton(model: GPTModel, group_size: int | None) -> GPTModel:
    """Swap the linear layers for empty int8 ones (to be filled from a file): no float weight is kept."""
    for _, parent, attr in linear_layers(model):
        linear = getattr(parent, attr)
        setattr(parent, attr, QuantizedLinear(linear.in_features, linear.out_features, linear.bias is not None,
                                              group_size))
    return model


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, QuantizedLinear) for m in model.modules())


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and saved buffer, a tied tensor counted once: what a decode step reads, roughly."""
    tensors = {t.data_ptr(): t for t in model.state_dict(keep_vars=True).values()}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def format_errors(errors: list[LayerError]) -> str:
    lines = ["| layer | shape | relative error | max abs error |", "|---|---|---|---|"]
    lines += [f"| {e.name} | {e.shape[0]}x{e.shape[1]} | {e.relative_error:.4f} | {e.max_abs_error:.2e} |"
              for e in errors]
    return "\n".join(lines)


def to_precision(model: GPTModel, precision: str, group_size: int | None = None) -> GPTModel:
    """The model in `precision` (float32, bfloat16 or int8) with its fast modules (`gpt.kernels.accelerate`),
    changed in place: the one path the CLI and app use."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8":
        if not is_quantized(model):
            quantize_model(model, group_size)
        return accelerate(model).eval()
    if is_quantized(model):
        raise ValueError("an int8 model has no float weights to go back to: load the float checkpoint instead")
    return accelerate(model).to(torch.bfloat16 if precision == "bfloat16" else torch.float32).eval()
