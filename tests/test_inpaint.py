"""Tests of the ``inpaint`` operator (opkit_plugins.inpaint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import opkit
from opkit.testing import check_operator, strategies
from opkit_plugins.inpaint import Inpaint, InpaintParams, random_mask
from tests.helpers import assert_rejects_wrong_shapes, dense_matrix

DTYPES = [torch.float64, torch.float32]


def _mask(shape: tuple[int, ...], kept: float = 0.6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < kept


def _direct(mask: torch.Tensor):
    """Masking written independently of the operator: keep where True, 0.0 elsewhere."""
    m = mask if mask.ndim == 3 else mask.unsqueeze(0)

    def ref(x: torch.Tensor) -> torch.Tensor:
        return torch.where(m.to(x.device), x, torch.zeros((), dtype=x.dtype))

    return ref


# -- the operator equals its direct implementation, every law holds ---------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "mask_shape"),
    [((3, 8, 8), (8, 8)), ((3, 5, 11), (3, 5, 11)), ((1, 7, 4), (7, 4)), ((2, 6, 9), (1, 6, 9))],
)
def test_check_operator_given_mask(dtype: torch.dtype, shape, mask_shape) -> None:
    mask = _mask(mask_shape, seed=sum(shape))
    op = opkit.create("inpaint", shape=shape, mask=mask)
    report = check_operator(op, dtype=dtype, reference=_direct(mask))
    assert report.errors["H x equals the direct implementation"] == 0.0  # masking is exact


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_check_operator_random_mask(dtype: torch.dtype, per_channel: bool) -> None:
    op = opkit.create("inpaint", shape=(3, 9, 6), missing=0.4, seed=5, per_channel=per_channel)
    check_operator(op, dtype=dtype, reference=_direct(op.mask))


def test_values_are_the_kept_pixels_and_zero_elsewhere() -> None:
    mask = torch.tensor([[True, False, True], [False, False, True]])
    op = Inpaint((2, 2, 3), mask=mask)
    x = torch.arange(1, 13, dtype=torch.float64).reshape(1, 2, 2, 3)
    expected = torch.tensor([[[1, 0, 3], [0, 0, 6]], [[7, 0, 9], [0, 0, 12]]], dtype=torch.float64)
    assert torch.equal(op(x)[0], expected)
    assert torch.equal(op.pinv(op(x))[0], expected)
    assert torch.equal(op.adjoint(op(x))[0], expected)
    # the SVD: identity bases, singular values = the mask
    assert op.Vt(x) is x and op.V(x) is x
    assert torch.equal(op.singulars, mask.to(torch.float32).unsqueeze(0))


def test_pinv_and_adjoint_match_dense_float64() -> None:
    shape = (2, 3, 4)
    mask = torch.tensor(
        [[[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]], [[0, 0, 1, 1], [1, 1, 1, 0], [0, 1, 0, 1]]],
        dtype=torch.bool,
    )
    op = Inpaint(shape, mask=mask)
    h = dense_matrix(op, shape, shape)
    assert torch.equal(h, torch.diag(mask.reshape(-1).to(torch.float64)))
    pinv_dense = torch.linalg.pinv(h)
    assert torch.allclose(dense_matrix(op.pinv, shape, shape), pinv_dense, rtol=0, atol=1e-14)
    assert torch.equal(dense_matrix(op.adjoint, shape, shape), h.T)
    # H† of random data: finite, equals the dense pseudo-inverse
    y = torch.randn((3, *shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    xp = op.pinv(y)
    assert torch.isfinite(xp).all()
    assert torch.allclose(xp.reshape(3, -1), y.reshape(3, -1) @ pinv_dense.T, rtol=0, atol=1e-14)


def test_shared_mask_broadcasts_over_channels() -> None:
    mask = _mask((6, 5), seed=3)
    op = Inpaint((3, 6, 5), mask=mask)
    x = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    y = op(x)
    for c in range(3):  # every channel uses the same mask
        assert torch.equal(y[:, c] != 0, mask.expand(2, 6, 5) & (x[:, c] != 0))


# -- masks: given or drawn, reproducible --------------------------------------------------------


def test_mask_from_numpy_and_01_values() -> None:
    m = _mask((4, 5), seed=2)
    for arr in (m.numpy(), m.to(torch.uint8), m.to(torch.float64).numpy(), m.tolist()):
        assert torch.equal(Inpaint((3, 4, 5), mask=arr).mask, m.unsqueeze(0))


def test_mask_is_copied() -> None:
    m = torch.ones(4, 4, dtype=torch.bool)
    op = Inpaint((1, 4, 4), mask=m)
    m[0, 0] = False
    assert bool(op.mask.all())
    op.mask[0, 0, 0] = False  # the property hands out a copy as well
    assert bool(op.mask.all())


def test_seed_reproducible_and_independent_of_global_rng() -> None:
    torch.manual_seed(123)
    a = Inpaint((3, 16, 12), missing=0.5, seed=7).mask
    torch.manual_seed(999)
    torch.rand(10)
    b = Inpaint((3, 16, 12), missing=0.5, seed=7).mask
    c = Inpaint((3, 16, 12), missing=0.5, seed=8).mask
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(Inpaint((3, 16, 12), missing=0.5).mask, Inpaint((3, 16, 12), missing=0.5, seed=0).mask)


def test_random_mask_shapes_and_generator() -> None:
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    shared = random_mask((3, 10, 7), 0.3, generator=g1)
    assert shared.shape == (1, 10, 7) and shared.dtype == torch.bool
    assert torch.equal(shared, random_mask((3, 10, 7), 0.3, generator=g2))
    per = random_mask((3, 10, 7), 0.3, per_channel=True, generator=torch.Generator().manual_seed(4))
    assert per.shape == (3, 10, 7)
    assert not torch.equal(per[0], per[1])
    # the operator draws exactly this mask from its seed
    op = Inpaint((3, 10, 7), missing=0.3, seed=4, per_channel=True)
    assert torch.equal(op.mask, per)


def test_missing_fraction_statistics() -> None:
    op = Inpaint((3, 200, 150), missing=0.3, seed=1, per_channel=True)
    frac = 1.0 - op.mask.to(torch.float64).mean(dim=(1, 2))
    # 30000 Bernoulli(0.3) draws per channel: standard deviation 0.0026
    assert torch.all((frac - 0.3).abs() < 0.015)
    assert bool(Inpaint((2, 9, 9), missing=0.0).mask.all())


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of mask"),
        ({"mask": np.ones((4, 4), bool), "missing": 0.5}, "both were given"),
        ({"missing": 1.0}, "missing"),
        ({"missing": -0.1}, "missing"),
        ({"missing": float("nan")}, "missing"),
        ({"missing": "half"}, "missing"),
        ({"missing": True}, "missing"),
        ({"missing": 0.5, "seed": -1}, "seed"),
        ({"missing": 0.5, "seed": 1.5}, "seed"),
        ({"missing": 0.5, "per_channel": 1}, "per_channel"),
        ({"mask": np.ones((4, 4), bool), "seed": 3}, "seed and per_channel"),
        ({"mask": np.ones((4, 4), bool), "per_channel": True}, "seed and per_channel"),
        ({"mask": np.full((4, 4), 0.5)}, "mask must be boolean"),
        ({"mask": np.ones(16, bool)}, "mask must have shape"),
        ({"mask": np.ones((1, 3, 4, 4), bool)}, "mask must have shape"),
        ({"mask": np.ones((4, 5), bool)}, "does not fit"),
        ({"mask": np.ones((2, 4, 4), bool)}, "does not fit"),
        ({"mask": object()}, "mask"),
    ],
)
def test_bad_parameters(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        opkit.create("inpaint", shape=(3, 4, 4), **kwargs)


def test_params_frozen() -> None:
    p = InpaintParams(missing=0.2)
    with pytest.raises(AttributeError):
        p.missing = 0.3  # type: ignore[misc]
    assert "missing=0.2" in repr(Inpaint((1, 3, 3), missing=0.2))
    assert "kept" in repr(Inpaint((1, 3, 3), mask=np.ones((3, 3), bool)))


def test_wrong_input_shapes() -> None:
    assert_rejects_wrong_shapes(Inpaint((3, 4, 5), missing=0.5), (2, 3, 5, 4), (1, 1, 4, 5), (1, 3, 4, 6))


# -- the generic property suite on this operator ---------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.operators(["inpaint"]))
def test_generic_properties(op: Inpaint) -> None:
    check_operator(op, reference=_direct(op.mask))
    check_operator(op, dtype=torch.float32, batch=1)
