"""sr_block and sr_bicubic: direct references, dense pseudo-inverses, kernels, errors."""

from __future__ import annotations

import einops
import numpy as np
import pytest
import torch
import torch.nn.functional as nnf

import opkit
from opkit.testing import check_operator
from opkit_plugins._separable.correlation import symmetric_index
from opkit_plugins.superres import (
    SRBicubic,
    SRBlock,
    bicubic_kernel,
    bicubic_padding,
    block_basis,
    keys_cubic,
    sr_bicubic_reference,
)
from tests.helpers import dense_matrix

DTYPES = [torch.float64, torch.float32]


# --------------------------------------------------------------------------------------- sr_block


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sr_block_laws_and_avg_pool_reference(factor: int, dtype: torch.dtype) -> None:
    shape = (3, 2 * factor, 3 * factor)  # non-square
    op = SRBlock(shape, factor=factor)
    report = check_operator(op, dtype=dtype, reference=lambda x: nnf.avg_pool2d(x, factor))
    assert report.errors["H x equals the direct implementation"] <= 1e-6
    # the SVD itself (not only the fast forward) is the pooling
    x = torch.rand(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(factor))
    svd_h = op.U(op.singulars_like(x) * op.Vt(x))
    torch.testing.assert_close(svd_h, nnf.avg_pool2d(x, factor), rtol=0, atol=1e-14)


@pytest.mark.parametrize("factor", [1, 2, 3, 5])
def test_block_basis_is_orthonormal_with_constant_first_vector(factor: int) -> None:
    q = block_basis(factor)
    eye = torch.eye(factor * factor, dtype=torch.float64)
    torch.testing.assert_close(q.T @ q, eye, rtol=0, atol=1e-14)
    torch.testing.assert_close(q[:, 0], torch.full((factor * factor,), 1.0 / factor, dtype=torch.float64))
    op = SRBlock((1, factor, factor), factor=factor)
    expected = torch.zeros(factor * factor, dtype=torch.float64)
    expected[0] = 1.0 / factor
    torch.testing.assert_close(op.singulars.flatten(), expected)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_sr_block_vt_is_the_householder_basis_on_every_block(factor: int) -> None:
    op = SRBlock((2, 2 * factor, 3 * factor), factor=factor)
    x = torch.rand(
        3, 2, 2 * factor, 3 * factor, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    blocks = einops.rearrange(x, "b c (h p) (w q) -> b c h w (p q)", p=factor, q=factor)
    expected = blocks @ block_basis(factor)  # row k of Qᵀ p is the coefficient k
    got = einops.rearrange(op.Vt(x), "b c h p w q -> b c h w (p q)")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)


def test_sr_block_spectral_layout() -> None:
    op = SRBlock((2, 8, 12), factor=4)
    x = torch.rand(3, 2, 8, 12, dtype=torch.float64)
    v = op.Vt(x)
    assert v.shape == (3, 2, 2, 4, 3, 4)
    assert op.singulars.shape == (4, 1, 4)
    y = op(x)
    uty = op.Ut(y)
    assert uty.shape == v.shape
    mask = torch.ones(4, 1, 4, dtype=torch.bool)
    mask[0, 0, 0] = False
    assert torch.count_nonzero(uty * mask) == 0
    # the measured coordinate is coefficient 0, <q1, p> = f · (block mean)
    torch.testing.assert_close(v[:, :, :, 0, :, 0], 4 * y, rtol=0, atol=1e-13)


@pytest.mark.parametrize("factor", [2, 3])
def test_sr_block_pinv_matches_dense_pinv(factor: int) -> None:
    shape = (2, 2 * factor, factor)
    op = SRBlock(shape, factor=factor)
    H = dense_matrix(op, shape)
    torch.testing.assert_close(
        H, dense_matrix(lambda x: nnf.avg_pool2d(x, factor), shape), rtol=0, atol=1e-15
    )
    y = torch.randn(3, *op.out_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = (torch.linalg.pinv(H) @ y.flatten(1).T).T
    torch.testing.assert_close(op.pinv(y).flatten(1), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.adjoint(y).flatten(1), (H.T @ y.flatten(1).T).T, rtol=0, atol=1e-14)


# ------------------------------------------------------------------------------------- sr_bicubic


def test_keys_cubic_values_and_partition_of_unity() -> None:
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], dtype=torch.float64)
    # a = -1/2: W(0)=1, W(1/2)=0.5625, W(1)=0, W(3/2)=-0.0625, W(2)=0
    expected = torch.tensor([1, 0.5625, 0, -0.0625, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(keys_cubic(x), expected)
    shift = torch.linspace(0, 1, 7, dtype=torch.float64)
    grid = torch.arange(-3, 4, dtype=torch.float64)
    sums = keys_cubic(shift[:, None] - grid[None, :]).sum(1)
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-14)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5])
def test_bicubic_kernel_has_4f_taps_summing_to_one(factor: int) -> None:
    k = bicubic_kernel(factor)
    assert k.numel() == 4 * factor
    assert abs(float(k.sum()) - 1.0) < 1e-15
    # raw samples W(x_t) sum to f exactly (partition of unity), so the 1/f scaling is the imresize one
    t = torch.arange(4 * factor, dtype=torch.float64)
    x = (t - bicubic_padding(factor) + 0.5 - factor / 2) / factor
    assert abs(float(keys_cubic(x).sum()) - factor) < 1e-12
    if factor % 2 == 0:
        torch.testing.assert_close(k, k.flip(0), rtol=0, atol=0)  # symmetric about the middle
    else:
        assert float(k[-1]) == 0.0  # the tap at x = 2
        torch.testing.assert_close(k[:-1], k[:-1].flip(0), rtol=0, atol=0)  # centred on a pixel


