"""Next-token training data: the book's sliding window over token ids, and token files memory-mapped from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gpt.files import atomic_path
from gpt.tokenizer import Tokenizer

TOKEN_DTYPE = np.uint16  # every vocabulary here has fewer than 65,536 tokens: half the bytes of int32


class SlidingWindowDataset(Dataset):
    """Windows of `max_length` tokens every `stride` tokens; the target is the input shifted by one.

    `tokens` may be a NumPy memmap: windows are sliced lazily, so a corpus larger than RAM works.
    """

    def __init__(self, tokens: np.ndarray | list[int], max_length: int, stride: int):
        if max_length < 1 or stride < 1:
            raise ValueError(f"max_length and stride must be >= 1, got {max_length} and {stride}")
        self.tokens = tokens if isinstance(tokens, np.ndarray) else np.asarray(tokens, dtype=np.int64)
        self.max_length, self.stride = max_length, stride
        n = len(self.tokens) - max_length  # the last window still needs one more token as target
        self.n_windows = 0 if n < 1 else (n - 1) // stride + 1

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.n_windows:
            raise IndexError(i)
        start = i * self.stride
        chunk = torch.from_numpy(self.tokens[start : start + self.max_length + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]


def write_token_file(path: str | Path, tokens: list[int] | np.ndarray) -> None:
    """Store token ids as raw uint16 (what `open_token_file` memory-maps), atomically."""
    array = np.asarray(tokens)
    if array.size and (array.min() < 0 or array.max() > np.iinfo(TOKEN_DTYPE).max):
        raise ValueError("token ids must lie in [0, 65535] to be stored as uint16")
    with atomic_path(path) as tmp:
        array.astype(TOKEN_DTYPE).tofile(tmp)


def open_token_file(path: str | Path) -> np.ndarray:
    """A read-only memory map: the OS pages the corpus in as windows are read."""
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")


def tokenize_to_file(texts: list[str], tokenizer: Tokenizer, path: str | Path) -> int:
    """Encode documents separated by `<|endoftext|>` into a token file; returns the token count."""
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer.encode(text))
        ids.append(tokenizer.eot_id)
    write_token_file(path, ids)
    return len(ids)
