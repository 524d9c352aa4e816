"""cs: Walsh–Hadamard compressed sensing against the explicit Hadamard matrix (scipy's), in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

import opkit
from opkit.testing import check_operator
from opkit_plugins.cs import CompressedSensing, CSParams, fwht, hadamard
from tests.helpers import assert_rejects_wrong_shapes, dense_matrix

F64 = torch.float64


@pytest.mark.parametrize("n", [1, 2, 4, 8, 64, 256, 1024, 2048])
def test_fwht_is_the_orthonormal_sylvester_transform(n: int) -> None:
    x = torch.randn((3, 2, n), generator=torch.Generator().manual_seed(n), dtype=F64)
    want = x @ torch.from_numpy(scipy.linalg.hadamard(n).astype(np.float64)).T / math.sqrt(n)
    torch.testing.assert_close(fwht(x), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(fwht(fwht(x)), x, rtol=0, atol=1e-12)
    assert torch.equal(hadamard(n), torch.from_numpy(scipy.linalg.hadamard(n).astype(np.float64)))


def test_fwht_refuses_other_lengths() -> None:
    with pytest.raises(ValueError, match="power-of-two length, got 12"):
        fwht(torch.zeros(12))


@pytest.mark.parametrize(
    ("shape", "ratio"),
    [((1, 4, 8), 2), ((2, 8, 2), 3), ((1, 1, 16), 4), ((3, 16, 1), 1.5), ((1, 8, 8), 1), ((1, 2, 4), 8)],
)
def test_dense_oracles_float64(shape: tuple[int, int, int], ratio: float) -> None:
    op = CompressedSensing(shape, ratio=ratio, seed=11)
    c, h, w = shape
    n = h * w
    m = math.ceil(n / ratio)
    assert op.out_shape == (c, m) and op.kept == m
    # explicit: per channel, rows of 𝓗_n/√n applied to the permuted pixels, first m kept
    had = scipy.linalg.hadamard(n).astype(np.float64) / math.sqrt(n)
    perm = op.permutation.numpy()
    P = np.eye(n)[perm]  # (P x)_j = x_{π(j)}
    A = (had @ P)[:m]
    H_want = np.kron(np.eye(c), A)
    H = dense_matrix(op.forward, shape).numpy()
    np.testing.assert_allclose(H, H_want, rtol=0, atol=1e-12)
    Vt_want = np.kron(np.eye(c), had @ P)
    np.testing.assert_allclose(dense_matrix(op.Vt, shape).numpy(), Vt_want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dense_matrix(op.V, (c, n)).numpy(), Vt_want.T, rtol=0, atol=1e-12)
    # U = I on the measured coordinates: U reads the first m of each channel, Uᵀ pads zeros
    sel = np.kron(np.eye(c), np.eye(n)[:m])
    np.testing.assert_allclose(dense_matrix(op.U, (c, n)).numpy(), sel, rtol=0, atol=0)
    np.testing.assert_allclose(dense_matrix(op.Ut, (c, m)).numpy(), sel.T, rtol=0, atol=0)
    # Σ = 1 on the m kept coefficients; the nonzero singular values of a dense SVD are the same
    s = op.singulars.expand(c, n).reshape(-1).numpy()
    np.testing.assert_array_equal(s, np.tile(np.r_[np.ones(m), np.zeros(n - m)], c))
    dense_s = np.linalg.svd(H_want, compute_uv=False)
    np.testing.assert_allclose(np.sort(s[s > 0]), np.sort(dense_s), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dense_matrix(op.adjoint, (c, m)).numpy(), H_want.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dense_matrix(op.pinv, (c, m)).numpy(), np.linalg.pinv(H_want), atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("shape", "ratio"), [((3, 16, 32), 4), ((1, 64, 8), 2.5), ((3, 8, 8), 1)])
def test_every_law(dtype: torch.dtype, shape: tuple[int, int, int], ratio: float) -> None:
    check_operator(opkit.create("cs", shape=shape, ratio=ratio, seed=3), dtype=dtype)


def test_channels_are_measured_independently_with_the_same_permutation() -> None:
    op = opkit.create("cs", shape=(3, 8, 16), ratio=2, seed=1)
    x = torch.rand(1, 3, 8, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = op(x)
    single = CompressedSensing((1, 8, 16), ratio=2, seed=1)
    for ch in range(3):
        torch.testing.assert_close(y[:, ch : ch + 1], single(x[:, ch : ch + 1]), rtol=0, atol=1e-14)


def test_seeded_permutation_and_no_global_state() -> None:
    state = torch.random.get_rng_state()
    a = CompressedSensing((1, 16, 16), seed=5).permutation
    assert torch.equal(a, CompressedSensing((1, 16, 16), seed=5).permutation)
    assert not torch.equal(a, CompressedSensing((1, 16, 16), seed=6).permutation)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.sort().values, torch.arange(256))


def test_sizes_that_are_not_powers_of_two_name_the_nearest_that_work() -> None:
    with pytest.raises(
        ValueError, match="got 100×64; the nearest sizes that work: height 64 or 128, width 64"
    ):
        opkit.create("cs", shape=(3, 100, 64))
    with pytest.raises(ValueError, match="height 256, width 128 or 256"):
        opkit.create("cs", shape=(3, 256, 200))


@pytest.mark.parametrize(
    ("params", "match"),
    [({"ratio": 0.5}, "ratio"), ({"ratio": True}, "ratio"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed")],
)
def test_bad_parameters_are_refused_by_name(params: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CSParams(**params)


def test_shapes_are_checked() -> None:
    op = opkit.create("cs", shape=(3, 8, 4), ratio=4)
    assert_rejects_wrong_shapes(op, (1, 3, 8, 8), (1, 3, 9), (1, 2, 8))
