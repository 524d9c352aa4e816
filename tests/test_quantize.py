"""The ``quantize`` operator: floor levels, centre decode, exact pseudo-inverse law."""

from __future__ import annotations

import pytest
import torch

import opkit
from opkit.testing import check_operator


@pytest.mark.parametrize("bits", [1, 2, 5, 8, 12, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_laws_hold_for_every_depth(bits: int, dtype: torch.dtype) -> None:
    op = opkit.create("quantize", shape=(3, 7, 5), bits=bits)
    report = check_operator(op, dtype=dtype, batch=3, seed=bits)
    assert report.errors["Encode(Decode(Encode(x))) == Encode(x) (max code difference)"] == 0.0
    assert report.tolerances["Decode(Encode(x)) close to x (RMSE)"] == 0.5 / 2**bits


def test_levels_are_floors_and_the_top_edge_joins_the_last_level() -> None:
    op = opkit.create("quantize", shape=(1, 1, 6), bits=2)
    x = torch.tensor([[[[0.0, 0.2499, 0.25, 0.5, 0.9999, 1.0]]]], dtype=torch.float64)
    assert op(x).flatten().tolist() == [0, 0, 1, 2, 3, 3]


def test_decode_returns_level_centres_in_the_encoded_precision() -> None:
    op = opkit.create("quantize", shape=(1, 1, 4), bits=2)
    k64 = op(torch.tensor([[[[0.0, 0.3, 0.6, 1.0]]]], dtype=torch.float64))
    assert k64.dtype == torch.int64
    out = op.decode(k64)
    assert out.dtype == torch.float64
    assert out.flatten().tolist() == [0.125, 0.375, 0.625, 0.875]
    k32 = op(torch.zeros(1, 1, 1, 4))
    assert k32.dtype == torch.int32 and op.decode(k32).dtype == torch.float32


def test_every_level_survives_a_round_trip_at_16_bits() -> None:
    op = opkit.create("quantize", shape=(1, 256, 256), bits=16)
    k = torch.arange(65536, dtype=torch.int32).view(1, 1, 256, 256)
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(op(op.decode(k, dtype=dtype)).to(torch.int32), k)


def test_values_outside_the_unit_interval_clip_to_the_end_levels() -> None:
    op = opkit.create("quantize", shape=(1, 1, 2), bits=3)
    assert op(torch.tensor([[[[-0.5, 1.5]]]])).flatten().tolist() == [0, 7]


@pytest.mark.parametrize("bits", [0, 17, -1, 2.0, True, "8"])
def test_bits_outside_1_to_16_are_refused(bits: object) -> None:
    with pytest.raises(ValueError, match="bits"):
        opkit.create("quantize", shape=(1, 4, 4), bits=bits)


def test_bad_measurements_are_refused() -> None:
    op = opkit.create("quantize", shape=(1, 4, 4), bits=4)
    with pytest.raises(ValueError, match="integer levels"):
        op.decode(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="integer levels"):
        op.decode(torch.zeros(1, 1, 4, 5, dtype=torch.int32))
