from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gpt.data.windows import (
    SlidingWindowDataset,
    open_token_file,
    tokenize_to_file,
    write_token_file,
)
from gpt.tokenizer import load_tokenizer


def test_windows_and_shifted_targets() -> None:
    ds = SlidingWindowDataset(list(range(20)), max_length=4, stride=3)
    assert len(ds) == 6  # starts 0, 3, ..., 15 (window 15..18, target ..19)
    x, y = ds[1]
    assert x.tolist() == [3, 4, 5, 6] and y.tolist() == [4, 5, 6, 7]
    x, y = ds[len(ds) - 1]
    assert y[-1] == 19
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_too_short_and_bad_arguments() -> None:
    assert len(SlidingWindowDataset([1, 2, 3], max_length=4, stride=1)) == 0
    with pytest.raises(ValueError):
        SlidingWindowDataset([1, 2, 3], max_length=0, stride=1)


def test_windows_of_a_real_text_batch_like_the_book(novel: str) -> None:
    ids = load_tokenizer("gpt2").encode(novel[:20_000])
    x, y = next(iter(DataLoader(SlidingWindowDataset(ids, max_length=4, stride=4), batch_size=8)))
    assert x.shape == y.shape == (8, 4) and x.dtype == torch.long
    assert x[0].tolist() == ids[:4] and x[1].tolist() == ids[4:8]
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_memory_mapped_token_file(tmp_path, novel: str) -> None:
    tok = load_tokenizer("gpt2")
    path = tmp_path / "tokens.bin"
    n = tokenize_to_file([novel[:5000], novel[5000:9000]], tok, path)
    tokens = open_token_file(path)
    assert isinstance(tokens, np.memmap) and len(tokens) == n and tokens.dtype == np.uint16
    assert path.stat().st_size == 2 * n
    assert tokens[-1] == tok.eot_id
    ds = SlidingWindowDataset(tokens, max_length=16, stride=16)
    x, y = ds[3]
    assert x.tolist() == tokens[48:64].tolist() and y.tolist() == tokens[49:65].tolist()
    with pytest.raises(ValueError, match="uint16"):
        write_token_file(tmp_path / "bad.bin", [70_000])
