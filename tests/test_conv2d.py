"""conv2d: H, U, V and Σ against dense float64 oracles built from the definitions; threshold; params.

The oracles are written from first principles, independently of the operator's FFT code:

* ``H``: the circular convolution matrix, one entry ``k[a, b]`` per tap and pixel (and
  :func:`scipy.ndimage.convolve` with ``mode="wrap"`` for the direct implementation);
* ``V``: the real Fourier basis from its cosines and sines, in the documented layout;
* ``Σ``: ``|K|`` from the DFT sum of the kernel (no FFT), and a dense SVD's singular values;
* ``U``: ``H V Σ⁻¹`` on the non-zero singular values, ``V`` on the zero ones (the convention).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image

import opkit
from opkit import kernels
from opkit.testing import check_operator
from opkit_plugins.conv2d import Conv2d, Conv2dParams, circular_convolution, transfer_function
from tests.helpers import assert_rejects_wrong_shapes, dense_matrix

F64 = torch.float64
#: Non-square sizes with every parity combination.
SIZES = [(5, 7), (6, 4), (4, 9), (7, 6), (3, 3), (8, 5), (1, 6), (5, 1), (2, 2)]


def _kernel(kh: int, kw: int, seed: int, signed: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    k = torch.rand((kh, kw), generator=g, dtype=F64) + 0.1
    return k - 0.55 if signed else k


def conv_matrix(k: np.ndarray, h: int, w: int) -> np.ndarray:
    """``D[(i, j), (i', j')] = Σ k[a, b]`` over taps with ``i' = i − a + c_h``, ``j' = j − b + c_w`` (mod)."""
    kh, kw = k.shape
    ch, cw = kh // 2, kw // 2
    d = np.zeros((h * w, h * w))
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    rows = (i * w + j).ravel()
    for a in range(kh):
        for b in range(kw):
            cols = (((i - a + ch) % h) * w + (j - b + cw) % w).ravel()
            np.add.at(d, (rows, cols), k[a, b])
    return d


def dft_of_kernel(k: np.ndarray, h: int, w: int) -> np.ndarray:
    """``K[p, q] = Σ_ab k[a, b] exp(−2πi (p (a − c_h)/H + q (b − c_w)/W))`` for ``q ≤ W/2``, by the sum."""
    kh, kw = k.shape
    a = np.arange(kh)[:, None] - kh // 2
    b = np.arange(kw)[None, :] - kw // 2
    p = np.arange(h)[:, None, None, None]
    q = np.arange(w // 2 + 1)[None, :, None, None]
    phase = np.exp(-2j * np.pi * (p * a / h + q * b / w))
    return (phase * k).sum(axis=(2, 3))


def real_fourier_basis(h: int, w: int) -> np.ndarray:
    """``Vᵀ`` as an explicit ``(HW, HW)`` matrix, rows in the operator's documented layout."""
    wi = (w - 1) // 2
    selfcols = [0, w // 2] if w % 2 == 0 else [0]
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    rows = np.zeros((h, w, h * w))
    norm = 1 / math.sqrt(h * w)
    for r in range(h):
        for col in range(w):
            if col < 2 * wi:
                q, part = col // 2 + 1, col % 2
                theta = 2 * np.pi * (r * i / h + q * j / w)
                vec = math.sqrt(2) * (np.cos(theta) if part == 0 else -np.sin(theta))
            else:
                q = selfcols[col - 2 * wi]
                theta = 2 * np.pi * (r * i / h + q * j / w)
                if r <= h // 2:
                    scale = 1.0 if r == 0 or 2 * r == h else math.sqrt(2)
                    vec = scale * np.cos(theta)
                else:
                    vec = -math.sqrt(2) * np.sin(theta)
            rows[r, col] = (norm * vec).ravel()
    return rows.reshape(h * w, h * w)


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("signed", [False, True])
def test_dense_oracles_float64(h: int, w: int, signed: bool) -> None:
    k = _kernel(min(h, 3), min(w, 4), seed=h * 31 + w, signed=signed)
    op = Conv2d((1, h, w), kernel=k, threshold=0.0)
    n = h * w
    shape = (1, h, w)
    H = dense_matrix(op.forward, shape).numpy()
    D = conv_matrix(k.numpy(), h, w)
    np.testing.assert_allclose(H, D, rtol=0, atol=1e-12)
    # V from the explicit cosine/sine basis; Vᵀ is its transpose
    VtT = real_fourier_basis(h, w)
    V = dense_matrix(op.V, shape).numpy()
    Vt = dense_matrix(op.Vt, shape).numpy()
    np.testing.assert_allclose(V, VtT.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Vt, VtT, rtol=0, atol=1e-12)
    np.testing.assert_allclose(V.T @ V, np.eye(n), rtol=0, atol=1e-12)
    # Σ: |K| from the DFT sum, each pair's value on both of its coordinates
    s = op.singulars.reshape(-1).numpy()
    mag = np.abs(dft_of_kernel(k.numpy(), h, w))
    packed = np.zeros((h, w))
    wi = (w - 1) // 2
    packed[:, : 2 * wi] = np.repeat(mag[:, 1 : 1 + wi], 2, axis=1)
    packed[:, 2 * wi :] = mag[:, [0, w // 2] if w % 2 == 0 else [0]]
    tol = max(h, w) * np.finfo(np.float64).eps * mag.max()
    np.testing.assert_allclose(s, np.where(packed.ravel() > tol, packed.ravel(), 0.0), rtol=0, atol=1e-12)
    # the singular values are those of a dense SVD, as multisets
    np.testing.assert_allclose(np.sort(s), np.sort(np.linalg.svd(D, compute_uv=False)), rtol=0, atol=1e-10)
    # U = H V Σ⁻¹ where Σ > 0, and V where Σ = 0; Uᵀ its transpose; U Σ Vᵀ = H
    U = dense_matrix(op.U, shape).numpy()
    Ut = dense_matrix(op.Ut, shape).numpy()
    pos = s > 0
    np.testing.assert_allclose(U[:, pos], (D @ VtT.T)[:, pos] / s[pos], rtol=0, atol=1e-10)
    np.testing.assert_allclose(U[:, ~pos], VtT.T[:, ~pos], rtol=0, atol=1e-12)
    np.testing.assert_allclose(Ut, U.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(n), rtol=0, atol=1e-12)
    np.testing.assert_allclose(U @ np.diag(s) @ Vt, D, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("h", "w"), [(5, 7), (6, 8), (9, 4)])
def test_direct_implementation_is_scipy_wrap_convolution(h: int, w: int) -> None:
    k = _kernel(min(h, 4), min(w, 3), seed=7)
    x = torch.rand((2, 3, h, w), generator=torch.Generator().manual_seed(1), dtype=F64)
    want = np.stack(
        [
            [scipy.ndimage.convolve(x[b, c].numpy(), k.numpy(), mode="wrap") for c in range(3)]
            for b in range(2)
        ]
    )
    np.testing.assert_allclose(circular_convolution(x, k).numpy(), want, rtol=0, atol=1e-13)
    op = Conv2d((3, h, w), kernel=k, threshold=0.0)
    np.testing.assert_allclose(op(x).numpy(), want, rtol=0, atol=1e-13)


def test_transfer_function_is_the_dft_of_the_centred_kernel() -> None:
    k = _kernel(5, 4, seed=3)
    np.testing.assert_allclose(transfer_function(k, 9, 8).numpy(), dft_of_kernel(k.numpy(), 9, 8), atol=1e-13)
    with pytest.raises(ValueError, match="does not fit"):
        transfer_function(k, 4, 8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "params",
    [
        {"kernel": "motion", "size": 9, "intensity": 0.5, "seed": 3},
        {"kernel": "gaussian", "sigma": 1.5, "size": 7},
        {"kernel": "gaussian", "sigma1": 2.0, "sigma2": 0.5, "angle": 30.0, "size": 9},
        {"kernel": "uniform", "size": 4},
        {"kernel": "disk", "radius": 2.2},
    ],
)
def test_every_law_for_each_generator(dtype: torch.dtype, params: dict[str, object]) -> None:
    op = opkit.create("conv2d", shape=(3, 12, 15), **params)
    k = op.kernel
    assert abs(float(k.sum()) - 1) < 1e-12
    check_operator(op, dtype=dtype)
    # with threshold 0 the operator is the plain circular convolution
    op0 = opkit.create("conv2d", shape=(3, 12, 15), **params, threshold=0.0)
    check_operator(op0, dtype=dtype, reference=lambda x: circular_convolution(x, k))


def test_threshold_drops_small_singular_values_exactly() -> None:
    k = kernels.gaussian(7, 1.5)
    full = Conv2d((1, 10, 9), kernel=k, threshold=0.0)
    cut = Conv2d((1, 10, 9), kernel=k, threshold=0.1)
    s0, s = full.singulars.flatten(), cut.singulars.flatten()
    assert cut.dropped > 0 and full.dropped == 0
    assert bool(((s == 0) | (s >= 0.1)).all())
    torch.testing.assert_close(s, torch.where(s0 >= 0.1, s0, torch.zeros_like(s0)), rtol=0, atol=0)
    # the thresholded operator is U Σ_t Vᵀ with the full operator's U and V (same bases)
    shape = (1, 10, 9)
    U, Vt = dense_matrix(full.U, shape), dense_matrix(full.Vt, shape)
    torch.testing.assert_close(dense_matrix(cut.forward, shape), U @ torch.diag(s) @ Vt, rtol=0, atol=1e-12)
    pinv = dense_matrix(cut.pinv, shape)
    s_plus = torch.where(s > 0, 1 / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
    torch.testing.assert_close(pinv, Vt.T @ torch.diag(s_plus) @ U.T, rtol=0, atol=1e-10)
    assert bool(torch.isfinite(pinv).all())
    check_operator(cut)


def test_numerically_zero_frequencies_count_as_zero_without_threshold() -> None:
    # a 2-tap box on an even width has K = 0 exactly at the Nyquist column
    op = Conv2d((1, 6, 8), kernel=torch.ones(1, 2, dtype=F64) / 2, threshold=0.0)
    assert op.dropped == 6  # the six bins of the Nyquist column
    check_operator(op)
    check_operator(op, dtype=torch.float32)


def test_any_real_kernel_explicit_and_unnormalised() -> None:
    k = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]], dtype=F64)  # Laplacian
    op = Conv2d((2, 8, 7), kernel=k.numpy(), threshold=1e-3)
    assert torch.equal(op.kernel, k)  # used as given
    check_operator(op)
    assert op.dropped == 1  # the DC component: the Laplacian sums to zero


def test_kernel_from_files_and_params(tmp_path: Path) -> None:
    arr = np.zeros((5, 5))
    arr[2, 1:4] = (1, 2, 1)
    np.save(tmp_path / "k.npy", arr)
    op = opkit.create("conv2d", shape=(1, 8, 8), kernel=str(tmp_path / "k.npy"))
    torch.testing.assert_close(op.kernel, torch.from_numpy(arr / 4))
    Image.fromarray((arr * 100).astype(np.uint8)).save(tmp_path / "k.png")
    op = opkit.create("conv2d", shape=(1, 8, 8), kernel=tmp_path / "k.png")
    torch.testing.assert_close(op.kernel, torch.from_numpy(arr / 4))
    np.save(tmp_path / "neg.npy", -arr)
    with pytest.raises(ValueError, match="negative"):
        opkit.create("conv2d", shape=(1, 8, 8), kernel=str(tmp_path / "neg.npy"))
    with pytest.raises(ValueError, match="neither a generator"):
        opkit.create("conv2d", shape=(1, 8, 8), kernel="gauss")


def test_defaults_are_the_papers() -> None:
    op = opkit.create("conv2d", shape=(1, 64, 64))
    torch.testing.assert_close(op.kernel, kernels.gaussian(19, 3.0))
    op = opkit.create("conv2d", shape=(1, 64, 64), kernel="motion")
    torch.testing.assert_close(op.kernel, kernels.motion(61, 0.5, generator=torch.Generator().manual_seed(0)))
    assert opkit.create("conv2d", shape=(1, 16, 16), kernel="uniform").kernel.shape == (9, 9)
    assert opkit.create("conv2d", shape=(1, 16, 16), kernel="disk").kernel.shape == (7, 7)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"kernel": "motion", "sigma": 2.0}, "sigma does not apply"),
        ({"kernel": torch.ones(3, 3), "size": 3}, "size does not apply to an explicit kernel"),
        ({"kernel": "gaussian", "sigma": 1.0, "sigma1": 2.0, "sigma2": 1.0}, "not both"),
        ({"kernel": "gaussian", "sigma1": 2.0}, "both sigma1 and sigma2"),
        ({"kernel": "motion", "intensity": 1.5}, "intensity"),
        ({"kernel": "motion", "seed": -1}, "seed"),
        ({"kernel": torch.zeros(2, 2)}, "all zero"),
        ({"kernel": torch.ones(2, 2, 2)}, "2-D"),
        ({"kernel": [[1.0, float("nan")]]}, "NaN"),
        ({"threshold": -1.0}, "threshold"),
        ({"kernel": "uniform", "size": 0}, "size"),
    ],
)
def test_bad_parameters_are_refused_by_name(params: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Conv2dParams(**params)


def test_kernel_larger_than_the_image_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit images of 32×40"):
        opkit.create("conv2d", shape=(3, 32, 40), kernel="motion", size=61)


def test_shapes_are_checked() -> None:
    op = opkit.create("conv2d", shape=(3, 6, 5), kernel="uniform", size=3)
    assert_rejects_wrong_shapes(op, (1, 3, 6, 4), (1, 3, 5, 5), (1, 2, 6, 5))


def test_building_changes_no_process_wide_state() -> None:
    state = torch.random.get_rng_state()
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    op = opkit.create("conv2d", shape=(3, 64, 48), kernel="motion", size=31, seed=5)
    op(torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_default_dtype() == dtype and torch.get_num_threads() == threads


def test_float32_results_stay_float32_and_match_float64() -> None:
    op = opkit.create("conv2d", shape=(3, 16, 12), kernel="motion", size=9, seed=1)
    x = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(0), dtype=F64)
    for fn in (op.forward, op.Vt, op.Ut, op.pinv, op.adjoint):
        a, b = fn(x), fn(x.float())
        assert b.dtype == torch.float32
        torch.testing.assert_close(b.double(), a, rtol=0, atol=1e-4 * float(a.abs().max()))
    v = op.Vt(x)
    for fn in (op.V, op.U):
        assert fn(v.float()).dtype == torch.float32
        torch.testing.assert_close(fn(v.float()).double(), fn(v), rtol=0, atol=1e-5)
