"""Model configuration: one frozen dataclass and its named presets."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

from gpt.precision import bytes_per_element

C = TypeVar("C")


def option(default: Any, help: str, *, low: float | None = None, high: float | None = None,
           choices: tuple | None = None, **metadata: Any) -> Field:
    """A config field with its help text and, where it has them, its bounds (`low` <= value <= `high`) or choices.

    This is the one place a limit is written: the command line builds its flags from it
    (`gpt.cli.options`), the app its sliders, and `check_options` validates every value against it.
    """
    bounds = {k: v for k, v in (("low", low), ("high", high), ("choices", choices)) if v is not None}
    return field(default=default, metadata={"help": help, **bounds, **metadata})


def field_of(config_cls: type, name: str) -> Field:
    """The dataclass field `name` of `config_cls`, with its option metadata."""
    try:
        return next(f for f in fields(config_cls) if f.name == name)
    except StopIteration:
        raise ValueError(f"{config_cls.__name__} has no field {name!r}") from None


def bounds(config_cls: type, name: str) -> tuple[float | None, float | None]:
    """(low, high) of a field, None where it is open."""
    meta = field_of(config_cls, name).metadata
    return meta.get("low"), meta.get("high")


def choices(config_cls: type, name: str) -> tuple:
    return tuple(field_of(config_cls, name).metadata.get("choices", ()))


def shown(number: float) -> str:
    """A bound or value as a person reads it: 2147483647 whole, 1e-06 short, a number of 401 digits by its length."""
    if isinstance(number, int) and not isinstance(number, bool) and abs(number) >= 10**30:
        return f"an integer of {len(str(abs(number))) if abs(number) < 10**4000 else 'thousands of'} digits"
    return f"{number:g}" if isinstance(number, float) else str(number)


def check_option(config_cls: type, name: str, value: Any, label: str | None = None) -> Any:
    """`value` if it is within the field's bounds or among its choices; ValueError naming the field otherwise.

    None passes where the field's type admits it (`int | None`: an optional setting left unset, or 'all').
    """
    f = field_of(config_cls, name)
    label = label or name
    hint = type_hints(config_cls)[name]
    if value is None and type(None) in typing.get_args(hint):
        return value
    if hint is bool:  # a switch is true or false; 0, 1 or "yes" would slip past every check
        return typed_value(bool, value, label)
    if "choices" in f.metadata:
        if value not in f.metadata["choices"]:
            raise ValueError(f"{label} must be one of {', '.join(map(str, f.metadata['choices']))}, got {value!r}")
        return value
    low, high = f.metadata.get("low"), f.metadata.get("high")
    if low is None and high is None:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN != NaN
        raise ValueError(f"{label} must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"between {shown(low)} and {shown(high)}" if low is not None and high is not None else (
            f"at least {shown(low)}" if low is not None else f"at most {shown(high)}")
        raise ValueError(f"{label} must be {span}, got {shown(value)}")
    return value


@functools.cache
def type_hints(config_cls: type) -> dict[str, Any]:
    """The fields' types, resolved once per class (the annotations are strings under `from __future__`)."""
    return typing.get_type_hints(config_cls)


