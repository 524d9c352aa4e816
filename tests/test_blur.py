"""blur: conv2d reference, kernels (uniform 9 taps, even centres, DDRM anisotropic), threshold, errors."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf

import opkit
from opkit.testing import check_operator
from opkit_plugins.blur import (
    Blur,
    BlurParams,
    blur_reference,
    gaussian_kernel,
    kernel_centre,
    uniform_kernel,
)
from tests.helpers import dense_matrix

DTYPES = [torch.float64, torch.float32]


def conv_same(x: torch.Tensor, col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Independent reference: torch's own padding="same" (zero padding) with the 2-D kernel."""
    c = x.shape[1]
    w = torch.outer(col, row).to(x.dtype).expand(c, 1, col.numel(), row.numel())
    with warnings.catch_warnings():  # torch notes that even lengths need a padded copy: fine here
        warnings.simplefilter("ignore", UserWarning)
        return nnf.conv2d(x, w, padding="same", groups=c)


# ------------------------------------------------------------------------------------------ kernels


def test_uniform_nine_taps_of_one_ninth() -> None:
    k = uniform_kernel(9)
    assert k.numel() == 9
    torch.testing.assert_close(k, torch.full((9,), 1 / 9, dtype=torch.float64), rtol=0, atol=0)
    assert abs(float(k.sum()) - 1) < 1e-15
    # the operator really uses all nine: an interior impulse spreads over 9 × 9 pixels of 1/81
    op = Blur((1, 21, 21), kernel="uniform", size=9, threshold=0.0)
    x = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    x[0, 0, 10, 10] = 1.0
    y = op(x)[0, 0]
    assert torch.count_nonzero(y.abs() > 1e-12) == 81
    torch.testing.assert_close(y[6:15, 6:15], torch.full((9, 9), 1 / 81, dtype=torch.float64))
    assert abs(float(y.sum()) - 1) < 1e-12


@pytest.mark.parametrize("size", [1, 2, 4, 9])
def test_uniform_matrix_rows_hold_every_tap(size: int) -> None:
    op = Blur((1, 16, 16), kernel="uniform", size=size, threshold=0.0)
    A = op.col_factor.matrix
    interior = A[size : 16 - size]
    assert bool(((interior > 0).sum(1) == size).all())
    torch.testing.assert_close(interior.sum(1), torch.ones(interior.shape[0], dtype=torch.float64))


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 8])
def test_even_and_odd_centre_convention_is_torch_same(length: int) -> None:
    assert kernel_centre(length) == (length - 1) // 2
    g = torch.Generator().manual_seed(length)
    col = torch.rand(length, dtype=torch.float64, generator=g) + 0.1
    row = torch.rand(length + 1, dtype=torch.float64, generator=g) + 0.1  # different parity
    x = torch.rand(2, 3, 11, 7, dtype=torch.float64, generator=g)
    torch.testing.assert_close(blur_reference(x, col, row), conv_same(x, col, row), rtol=0, atol=1e-14)
    op = Blur((3, 11, 7), col=col, row=row, threshold=0.0)
    torch.testing.assert_close(op(x), conv_same(x, col, row), rtol=0, atol=1e-14)


