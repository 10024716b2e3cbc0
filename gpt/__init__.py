"""A GPT-2-style language model from scratch: tokenizer, data, attention, model, generation."""

from gpt.config import PRESETS, GPTConfig
from gpt.model import GPTModel
from gpt.tokenizer import Tokenizer, load_tokenizer

__all__ = ["GPTConfig", "GPTModel", "PRESETS", "Tokenizer", "load_tokenizer"]
