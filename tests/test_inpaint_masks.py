"""inpaint: the field's mask generators (box, exact-count random pixels, half), seeded, via the registry."""

from __future__ import annotations

import pytest
import torch

import opkit
from opkit.testing import check_operator
from opkit_plugins.inpaint import InpaintParams, box_mask, half_mask, pixel_mask


def _box_of(keep: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero((~keep[0]).any(1)).flatten()
    cols = torch.nonzero((~keep[0]).any(0)).flatten()
    return int(rows[0]), int(cols[0]), len(rows), len(cols)


def test_box_of_dps_size_random_and_centred() -> None:
    op = opkit.create("inpaint", shape=(3, 256, 256), mask="box", box_size=128, margin=16, seed=4)
    keep = op.mask
    assert keep.shape == (1, 256, 256)
    top, left, bh, bw = _box_of(keep)
    assert (bh, bw) == (128, 128) and int((~keep).sum()) == 128 * 128
    assert 16 <= top <= 256 - 16 - 128 and 16 <= left <= 256 - 16 - 128
    again = opkit.create("inpaint", shape=(3, 256, 256), mask="box", box_size=128, margin=16, seed=4)
    assert torch.equal(again.mask, keep)
    c = opkit.create("inpaint", shape=(3, 9, 12), mask="box", box_size=(3, 4), position="center")
    assert _box_of(c.mask) == (3, 4, 3, 4)
    # default: half of each side
    centred = opkit.create("inpaint", shape=(1, 8, 10), mask="box", position="center")
    assert _box_of(centred.mask) == (2, 2, 4, 5)  # ((8 - 4) // 2, (10 - 5) // 2)


def test_random_box_positions_cover_every_allowed_place() -> None:
    tops = set()
    for s in range(300):
        keep = box_mask((1, 8, 8), (4, 2), margin=1, generator=torch.Generator().manual_seed(s))
        top, left, _, _ = _box_of(keep)
        tops.add((top, left))
    assert tops == {(t, c) for t in range(1, 4) for c in range(1, 6)}


def test_random_pixels_exact_count_and_seeded() -> None:
    op = opkit.create("inpaint", shape=(3, 20, 30), mask="random", missing=0.7, seed=2)
    assert int((~op.mask).sum()) == int(0.7 * 600) and op.mask.shape == (1, 20, 30)
    same = opkit.create("inpaint", shape=(3, 20, 30), mask="random", missing=0.7, seed=2)
    other = opkit.create("inpaint", shape=(3, 20, 30), mask="random", missing=0.7, seed=3)
    assert torch.equal(same.mask, op.mask) and not torch.equal(other.mask, op.mask)
    # each pixel is equally likely to be missing
    freq = torch.stack(
        [~pixel_mask((1, 4, 5), 0.5, generator=torch.Generator().manual_seed(s)) for s in range(2000)]
    )
    assert float((freq.float().mean(0) - 0.5).abs().max()) < 0.05


@pytest.mark.parametrize(
    ("side", "missing_cols", "missing_rows"),
    [
        ("right", slice(3, 5), slice(0, 3)),
        ("left", slice(0, 2), slice(0, 3)),
        ("top", slice(0, 5), slice(0, 1)),
    ],
)
def test_half(side: str, missing_cols: slice, missing_rows: slice) -> None:
    keep = half_mask((1, 3, 5), side)
    want = torch.ones(1, 3, 5, dtype=torch.bool)
    want[:, missing_rows, missing_cols] = False
    assert torch.equal(keep, want)
    bottom = half_mask((1, 5, 2), "bottom")
    assert bottom[0, :, 0].tolist() == [True, True, True, False, False]


@pytest.mark.parametrize(
    "params",
    [
        {"mask": "box", "box_size": 3, "seed": 1, "margin": 1},
        {"mask": "box", "position": "center"},
        {"mask": "random", "missing": 0.7, "seed": 5},
        {"mask": "half", "side": "left"},
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_laws_hold_for_the_generated_masks(params: dict[str, object], dtype: torch.dtype) -> None:
    op = opkit.create("inpaint", shape=(3, 9, 8), **params)
    check_operator(op, dtype=dtype, reference=lambda x: x * op.mask.to(x.dtype))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"mask": "circle"}, "generators"),
        ({"mask": "random"}, "needs missing"),
        ({"mask": "half", "seed": 1}, "seed does not apply"),
        ({"mask": "box", "missing": 0.5}, "missing does not apply"),
        ({"mask": "box", "position": "middle"}, "position"),
        ({"mask": "box", "position": "center", "seed": 3}, "random box"),
        ({"mask": "box", "box_size": (2, 0)}, "box_size"),
        ({"mask": "half", "side": "up"}, "side"),
        ({"mask": "random", "missing": 0.5, "per_channel": True}, "per_channel"),
        ({"missing": 0.5, "box_size": 4}, "box_size applies"),
        ({"mask": "box", "margin": -1}, "margin"),
    ],
)
def test_bad_generator_parameters_are_refused_by_name(params: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InpaintParams(**params)


def test_a_box_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit images of 8×8"):
        opkit.create("inpaint", shape=(3, 8, 8), mask="box", box_size=6, margin=2)
