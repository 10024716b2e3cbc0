"""The requests the Generate tab and its views share: the page's settings, checked, with the model and the prompt.

The tab and each view (`beams_view`, `kv_cache_view`) build their requests here, so a view never
imports the tab it sits in. A chat model reads the prompt inside its chat prompt when the page's
`wrap` is on (`ui.inside.model_text`); the request keeps the text it read.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpt.checkpoint import Checkpoint
from gpt.generate import SamplingConfig
from ui.common import check_number, clip_chars, fit_context, require_text
from ui.inside import model_text
from ui.registry import ModelRegistry

MAX_TEMPERATURE = 5.0
MAX_TOP_K = 1_000
MAX_NEW_TOKENS = 512
MAX_SEED = 2**31 - 1
MAX_BEAMS = 8
MAX_BEAM_TOKENS = 128  # each step runs every beam: bounded so one request stays short


@dataclass(frozen=True)
class Settings:
    """The sampling settings as the page sends them: unchecked numbers, so that `sampling` can say what is wrong;
    and whether a chat model reads the prompt inside its chat prompt (off for API callers that never say)."""

    temperature: float
    top_k: float
    top_p: float
    max_new_tokens: float
    seed: float
    wrap: bool = False

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(
            max_new_tokens=check_number(self.max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True),
            temperature=check_number(self.temperature, "Temperature", 0, MAX_TEMPERATURE),
            top_k=check_number(self.top_k, "Top-k", 0, MAX_TOP_K, integer=True) or None,
            top_p=check_number(self.top_p, "Top-p", 0.01, 1),
            seed=check_number(self.seed, "Seed", 0, MAX_SEED, integer=True),
        )


GREEDY_STEP = Settings(temperature=0, top_k=0, top_p=1, max_new_tokens=1, seed=0)  # for views that only read the prompt


@dataclass(frozen=True)
class Request:
    """A checked prompt and sampling settings, ready for the model."""

    ckpt: Checkpoint
    prompt: str  # what the model reads: the prompt (cut to 100k characters), or a chat prompt around it
    wrapped: bool
    ids: list[int]
    sampling: SamplingConfig
    notices: tuple[str, ...]  # what was cut, or read bare by a chat model, for the user


@dataclass(frozen=True)
class BeamRequest:
    """A checked prompt for beam search: its ids are cut so that `new_tokens` more fit the model's window."""

    ckpt: Checkpoint
    ids: list[int]
    n_beams: int
    new_tokens: int
    notices: tuple[str, ...]


def make_request(registry: ModelRegistry, model_name: str, prompt: str, settings: Settings) -> Request:
    """The prompt (in a chat model's prompt, if `settings.wrap`) cut to the model's window (its start dropped),
    every setting checked before the model loads."""
    prompt, cut = clip_chars(require_text(prompt, "prompt"))
    sampling = settings.sampling()
    ckpt = registry.load(model_name)
    read = model_text(ckpt, model_name, prompt, settings.wrap)
    ids, too_long = fit_context(read.ids(ckpt.tokenizer), ckpt.model.cfg.context_length)
    return Request(ckpt, read.text, read.wrapped, ids, sampling, (cut, read.notice, too_long))


def beam_request(registry: ModelRegistry, model_name: str, prompt: str, num_beams: float, max_new_tokens: float,
                 wrap: bool = False) -> BeamRequest:
    """Beams and new tokens checked; the prompt (in a chat model's prompt, if `wrap`) cut so that it and the new
    tokens fit the window."""
    prompt, cut = clip_chars(require_text(prompt, "prompt"))
    n_beams = check_number(num_beams, "Beams", 1, MAX_BEAMS, integer=True)
    new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_BEAM_TOKENS, integer=True)
    ckpt = registry.load(model_name)
    context = ckpt.model.cfg.context_length
    new_tokens = min(new_tokens, context - 1)
    read = model_text(ckpt, model_name, prompt, wrap)
    ids, too_long = fit_context(read.ids(ckpt.tokenizer), context - new_tokens)
    return BeamRequest(ckpt, ids, n_beams, new_tokens, (cut, read.notice, too_long))
