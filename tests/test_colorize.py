"""Tests of the ``colorize`` operator (opkit_plugins.colorize)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import opkit
from opkit.testing import check_operator, strategies
from opkit_plugins.colorize import Colorize, ColorizeParams, householder_basis
from tests.helpers import assert_rejects_wrong_shapes, dense_matrix

DTYPES = [torch.float64, torch.float32]


def _direct(weights):
    """The weighted channel sum written out term by term (float64 weights)."""
    w = [float(v) for v in weights]

    def ref(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x[:, :1])
        for c, wc in enumerate(w):
            out = out + wc * x[:, c : c + 1]
        return out

    return ref


# -- the operator equals its direct implementation, every law holds ---------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "weights"),
    [
        ((3, 8, 8), None),
        ((3, 5, 11), (0.299, 0.587, 0.114)),
        ((3, 7, 4), (0.0, 0.0, 2.0)),
        ((3, 4, 6), (1.0, 0.0, 0.0)),
        ((3, 3, 3), (5.0, 1e-3, 0.0)),
        ((1, 6, 9), None),
        ((1, 6, 9), (2.5,)),
        ((4, 5, 3), (0.1, 0.2, 0.3, 0.4)),
    ],
)
def test_check_operator(dtype: torch.dtype, shape, weights) -> None:
    op = opkit.create("colorize", shape=shape, weights=weights)
    check_operator(op, dtype=dtype, reference=_direct(op.weights))


def test_default_is_the_channel_mean() -> None:
    op = opkit.create("colorize", shape=(3, 6, 5))
    assert op.weights == (1 / 3, 1 / 3, 1 / 3)
    x = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = op(x)
    assert y.shape == (2, 1, 6, 5)
    torch.testing.assert_close(y, x.mean(1, keepdim=True), rtol=0, atol=1e-15)
    # H† of a gray image is the gray image in every channel: w / ‖w‖² = (1, 1, 1)
    torch.testing.assert_close(op.pinv(y), y.expand(2, 3, 6, 5), rtol=0, atol=1e-15)
    # Hᵀ y = y / 3 in every channel
    torch.testing.assert_close(op.adjoint(y), y.expand(2, 3, 6, 5) / 3, rtol=0, atol=1e-15)


def test_singular_value_meets_the_weight_direction() -> None:
    """The pitfall of interleaved channels: ‖w‖ must multiply the coefficient along w, per pixel."""
    w = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    op = Colorize((3, 4, 5), weights=w)
    norm = float(w.norm())
    assert torch.allclose(op.singulars.flatten(), torch.tensor([norm, 0.0, 0.0], dtype=torch.float64))
    # a field of colours along w at every pixel (with a varying intensity) ...
    a = torch.rand(1, 1, 4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x_par = a * w.view(1, 3, 1, 1)
    v = op.Vt(x_par)
    torch.testing.assert_close(v[:, :1], a * norm, rtol=0, atol=1e-15)  # all its energy on coordinate 0
    torch.testing.assert_close(v[:, 1:], torch.zeros_like(v[:, 1:]), rtol=0, atol=1e-15)
    torch.testing.assert_close(op(x_par), a * norm**2, rtol=0, atol=1e-15)
    # ... and one orthogonal to w: in the null space
    x_perp = a * torch.tensor([0.5, 0.0, -0.2], dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(op(x_perp), torch.zeros_like(a), rtol=0, atol=1e-15)
    torch.testing.assert_close(op.Vt(x_perp)[:, :1], torch.zeros_like(a), rtol=0, atol=1e-15)
    # pixels are not mixed: Vt acts on each pixel's channel vector with the same Qᵀ
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    q = op.basis
    per_pixel = torch.einsum("ck,bchw->bkhw", q, x)
    torch.testing.assert_close(op.Vt(x), per_pixel, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "w",
    [[1.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [3.0, 1e-9, 0.0], [1.0], [0.1, 0.2, 0.3, 0.4, 0.5]],
)
def test_householder_basis(w: list[float]) -> None:
    wt = torch.tensor(w, dtype=torch.float64)
    q = householder_basis(wt)
    eye = torch.eye(len(w), dtype=torch.float64)
    torch.testing.assert_close(q.T @ q, eye, rtol=0, atol=1e-15)
    torch.testing.assert_close(q[:, 0], wt / wt.norm(), rtol=0, atol=1e-16)
    # negative entries work too (not used by colorize, whose weights are non-negative)
    q2 = householder_basis(-wt)
    torch.testing.assert_close(q2.T @ q2, eye, rtol=0, atol=1e-15)
    torch.testing.assert_close(q2[:, 0], -wt / wt.norm(), rtol=0, atol=1e-16)


def test_pinv_and_adjoint_match_dense_float64() -> None:
    shape, out = (3, 2, 3), (1, 2, 3)
    w = (0.299, 0.587, 0.114)
    op = Colorize(shape, weights=w)
    h = dense_matrix(op, shape, out)
    expected = torch.kron(torch.tensor([w], dtype=torch.float64), torch.eye(6, dtype=torch.float64))
    torch.testing.assert_close(h, expected, rtol=0, atol=1e-15)
    pinv_dense = torch.linalg.pinv(h)
    torch.testing.assert_close(dense_matrix(op.pinv, out, shape), pinv_dense, rtol=0, atol=1e-14)
    torch.testing.assert_close(dense_matrix(op.adjoint, out, shape), h.T, rtol=0, atol=1e-15)
    # the SVD factors, densely: V orthogonal, H = U Σ Vᵀ
    vt = dense_matrix(op.Vt, shape, shape)
    torch.testing.assert_close(vt @ vt.T, torch.eye(18, dtype=torch.float64), rtol=0, atol=1e-14)
    s = op.singulars.expand(shape).reshape(-1)
    u = dense_matrix(op.U, shape, out)
    torch.testing.assert_close(u @ torch.diag(s) @ vt, h, rtol=0, atol=1e-14)


def test_extreme_weights_stay_finite_in_float32() -> None:
    for w in [(1e-20, 0.0, 0.0), (1e20, 1e20, 0.0)]:
        op = Colorize((3, 4, 4), weights=w)
        check_operator(op, dtype=torch.float32)
        y = torch.rand(2, 1, 4, 4, dtype=torch.float32)
        assert torch.isfinite(op.pinv(y)).all()


def test_weights_accept_tensors_and_arrays() -> None:
    for w in (torch.tensor([1.0, 2.0, 3.0]), np.array([1, 2, 3]), [1, 2, 3]):
        assert Colorize((3, 2, 2), weights=w).weights == (1.0, 2.0, 3.0)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "weights", "match"),
    [
        ((3, 4, 4), (1.0, 1.0), "one weight per channel"),
        ((1, 4, 4), (1.0, 1.0, 1.0), "one weight per channel"),
        ((3, 4, 4), (1.0, -0.1, 1.0), "non-negative"),
        ((3, 4, 4), (0.0, 0.0, 0.0), "all zero"),
        ((3, 4, 4), (1.0, math.nan, 1.0), "finite"),
        ((3, 4, 4), (1.0, math.inf, 1.0), "finite"),
        ((3, 4, 4), (), "at least one"),
        ((3, 4, 4), "rgb", "sequence of numbers"),
        ((3, 4, 4), 0.5, "sequence of numbers"),
        ((3, 4, 4), (1e-40, 0.0, 0.0), "norm"),
        ((3, 4, 4), (1e31, 0.0, 0.0), "norm"),
    ],
)
def test_bad_parameters(shape, weights, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        opkit.create("colorize", shape=shape, weights=weights)
    assert "weights" in str(info.value)


def test_params_frozen_and_repr() -> None:
    p = ColorizeParams(weights=[1, 2])
    assert p.weights == (1.0, 2.0)
    with pytest.raises(AttributeError):
        p.weights = (1.0,)  # type: ignore[misc]
    assert "weights=(0.5, 0.5)" in repr(Colorize((2, 3, 3)))


def test_wrong_input_shapes() -> None:
    assert_rejects_wrong_shapes(Colorize((3, 4, 5)), (2, 1, 4, 5), (1, 3, 4, 5), (1, 1, 5, 4))


def test_output_follows_input_dtype() -> None:
    op = Colorize((3, 4, 5), weights=(0.2, 0.3, 0.5))
    for dtype in DTYPES:
        x = torch.rand(1, 3, 4, 5, dtype=dtype)
        for out in (op(x), op.Vt(x), op.V(x), op.pinv(op(x)), op.adjoint(op(x))):
            assert out.dtype == dtype


# -- the generic property suite on this operator ---------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.operators(["colorize"]))
def test_generic_properties(op: Colorize) -> None:
    check_operator(op, reference=_direct(op.weights))
    check_operator(op, dtype=torch.float32, batch=1)