def _said(value: Any) -> str:
    """A value as an error message shows it: short, even for a number of hundreds of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return shown(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def typed_value(hint: Any, value: Any, label: str) -> Any:
    """`value` if it has the type `hint` names (an int where a float belongs becomes that float); a one-line
    ValueError naming `label` otherwise.

    JSON has one kind of number and no check of its own: `"n_layers": 5.0` or `"qkv_bias": "yes"` from a file
    would otherwise pass the bounds and fail deep inside the model, or be taken for true.
    """
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return typed_value(inner[0], value, label) if len(inner) == 1 else value  # no config has such a field
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{label} must be true or false, got {_said(value)}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{label} must be an integer, got {_said(value)}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{label} must be a number, got {_said(value)}")
        if isinstance(value, int) and abs(value) > 2**1023 or not math.isfinite(value):
            raise ValueError(f"{label} must be a finite number, got {_said(value)}")
        return float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{label} must be a string, got {_said(value)}")
    elif typing.get_origin(hint) is tuple:
        return _typed_tuple(typing.get_args(hint), value, label)
    elif dataclasses.is_dataclass(hint):
        return hint.from_dict(value) if hasattr(hint, "from_dict") else config_from_dict(hint, value)
    return value  # a type no config field has yet: left to the class's own checks


def _typed_tuple(args: tuple, value: Any, label: str) -> tuple:
    """A JSON list as the tuple a field holds: `tuple[float, float]` (two numbers) or `tuple[str, ...]`."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{label} must be a list, got {_said(value)}")
    kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
    if len(kinds) != len(value):
        raise ValueError(f"{label} must be a list of {len(kinds)}, got {_said(value)}")
    return tuple(typed_value(kind, item, f"{label}[{i}]") for i, (kind, item) in enumerate(zip(kinds, value,
                                                                                                  strict=True)))


def config_from_dict(config_cls: type[C], data: Any, ignore_unknown: bool = False) -> C:
    """A config dataclass from data read from a file (JSON), every value checked against its field's type first.

    The one `from_dict` of every config: a file is held to the types exactly (one line naming the field), while
    Python callers build configs directly and only the bounds of `check_options` apply. Fields missing from the
    data take their defaults (files written before a field existed); unknown ones are refused, or skipped with
    `ignore_unknown` where a record may come from a newer version.
    """
    name = config_cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{name} must be a JSON object, got {_said(data)}")
    known = {f.name: f for f in fields(config_cls)}
    unknown = sorted(map(str, set(data) - set(known)))
    if unknown and not ignore_unknown:
        raise ValueError(f"unknown {name} fields: {unknown}")
    for key, f in known.items():
        if key not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{name}.{key} is missing")
    hints = type_hints(config_cls)
    return config_cls(**{key: typed_value(hints[key], value, f"{name}.{key}")
                         for key, value in data.items() if key in known})


def check_options(config: Any) -> None:
    """Validate every bounded field and every switch of a config dataclass instance (for its `__post_init__`)."""
    for f in fields(config):
        check_option(type(config), f.name, getattr(config, f.name), f"{type(config).__name__}.{f.name}")


POSITIONS = ("learned", "sinusoidal", "rotary")  # how a token's position reaches attention
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")


@dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters of a decoder: GPT-2's by default (the book's GPT_CONFIG_124M, as a type), with the
    switches that turn it, piece by piece, into the decoders of today's open models (Llama, Qwen3).

    Each switch changes one part of `gpt/model.py` or `gpt/attention.py`; a config saved before the
    switches existed has none of them and loads as GPT-2.
    """

    vocab_size: int = option(50257, "tokens the embedding and output head have rows for (GPT-2 50,257, Llama 3 "
                             "128,256, Qwen3 151,936)", low=1, high=262144)
    context_length: int = option(1024, "the most tokens the model reads at once (the KV cache is allocated for all "
                                 "of them)", low=8, high=131072)
    emb_dim: int = option(768, "width of the residual stream", low=8, high=8192)
    n_heads: int = option(12, "attention (query) heads per layer (emb_dim must divide by it unless head_width is set)",
                          low=1, high=128)
    n_layers: int = option(12, "transformer blocks", low=1, high=128)
    drop_rate: float = option(0.0, "dropout on embeddings, attention weights and residual branches", low=0.0, high=0.5)
    qkv_bias: bool = option(True, "biases on the query/key/value projection (OpenAI's GPT-2 and Qwen2 have them)")
    tie_weights: bool = option(True, "share the token embedding with the output head (GPT-2 does; Llama 3 8B does not)")
    positions: str = option("learned", "learned: a trained position embedding (GPT-2); sinusoidal: the fixed "
                            "sin/cos encoding of 'Attention is all you need'; rotary (RoPE): queries and keys turned "
                            "by an angle that grows with their position, so attention sees offsets (Llama, Qwen)",
                            choices=POSITIONS)
    rope_base: float = option(10000.0, "rotary positions: the base of the angles' frequencies (Llama 3 500000, "
                              "Qwen3 1000000); larger turns slower, for longer contexts", low=2.0, high=1e9)
    norm: str = option("layernorm", "layernorm: subtract the mean, divide by the spread, scale and shift (GPT-2); "
                       "rmsnorm: divide by the root mean square and scale, cheaper and as good (Llama, Qwen)",
                       choices=NORMS)
    mlp: str = option("gelu", "gelu: expand, GELU, project back (GPT-2); swiglu: a SiLU gate multiplies a second "
                      "expansion (Llama, Qwen)", choices=MLPS)
    mlp_hidden: int | None = option(None, "the MLP's hidden width; none: 4 x emb_dim for gelu, about 8/3 x emb_dim "
                                    "(a multiple of 16) for swiglu, the same parameters", low=1, high=65536)
    n_kv_heads: int | None = option(None, "key/value heads: none or n_heads is multi-head attention, fewer is "
                                    "grouped-query (each serves n_heads / n_kv_heads query heads), 1 multi-query; "
                                    "fewer shrink the KV cache", low=1, high=128)
    qk_norm: bool = option(False, "RMS-normalise each head's queries and keys before their product (Qwen3, OLMo 2): "
                           "keeps attention logits from growing")
    bias: bool = option(True, "biases on the attention output, the MLP and LayerNorm (GPT-2); off in Llama and Qwen")
    head_width: int | None = option(None, "numbers per attention head; none: emb_dim / n_heads. Qwen3-0.6B's 16 heads "
                                    "are 128 wide on a 1024-wide stream: attention then works in a wider space than "
                                    "the residual stream and out_proj brings it back", low=2, high=1024)
    norm_eps: float | None = option(None, "the small number every norm adds before dividing, so that a zero vector "
                                    "does not divide by zero; none: 1e-5 for LayerNorm, 1e-6 for RMSNorm (Llama "
                                    "and SmolLM2 use 1e-5, Qwen3 1e-6)", low=1e-12, high=0.1)
    rope_scaling: float | None = option(None, "rotary positions: Llama 3.1's stretch of long contexts; the slowest "
                                        "frequencies turn this many times slower (8 in Llama 3.1, 32 in 3.2), the "
                                        "fastest are kept, those between are blended; none: no stretch",
                                        low=1.0, high=1024.0)
    rope_low_freq_factor: float = option(1.0, "rope_scaling: wavelengths longer than rope_original_context / this "
                                         "are stretched in full", low=0.01, high=1024.0)
    rope_high_freq_factor: float = option(4.0, "rope_scaling: wavelengths shorter than rope_original_context / this "
                                          "are kept as they are", low=0.01, high=1024.0)
    rope_original_context: int = option(8192, "rope_scaling: the context the model was first trained on (Llama 3's "
                                        "8,192)", low=1, high=1048576)

    def __post_init__(self) -> None:
        check_options(self)  # bounds, choices, and booleans that are booleans
        if self.head_width is None and self.emb_dim % self.n_heads:
            raise ValueError(f"emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.kv_heads})")
        if self.positions == "rotary" and self.head_dim % 2:
            width = (f"head_width ({self.head_width})" if self.head_width is not None else
                     f"emb_dim / n_heads ({self.emb_dim} / {self.n_heads} = {self.head_dim})")
            raise ValueError(f"rotary positions turn pairs of numbers: the head width {width} must be even")
        if self.rope_scaling is not None and self.positions != "rotary":
            raise ValueError(f"rope_scaling stretches rotary positions: it needs positions 'rotary', "
                             f"not {self.positions!r}")
        if self.rope_scaling is not None and self.rope_high_freq_factor <= self.rope_low_freq_factor:
            raise ValueError(f"rope_high_freq_factor ({self.rope_high_freq_factor:g}) must be larger than "
                             f"rope_low_freq_factor ({self.rope_low_freq_factor:g})")

    @property
    def head_dim(self) -> int:
        """Numbers per attention head: `head_width`, or the stream's width shared out among the heads."""
        return self.head_width if self.head_width is not None else self.emb_dim // self.n_heads

    @property
    def q_dim(self) -> int:
        """Width of all the heads' queries side by side (and of what out_proj reads): emb_dim unless head_width
        makes the heads wider or narrower."""
        return self.n_heads * self.head_dim

    def eps_for(self, norm: str) -> float:
        """What a norm of kind `norm` adds under its root: `norm_eps`, or that kind's default (QK-norm is an
        RMSNorm whatever the blocks' norm)."""
        if self.norm_eps is not None:
            return self.norm_eps
        return 1e-6 if norm == "rmsnorm" else 1e-5

    @property
    def kv_heads(self) -> int:
        """Key/value heads per layer: `n_kv_heads`, or one per query head."""
        return self.n_kv_heads or self.n_heads

    @property
    def kv_dim(self) -> int:
        """Width of one position's keys (and again of its values): what the KV cache keeps per layer."""
        return self.kv_heads * self.head_dim

    @property
    def hidden_dim(self) -> int:
        """The MLP's hidden width. SwiGLU has three matrices to GELU's two: 8/3 of the width keeps the count."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return 4 * self.emb_dim if self.mlp == "gelu" else -(-8 * self.emb_dim // 3 // 16) * 16

    @property
    def position_table_size(self) -> int:
        """Elements of the position table: (context_length, emb_dim) weights if learned, a buffer if sinusoidal,
        and the (context_length, head_dim) cosines and sines of rotary positions."""
        width = self.head_dim if self.positions == "rotary" else self.emb_dim
        return self.context_length * width

    def n_params(self, include_output_head: bool = True) -> int:
        """Exact parameter count of `GPTModel(self)` without building it."""
        d, v, layers, h = self.emb_dim, self.vocab_size, self.n_layers, self.hidden_dim
        qkv_out = self.q_dim + 2 * self.kv_dim
        attn = d * qkv_out + (qkv_out if self.qkv_bias else 0) + self.q_dim * d + (d if self.bias else 0)
        attn += 2 * self.head_dim if self.qk_norm else 0
        expand = h if self.mlp == "gelu" else 2 * h  # swiglu: the gate and the up projection, fused
        mlp = d * expand + h * d + ((expand + d) if self.bias else 0)
        norm = d * (2 if self.norm == "layernorm" and self.bias else 1)
        emb = v * d + (self.position_table_size if self.positions == "learned" else 0)
        head = 0 if (self.tie_weights or not include_output_head) else v * d
        return emb + layers * (attn + mlp + 2 * norm) + norm + head

    def n_elements(self) -> int:
        """Every number `GPTModel(self)` holds: its parameters and, for fixed positions, their tables.

        A sinusoidal or rotary table is a buffer, not a parameter, yet it takes memory all the same.
        """
        return self.n_params() + (0 if self.positions == "learned" else self.position_table_size)

    def memory_bytes(self, dtype: str = "float32", batch_size: int = 1) -> int:
        """The model's tensors plus a full-context KV cache: a lower bound on what inference needs."""
        width = bytes_per_element(dtype)
        kv_cache = 2 * self.n_layers * batch_size * self.context_length * self.kv_dim * width
        return self.n_elements() * width + kv_cache

    def training_memory_bytes(self, batch_size: int) -> int:
        """An estimate of what training takes: 16 bytes a parameter plus the activations backward keeps.

        Weights, gradients and AdamW's two moments are four float32 copies of the parameters. The
        activations: per layer and token about 8 floats per width unit (attention inputs, norms,
        residuals; two of them as wide as the heads' queries), 2 per hidden unit of the MLP, and the attention
        weights; plus the logits and their gradient.
        """
        tokens = batch_size * self.context_length
        width = 6 * self.emb_dim + 2 * self.q_dim
        per_layer = tokens * (width + 2 * self.hidden_dim + 2 * self.n_heads * self.context_length)
        return 16 * self.n_params() + 4 * (self.n_layers * per_layer + 2 * tokens * self.vocab_size)

    def architecture(self) -> str:
        """The switches in which this config differs from GPT-2, as a card names them: "RMSNorm · rotary
        positions · SwiGLU · 4 KV heads · QK-norm · no biases"; empty when it differs in none.

        The shape (layers, heads, width) is said elsewhere: this names only what a reader of the book would not expect.
        """
        parts = []
        if self.norm == "rmsnorm":
            parts.append("RMSNorm")
        if self.norm_eps is not None:
            parts.append(f"norm eps {self.norm_eps:g}")
        if self.positions != "learned":
            turned = self.positions == "rotary" and self.rope_base != GPTConfig.rope_base
            base = f" (base {self.rope_base:,.0f})" if turned and self.rope_base.is_integer() else (
                f" (base {self.rope_base:g})" if turned else "")
            parts.append(f"{self.positions} positions{base}")
        if self.rope_scaling is not None:
            parts.append(f"Llama 3 RoPE scaling x{self.rope_scaling:g}")
        if self.mlp == "swiglu":
            parts.append("SwiGLU")
        if self.mlp_hidden is not None:
            parts.append(f"MLP {self.mlp_hidden} wide")
        if self.head_width is not None:
            parts.append(f"heads {self.head_width} wide")
        if self.kv_heads < self.n_heads:
            parts.append("1 KV head (multi-query)" if self.kv_heads == 1 else f"{self.kv_heads} KV heads")
        if self.qk_norm:
            parts.append("QK-norm")
        if not self.bias:
            parts.append("no biases" if not self.qkv_bias else "biases on QKV only")
        elif not self.qkv_bias:
            parts.append("no QKV bias")
        if not self.tie_weights:
            parts.append("untied output head")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        """A config read from a file: each value of its field's type (`config_from_dict`), no unknown field."""
        return config_from_dict(cls, data)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """A named preset (see `PRESETS`), optionally with some fields changed."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}") from None
        return replace(base, **overrides)


PRESETS: dict[str, GPTConfig] = {
    # OpenAI's GPT-2 family (the book's chapter 5 sizes).
    "gpt2-small": GPTConfig(emb_dim=768, n_layers=12, n_heads=12),  # 124M
    "gpt2-medium": GPTConfig(emb_dim=1024, n_layers=24, n_heads=16),  # 355M
    "gpt2-large": GPTConfig(emb_dim=1280, n_layers=36, n_heads=20),  # 774M
    "gpt2-xl": GPTConfig(emb_dim=1600, n_layers=48, n_heads=25),  # 1558M
    # Small models trained here, on a 4,096-token BPE, that ship with the app.
    "shipped-small": GPTConfig(
        vocab_size=4096, context_length=256, emb_dim=256, n_layers=5, n_heads=8, drop_rate=0.1
    ),
    # 0.9M parameters on a 1,024-token BPE: word-like text after about two minutes on two CPU cores
    # (the Train tab's default).
    "classroom": GPTConfig(vocab_size=1024, context_length=128, emb_dim=128, n_layers=4, n_heads=4),
    # A few hundred thousand parameters: for tests and quick experiments.
    "tiny": GPTConfig(vocab_size=512, context_length=64, emb_dim=64, n_layers=2, n_heads=4),
}
# Today's open decoders (Llama 3, Qwen3) differ from GPT-2 by these switches, all on: `-modern` presets
# are the small presets so changed, with half as many key/value heads as query heads.
MODERN = {"positions": "rotary", "norm": "rmsnorm", "mlp": "swiglu", "qk_norm": True, "qkv_bias": False,
          "bias": False}
PRESETS |= {f"{name}-modern": replace(PRESETS[name], **MODERN, n_kv_heads=PRESETS[name].n_heads // 2)
            for name in ("shipped-small", "classroom", "tiny")}
GPT2_SIZES = tuple(name for name in PRESETS if name.startswith("gpt2-"))  # OpenAI publishes weights for these
