"""Dtypes by name, and autocast by precision name."""

from __future__ import annotations

import pytest
import torch

from gpt import precision
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


def test_auto_computes_in_bfloat16_only_where_it_is_measured_faster(monkeypatch):
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    for fast, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(precision, "fast_bfloat16", lambda device_type, fast=fast: fast)
        assert precision.resolve_autocast("auto", "cpu") == name_of(expected)
        with autocast("auto", "cpu"):
            assert (a @ b).dtype == expected
    assert precision.resolve_autocast("bfloat16", "cpu") == "bfloat16"  # asked for by name: kept


def test_the_bfloat16_measurement_is_made_once_and_other_devices_keep_float32():
    precision.fast_bfloat16.cache_clear()
    answer = precision.fast_bfloat16("cpu")
    assert isinstance(answer, bool) and precision.fast_bfloat16("cpu") is answer
    assert precision.fast_bfloat16.cache_info().hits >= 1
    assert precision.fast_bfloat16("mps") is False