def test_bicubic_kernel_factor_two_is_the_imresize_kernel() -> None:
    # MATLAB imresize(·, 0.5, 'bicubic') weights: W((2t - 7)/4)/2 for t = 0..7
    expected = torch.tensor([-0.0234375, -0.0703125, 0.2265625, 0.8671875], dtype=torch.float64) / 2
    torch.testing.assert_close(bicubic_kernel(2), torch.cat([expected, expected.flip(0)]), rtol=0, atol=1e-15)
    # and the DDRM experiment's formula x_i = (i - 2f + 1/2)/f for even f
    f = 4
    i = torch.arange(4 * f, dtype=torch.float64)
    ddrm = keys_cubic((i - 2 * f + 0.5) / f)
    torch.testing.assert_close(bicubic_kernel(f), ddrm / ddrm.sum(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sr_bicubic_laws_and_strided_conv_reference(factor: int, dtype: torch.dtype) -> None:
    shape = (2, 5 * factor, 3 * factor)  # non-square
    op = SRBicubic(shape, factor=factor)
    assert op.out_shape == (2, 5, 3)
    check_operator(op, dtype=dtype, reference=lambda x: sr_bicubic_reference(x, factor))


@pytest.mark.parametrize("factor", [2, 3])
def test_sr_bicubic_svd_equals_one_strided_conv2d(factor: int) -> None:
    """U Σ Vᵀ x (the decomposition, not the fast forward) equals a single strided conv2d."""
    shape = (3, 4 * factor, 6 * factor)
    op = SRBicubic(shape, factor=factor)
    x = torch.rand(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    svd_h = op.U(op.singulars_like(x) * op.Vt(x))
    # independent reference: the full 2-D kernel, conv2d zero padding p and stride f
    k = bicubic_kernel(factor)
    p = bicubic_padding(factor)
    w = torch.outer(k, k).expand(3, 1, 4 * factor, 4 * factor)
    xp = nnf.pad(x, (p, 3 * factor - p, p, 3 * factor - p))
    ref = nnf.conv2d(xp, w, stride=factor, groups=3)
    torch.testing.assert_close(svd_h, ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(op(x), ref, rtol=0, atol=1e-14)


def _reflect(j: int, n: int) -> int:
    """Half-sample symmetric reflection of one index (oracle for the tests)."""
    while not 0 <= j < n:
        j = -j - 1 if j < 0 else 2 * n - 1 - j
    return j


@pytest.mark.parametrize(
    ("factor", "threshold", "boundary"),
    [(2, 0.0, "zero"), (3, 0.0, "zero"), (2, 0.6, "zero"), (2, 0.0, "symmetric"), (3, 0.5, "symmetric")],
)
def test_sr_bicubic_pinv_matches_dense_pinv(factor: int, threshold: float, boundary: str) -> None:
    shape = (1, 3 * factor, 2 * factor)
    op = SRBicubic(shape, factor=factor, threshold=threshold, boundary=boundary)
    H = dense_matrix(op, shape)
    # independent truncated operator: per-axis numpy SVD with the same threshold, Kronecker product
    _, h, w = shape
    k = bicubic_kernel(factor).numpy()
    p = bicubic_padding(factor)

    def axis_matrix(n: int) -> np.ndarray:
        A = np.zeros((n // factor, n))
        for i in range(n // factor):
            for t in range(4 * factor):
                j = i * factor + t - p
                if boundary == "symmetric":
                    A[i, _reflect(j, n)] += k[t]
                elif 0 <= j < n:
                    A[i, j] = k[t]
        u, s, vt = np.linalg.svd(A, full_matrices=False)
        return (u * np.where(s >= threshold, s, 0.0)) @ vt

    Ht = torch.from_numpy(np.kron(axis_matrix(h), axis_matrix(w)))
    torch.testing.assert_close(H, Ht, rtol=0, atol=1e-13)
    if threshold > 0:
        assert op.col_factor.dropped > 0  # the threshold did truncate something
    y = torch.randn(2, *op.out_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = (torch.linalg.pinv(Ht) @ y.flatten(1).T).T
    torch.testing.assert_close(op.pinv(y).flatten(1), expected, rtol=0, atol=1e-11)
    assert bool(torch.isfinite(op.pinv(y)).all())


def test_symmetric_index_folds_by_half_sample_reflection() -> None:
    got = symmetric_index(3, -4, 8).tolist()
    assert got == [_reflect(j, 3) for j in range(-4, 8)] == [2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1]


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sr_bicubic_symmetric_boundary_laws_and_reference(factor: int, dtype: torch.dtype) -> None:
    shape = (2, 3 * factor, 2 * factor)
    op = SRBicubic(shape, factor=factor, boundary="symmetric")
    check_operator(op, dtype=dtype, reference=lambda x: sr_bicubic_reference(x, factor, "symmetric"))
    # reflection preserves constants: a flat image stays flat, also at the border
    flat = torch.full((1, *shape), 0.25, dtype=torch.float64)
    torch.testing.assert_close(op(flat), torch.full((1, 2, 3, 2), 0.25, dtype=torch.float64))


@pytest.mark.parametrize("factor", [2, 4])
def test_sr_bicubic_symmetric_matches_the_ddrm_construction_for_even_factors(factor: int) -> None:
    """DDRM's SRConv: output i centred at input i·f + f/2, taps j = c − 2f … c + 2f − 1, reflected."""
    n = 6 * factor
    k = bicubic_kernel(factor)
    A = np.zeros((n // factor, n))
    for c in range(factor // 2, n + factor // 2, factor):
        for j in range(c - 2 * factor, c + 2 * factor):
            A[c // factor, _reflect(j, n)] += float(k[j - c + 2 * factor])
    op = SRBicubic((1, n, n), factor=factor, boundary="symmetric")
    torch.testing.assert_close(op.col_factor.matrix, torch.from_numpy(A), rtol=0, atol=1e-15)


def test_sr_bicubic_truncated_still_obeys_laws() -> None:
    op = SRBicubic((2, 12, 8), factor=2, threshold=0.6)
    assert op.col_factor.dropped > 0
    for dtype in DTYPES:
        check_operator(op, dtype=dtype)


def test_sr_bicubic_spectral_layout() -> None:
    op = SRBicubic((2, 8, 12), factor=4)
    x = torch.rand(1, 2, 8, 12, dtype=torch.float64)
    assert op.Vt(x).shape == (1, 2, 8, 12)
    s = op.singulars[0]
    assert s.shape == (8, 12)
    assert torch.count_nonzero(s[2:]) == 0 and torch.count_nonzero(s[:, 3:]) == 0
    assert bool((s[:2, :3] > 0).all())
    # singular values pair with their own coefficients: the product of the 1-D ones
    torch.testing.assert_close(s[:2, :3], torch.outer(op.col_factor.s, op.row_factor.s))
    uty = op.Ut(op(x))
    assert torch.count_nonzero(uty[..., 2:, :]) == 0 and torch.count_nonzero(uty[..., 3:]) == 0


# ------------------------------------------------------------------------------------ both / errors


@pytest.mark.parametrize("name", ["sr_block", "sr_bicubic"])
def test_registered_and_created_through_the_registry(name: str) -> None:
    assert name in opkit.available()
    op = opkit.create(name, shape=(3, 8, 4), factor=2)
    assert op.name == name
    x = torch.rand(5, 3, 8, 4)
    assert op(x).shape == (5, 3, 4, 2)
    assert op.pinv(op(x)).shape == x.shape


@pytest.mark.parametrize("name", ["sr_block", "sr_bicubic"])
@pytest.mark.parametrize("bad", [0, -2, 2.0, True, "2", None])
def test_bad_factor_is_a_value_error_naming_it(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match="factor"):
        opkit.create(name, shape=(1, 8, 8), factor=bad)


@pytest.mark.parametrize("name", ["sr_block", "sr_bicubic"])
@pytest.mark.parametrize("shape", [(3, 9, 8), (3, 8, 6), (1, 3, 3)])
def test_size_not_divisible_by_factor_is_a_value_error(name: str, shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="divisible by factor=4"):
        opkit.create(name, shape=shape, factor=4)


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf"), "x"])
def test_bad_threshold_is_a_value_error_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match="threshold"):
        opkit.create("sr_bicubic", shape=(1, 8, 8), factor=2, threshold=bad)


@pytest.mark.parametrize("bad", ["reflect", "", None, 0])
def test_bad_boundary_is_a_value_error_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match="boundary"):
        opkit.create("sr_bicubic", shape=(1, 8, 8), factor=2, boundary=bad)


@pytest.mark.parametrize("name", ["sr_block", "sr_bicubic"])
def test_wrong_measurement_shape_is_rejected(name: str) -> None:
    op = opkit.create(name, shape=(1, 8, 8), factor=2)
    with pytest.raises(ValueError, match="shape"):
        op.pinv(torch.zeros(1, 1, 8, 8))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["sr_block", "sr_bicubic"])
def test_on_cuda(name: str) -> None:
    op = opkit.create(name, shape=(3, 12, 8), factor=2)
    for dtype in DTYPES:
        check_operator(op, dtype=dtype, device="cuda")