def test_even_kernel_reaches_one_further_right() -> None:
    op = Blur((1, 1, 9), row=[1.0, 2.0, 3.0, 4.0], threshold=0.0)  # centre index 1
    x = torch.zeros(1, 1, 1, 9, dtype=torch.float64)
    x[..., 4] = 1.0
    # y_i = sum_t k_t x_{i+t-1}: the impulse at 4 reaches i = 2..5 with taps 4, 3, 2, 1
    expected = torch.tensor([0, 0, 4, 3, 2, 1, 0, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(op(x)[0, 0, 0], expected, rtol=0, atol=1e-14)


def test_gaussian_kernel_definition_and_default_size() -> None:
    k = gaussian_kernel(1.5)
    assert k.numel() == 2 * math.ceil(4.5) + 1 == 11
    d = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(d**2) / (2 * 1.5**2))
    torch.testing.assert_close(k, g / g.sum(), rtol=0, atol=1e-16)
    even = gaussian_kernel(1.0, 4)  # symmetric half-integer offsets
    torch.testing.assert_close(even, even.flip(0), rtol=0, atol=0)


def test_anisotropic_kernel_is_the_ddrm_one() -> None:
    """DDRM appendix I: σ = 20 horizontally, σ = 1 vertically; 9 taps exp(-d²/2σ²), d = -4..4."""
    op = Blur((1, 16, 16), kernel="anisotropic")
    d = torch.arange(-4, 5, dtype=torch.float64)
    for sigma, k in [(20.0, op.row_kernel), (1.0, op.col_kernel)]:
        g = torch.exp(-0.5 * (d / sigma) ** 2)
        torch.testing.assert_close(k, g / g.sum(), rtol=0, atol=1e-16)
    # horizontal is the row (W) axis: an impulse spreads further along W than along H
    plain = Blur((1, 16, 16), kernel="anisotropic", threshold=0.0)
    x = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    x[0, 0, 8, 8] = 1.0
    y = plain(x)[0, 0]
    assert float(y[8, 12]) > 0.1 * float(y[8, 8])  # 4 px horizontally: σ = 20, nearly flat
    assert float(y[12, 8]) < 1e-3 * float(y[8, 8])  # 4 px vertically: σ = 1, exp(-8)
    torch.testing.assert_close(y, conv_same(x, op.col_kernel, op.row_kernel)[0, 0], rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------------- laws, reference

PLAIN = [  # threshold 0: the operator is the plain blur, H must equal the conv2d reference
    {"kernel": "uniform", "size": 9},
    {"kernel": "uniform", "size": 4},
    {"kernel": "gaussian", "sigma": 0.6},
    {"kernel": "anisotropic", "sigma_h": 3.0, "sigma_v": 0.5, "size": 5},
    {"row": [0.1, 0.7, 0.2], "col": [0.6, 0.4]},  # asymmetric: catches a flipped kernel
]


@pytest.mark.parametrize("params", PLAIN)
@pytest.mark.parametrize("dtype", DTYPES)
def test_plain_blur_laws_and_conv2d_reference(params: dict[str, Any], dtype: torch.dtype) -> None:
    shape = (2, 12, 9)  # non-square
    op = Blur(shape, threshold=0.0, **params)
    assert op.col_factor.dropped == 0.0 and op.row_factor.dropped == 0.0
    check_operator(op, dtype=dtype, reference=lambda x: conv_same(x, op.col_kernel, op.row_kernel))
    # and the decomposition itself, not only the native forward
    x = torch.rand(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    svd_h = op.U(op.singulars_like(x) * op.Vt(x))
    torch.testing.assert_close(svd_h, conv_same(x, op.col_kernel, op.row_kernel), rtol=0, atol=1e-13)


TRUNCATED = [
    {"kernel": "uniform", "size": 9},
    {"kernel": "gaussian", "sigma": 1.5},
    {"kernel": "anisotropic"},
    {"kernel": "uniform", "size": 4, "threshold": 0.3},
    {"row": [0.1, 0.7, 0.2], "col": [0.5, 0.5], "threshold": 0.2},
]


@pytest.mark.parametrize("params", TRUNCATED)
@pytest.mark.parametrize("dtype", DTYPES)
def test_truncated_blur_obeys_the_laws(params: dict[str, Any], dtype: torch.dtype) -> None:
    op = Blur((2, 24, 18), **params)
    assert max(op.col_factor.dropped, op.row_factor.dropped) > 0  # something really was cut
    check_operator(op, dtype=dtype)


def _truncated_axis(kernel: torch.Tensor, n: int, threshold: float) -> np.ndarray:
    """Independent 1-D truncated blur matrix: conv1d on the identity, numpy SVD, threshold."""
    L = kernel.numel()
    c = (L - 1) // 2
    eye = torch.eye(n, dtype=torch.float64).unsqueeze(1)
    cols = nnf.conv1d(nnf.pad(eye, (c, L - 1 - c)), kernel.view(1, 1, -1))[:, 0]
    A = cols.T.numpy()  # column j = blur of e_j
    u, s, vt = np.linalg.svd(A)
    tol = max(A.shape) * np.finfo(np.float64).eps * s[0]
    return (u * np.where((s >= threshold) & (s > tol), s, 0.0)) @ vt


@pytest.mark.parametrize(
    "params",
    [
        {"kernel": "uniform", "size": 3, "threshold": 0.0},
        {"kernel": "uniform", "size": 4},
        {"kernel": "gaussian", "sigma": 1.0},
        {"kernel": "anisotropic", "size": 5, "sigma_h": 4.0, "sigma_v": 0.7, "threshold": 0.1},
        {"row": [0.1, 0.7, 0.2], "col": [0.6, 0.4], "threshold": 0.25},
    ],
)
def test_operator_and_pinv_match_dense_float64(params: dict[str, Any]) -> None:
    shape = (1, 6, 5)
    op = Blur(shape, **params)
    thr = params.get("threshold", 3e-2)
    Ht = torch.from_numpy(
        np.kron(_truncated_axis(op.col_kernel, 6, thr), _truncated_axis(op.row_kernel, 5, thr))
    )
    torch.testing.assert_close(dense_matrix(op, shape), Ht, rtol=0, atol=1e-13)
    torch.testing.assert_close(dense_matrix(op.adjoint, shape), Ht.T, rtol=0, atol=1e-13)
    y = torch.randn(2, *op.out_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    expected = (torch.linalg.pinv(Ht, hermitian=False) @ y.flatten(1).T).T
    got = op.pinv(y)
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got.flatten(1), expected, rtol=1e-9, atol=1e-9)


def test_singular_values_pair_with_their_coefficients() -> None:
    op = Blur((3, 10, 7), row=[0.2, 0.5, 0.3], col=[0.6, 0.4], threshold=0.05)
    s = op.singulars
    assert s.shape == (1, 10, 7)
    torch.testing.assert_close(s[0], torch.outer(op.col_factor.s, op.row_factor.s), rtol=0, atol=0)
    # V's coefficient (i, j) of channel c is an eigenvector of HᵀH with eigenvalue s_ij²
    v = torch.zeros(1, 3, 10, 7, dtype=torch.float64)
    v[0, 1, 2, 3] = 1.0
    img = op.V(v)
    torch.testing.assert_close(op.adjoint(op(img)), float(s[0, 2, 3]) ** 2 * img, rtol=0, atol=1e-14)


def test_threshold_zero_keeps_only_numerically_nonzero_values() -> None:
    op = Blur((1, 12, 12), kernel="uniform", size=4, threshold=0.0)
    s = op.col_factor.s
    assert bool((s[s > 0] > 12 * torch.finfo(torch.float64).eps * float(s[0])).all())


# ----------------------------------------------------------------------------------- registry, errors


def test_created_through_the_registry_with_defaults() -> None:
    op = opkit.create("blur", shape=(3, 16, 12))
    assert op.params == BlurParams(kernel="uniform")
    torch.testing.assert_close(op.row_kernel, uniform_kernel(9))
    explicit = opkit.create("blur", shape=(1, 8, 8), row=[0.5, 0.5])
    assert explicit.params.kernel == "explicit"
    torch.testing.assert_close(explicit.col_kernel, torch.ones(1, dtype=torch.float64))
    x = torch.rand(4, 3, 16, 12)
    assert op(x).shape == x.shape and op(x).dtype == torch.float32


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"kernel": "box"}, "kernel"),
        ({"kernel": "uniform", "size": 0}, "size"),
        ({"kernel": "uniform", "size": 2.5}, "size"),
        ({"kernel": "uniform", "sigma": 1.0}, "sigma"),
        ({"kernel": "gaussian"}, "sigma"),
        ({"kernel": "gaussian", "sigma": -1.0}, "sigma"),
        ({"kernel": "gaussian", "sigma": float("nan")}, "sigma"),
        ({"kernel": "anisotropic", "sigma_h": 0.0}, "sigma_h"),
        ({"kernel": "anisotropic", "sigma_v": float("inf")}, "sigma_v"),
        ({"row": []}, "row"),
        ({"col": [1.0, float("nan")]}, "col"),
        ({"row": [0.0, 0.0]}, "row"),
        ({"row": "abc"}, "row"),
        ({"row": torch.ones(2, 2)}, "row"),
        ({"col": np.ones((3, 1))}, "col"),
        ({"kernel": "explicit"}, "row"),
        ({"kernel": "uniform", "row": [1.0]}, "row"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
    ],
)
def test_bad_parameters_are_value_errors_naming_them(params: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        opkit.create("blur", shape=(1, 8, 8), **params)


def test_bad_shape_and_input_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        opkit.create("blur", shape=(1, 0, 8))
    op = opkit.create("blur", shape=(1, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        op(torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError, match="shape"):
        op.pinv(torch.zeros(1, 2, 8, 8))


@pytest.mark.slow
def test_construction_time_at_256_and_2048() -> None:  # pragma: no cover - timing
    import time

    t0 = time.perf_counter()
    Blur((3, 256, 256), kernel="gaussian", sigma=3.0)
    assert time.perf_counter() - t0 < 1.0
    t0 = time.perf_counter()
    Blur((3, 2048, 2048), kernel="gaussian", sigma=3.0)
    print("2048² construction", time.perf_counter() - t0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda() -> None:
    op = opkit.create("blur", shape=(3, 12, 10), kernel="gaussian", sigma=1.0)
    for dtype in DTYPES:
        check_operator(op, dtype=dtype, device="cuda")


# ------------------------------------------------------------------------------ reflective boundary


def _symmetric_kernel(length: int, seed: int) -> torch.Tensor:
    k = torch.rand(length, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) + 0.1
    k = k + k.flip(0)
    return k / k.sum()


@pytest.mark.parametrize("n", [1, 2, 3, 8, 13, 64])
@pytest.mark.parametrize("length", [1, 3, 9, 31, 201])  # 201: reflections wrap several times
def test_dct_diagonalises_the_reflective_correlation_exactly(n: int, length: int) -> None:
    from opkit_plugins._separable.correlation import correlation_matrix
    from opkit_plugins._separable.dct import dct_eigenvalues, dct_matrix

    k = _symmetric_kernel(length, n * 1000 + length)
    A = correlation_matrix(k, n, pad=(length - 1) // 2, boundary="symmetric")  # dense, float64
    C = dct_matrix(n)
    torch.testing.assert_close(C @ C.T, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close(C @ A @ C.T, torch.diag(dct_eigenvalues(k, n)), rtol=0, atol=1e-14)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 17, 256])
def test_fast_dct_equals_the_dense_matrix(n: int) -> None:
    from opkit_plugins._separable.dct import dct, dct_matrix, idct

    x = torch.randn(3, 4, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    C = dct_matrix(n)
    tol = 1e-14 * n  # rounding of either side grows with the length
    torch.testing.assert_close(dct(x), x @ C.T, rtol=0, atol=tol)
    torch.testing.assert_close(idct(x), x @ C, rtol=0, atol=tol)
    torch.testing.assert_close(dct(x.transpose(-1, -2), -2), (x @ C.T).transpose(-1, -2), rtol=0, atol=tol)
    torch.testing.assert_close(idct(dct(x.float())), x.float(), rtol=0, atol=1e-5)


def _reflect_pad_reference(x: torch.Tensor, col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Independent reference: numpy's half-sample 'symmetric' padding, then a valid conv2d."""
    lc, lr = col.numel(), row.numel()
    cc, cr = (lc - 1) // 2, (lr - 1) // 2
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (cc, lc - 1 - cc), (cr, lr - 1 - cr)), mode="symmetric")
    w = torch.outer(col, row).to(x.dtype).expand(x.shape[1], 1, lc, lr)
    return nnf.conv2d(torch.from_numpy(padded), w, groups=x.shape[1])


REFLECT = [
    {"kernel": "uniform", "size": 9},
    {"kernel": "gaussian", "sigma": 1.2},
    {"kernel": "anisotropic", "sigma_h": 3.0, "sigma_v": 0.8, "size": 7},
    {"kernel": "uniform", "size": 4},  # even: dense SVD of the reflective matrix
    {"row": [0.1, 0.7, 0.2], "col": [0.3, 0.4, 0.3]},  # asymmetric row, symmetric col: mixed
]


@pytest.mark.parametrize("params", REFLECT)
def test_reflective_blur_equals_dense_float64_and_a_padding_reference(params: dict[str, Any]) -> None:
    from opkit_plugins._separable.correlation import correlation_matrix
    from opkit_plugins._separable.dct import DCTFactor

    shape = (2, 12, 9)
    op = Blur(shape, boundary="reflect", threshold=0.0, **params)
    assert op.params.boundary == "reflect"
    for kernel, factor in ((op.col_kernel, op.col_factor), (op.row_kernel, op.row_factor)):
        symmetric = kernel.numel() % 2 == 1 and torch.equal(kernel, kernel.flip(0))
        assert isinstance(factor, DCTFactor) == symmetric
    x = torch.rand(3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = _reflect_pad_reference(x, op.col_kernel, op.row_kernel)
    torch.testing.assert_close(op(x), ref, rtol=0, atol=1e-14)
    Ac = correlation_matrix(op.col_kernel, 12, pad=kernel_centre(op.col_kernel.numel()), boundary="symmetric")
    Ar = correlation_matrix(op.row_kernel, 9, pad=kernel_centre(op.row_kernel.numel()), boundary="symmetric")
    H = torch.kron(Ac, Ar)
    one = (1, *shape[1:])
    op1 = Blur(one, boundary="reflect", threshold=0.0, **params)
    torch.testing.assert_close(dense_matrix(op1, one), H, rtol=0, atol=1e-13)
    torch.testing.assert_close(dense_matrix(op1.adjoint, one), H.T, rtol=0, atol=1e-13)
    svd_h = dense_matrix(lambda v: op1.U(op1.singulars_like(v) * op1.Vt(v)), one)
    torch.testing.assert_close(svd_h, H, rtol=0, atol=1e-13)
    y = torch.randn(2, *op1.out_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    expected = (torch.linalg.pinv(H) @ y.flatten(1).T).T
    torch.testing.assert_close(op1.pinv(y).flatten(1), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("params", REFLECT[:3])
@pytest.mark.parametrize("threshold", [0.0, 3e-2, 0.3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_reflective_blur_obeys_the_laws(params: dict[str, Any], threshold: float, dtype: torch.dtype) -> None:
    op = opkit.create("blur", shape=(3, 14, 11), boundary="reflect", threshold=threshold, **params)
    check_operator(op, dtype=dtype)
    if threshold == 0.3:  # truncated: H, Hᵀ and H† go through the DCTs, and equal dense float64
        assert max(op.col_factor.dropped, op.row_factor.dropped) > 0
        op1 = opkit.create("blur", shape=(1, 14, 11), boundary="reflect", threshold=threshold, **params)
        Ht = torch.kron(op1.col_factor.truncated, op1.row_factor.truncated)
        torch.testing.assert_close(dense_matrix(op1, (1, 14, 11)), Ht, rtol=0, atol=1e-13)
        torch.testing.assert_close(dense_matrix(op1.adjoint, (1, 14, 11)), Ht.T, rtol=0, atol=1e-13)


def test_reflective_construction_needs_no_eigendecomposition() -> None:
    from opkit_plugins._separable.dct import DCTFactor
    from opkit_plugins._separable.factorization import svd_cache_size

    before = svd_cache_size()
    op = Blur((3, 2048, 2048), kernel="gaussian", sigma=2.0, boundary="reflect", threshold=0.0)
    assert isinstance(op.col_factor, DCTFactor) and op.row_factor is op.col_factor
    assert svd_cache_size() == before  # no dense SVD, no n × n matrix formed
    assert "V" not in op.col_factor.__dict__


def test_default_boundary_is_zero_and_a_bad_one_is_named() -> None:
    assert opkit.create("blur", shape=(1, 8, 8)).params.boundary == "zero"
    with pytest.raises(ValueError, match="boundary"):
        opkit.create("blur", shape=(1, 8, 8), boundary="wrap")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("blur", {"kernel": "gaussian", "sigma": 1.3, "threshold": 0.0}),
        ("blur", {"row": [0.1, 0.7, 0.2], "col": [0.6, 0.4], "threshold": 0.0}),
        ("blur", {"kernel": "uniform", "size": 5, "boundary": "reflect", "threshold": 0.0}),
        ("sr_bicubic", {"factor": 2}),
        ("sr_bicubic", {"factor": 3, "boundary": "symmetric"}),
    ],
)
def test_the_convolution_path_of_other_devices_equals_the_slice_path(
    name: str, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off the CPU, H and Hᵀ run as depthwise 1-D (transposed) convolutions: same maps."""
    import opkit_plugins._separable.correlation as sep

    op = opkit.create(name, shape=(2, 12, 18), **params)
    x = torch.rand(2, 2, 12, 18, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    y = torch.rand(2, *op.out_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    slices = (op(x), op.adjoint(y))
    monkeypatch.setattr(sep, "SHIFT_TAPS", 0)
    convs = (op(x), op.adjoint(y))
    for a, b in zip(slices, convs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    check_operator(op)
