"""Dtypes by name, and autocast by precision name."""

from __future__ import annotations

import pytest
import torch

from gpt.precision import autocast, bytes_per_element, dtype_of, name_of


def test_names_and_dtypes_round_trip_and_widths():
    for name, width in (("float32", 4), ("bfloat16", 2), ("float16", 2)):
        assert name_of(dtype_of(name)) == name and bytes_per_element(name) == width
    with pytest.raises(ValueError, match="unknown dtype 'int4'"):
        dtype_of("int4")
    with pytest.raises(ValueError, match="unsupported dtype"):
        name_of(torch.int8)


def test_autocast_bfloat16_changes_matmuls_and_float32_does_not():
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with autocast("float32", "cpu"):
        assert (a @ b).dtype == torch.float32
    with autocast("bfloat16", torch.device("cpu")):
        assert (a @ b).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="autocast must be one of"):
        autocast("int8", "cpu")
