"""Factorisation: float64 SVDs of 1-D matrices, split by symmetry and cached by kernel and geometry.

:func:`factorize` decomposes any 1-D matrix; :func:`correlation_factor` decomposes the matrix of a
1-D correlation, cached (:func:`functools.lru_cache`) by the kernel's bytes and the geometry, so
that building an operator again, or a square image whose two axes share a kernel, costs no second
SVD and no second matrix.

The factorisations run with one thread and denormal flushing on (LAPACK is much faster so); both
settings are scoped to the call (:func:`lapack_settings`) and the caller's own values are put back.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from opkit_plugins._separable.correlation import correlation_matrix
from opkit_plugins._separable.factor import CACHE_SIZE, Factor

__all__ = [
    "FACTOR_THREADS",
    "Geometry",
    "correlation_factor",
    "factorize",
    "flushes_denormals",
    "lapack_settings",
    "svd_cache_size",
]


#: Threads used for the 1-D float64 factorisations. One by default: LAPACK's dense symmetric
#: eigensolver gains little from threads at these sizes and collapses under CPU oversubscription
#: (measured 15-40x slower with 2 threads than with 1 on a loaded 2-core machine).
FACTOR_THREADS = 1


def _half_blocks(A: Tensor) -> tuple[Tensor, Tensor]:
    """The even and odd blocks ``A_e = K_eᵀ A K_e`` and ``A_o = K_oᵀ A K_o`` of a centrosymmetric ``A``.

    ``A`` is ``m × n`` with ``J_m A J_n = A`` (``J`` the exchange matrix, i.e. ``A`` equals itself
    rotated by 180°). Write ``m = 2p + a`` and ``n = 2q + b`` with ``a, b ∈ {0, 1}``. The even
    vectors (``J x = x``) of ``ℝⁿ`` have the orthonormal basis ``(e_j + e_{n−1−j})/√2``
    (``j < q``), plus ``e_q`` when ``n`` is odd: the columns of ``K_e``; the odd vectors
    (``J x = −x``) have ``(e_j − e_{n−1−j})/√2``, the columns of ``K_o``. ``A`` maps even
    vectors to even ones and odd to odd (``A J = J A``), so ``[K_e K_o]ᵀ A [K_e K_o]`` is
    block diagonal ``diag(A_e, A_o)`` with, using ``A[m−1−i, n−1−j] = A[i, j]``,

    .. math::

        A_e = \\begin{pmatrix} A_{tl} + A_{tr} J & \\sqrt2\\,a_{tc} \\\\
                                \\sqrt2\\,a_{ml} & a_{mc} \\end{pmatrix},
        \\qquad A_o = A_{tl} - A_{tr} J,

    where ``A_tl = A[:p, :q]``, ``A_tr J = A[:p, n−q:]`` reversed left to right, ``a_tc =
    A[:p, q]``, ``a_ml = A[p, :q]`` and ``a_mc = A[p, q]`` (the middle row and column exist only
    for odd sizes). Both blocks are formed from slices, with no product; ``A_e`` is
    ``(p + a) × (q + b)`` and ``A_o`` is ``p × q``. For symmetric ``A`` both blocks are
    symmetric, bit for bit.

    Parameters
    ----------
    A : torch.Tensor
        A centrosymmetric float64 matrix.

    Returns
    -------
    tuple of torch.Tensor
        ``(A_e, A_o)``.
    """
    m, n = A.shape
    p, a, q, b = m // 2, m % 2, n // 2, n % 2
    right = A[:p, n - q :].flip(1)
    even = torch.empty(p + a, q + b, dtype=A.dtype)
    even[:p, :q] = A[:p, :q] + right
    if b:
        even[:p, q] = math.sqrt(2.0) * A[:p, q]
    if a:
        even[p, :q] = math.sqrt(2.0) * A[p, :q]
        if b:
            even[p, q] = A[p, q]
    return even, A[:p, :q] - right


def _unfold(even: Tensor, odd: Tensor, n: int, cols: Tensor) -> Tensor:
    """``[K_e E | K_o O] P``: vectors of the even and odd subspaces of ``ℝⁿ`` back in ``ℝⁿ``.

    ``E`` (``(q + b) × k_e``) holds coordinates in the basis ``K_e`` and ``O`` (``q × k_o``) in
    ``K_o`` (see :func:`_half_blocks`); column ``j`` of ``[K_e E | K_o O]`` is written to column
    ``cols[j]`` of the ``n × (k_e + k_o)`` result (a permutation applied while unfolding, so the
    large matrix is written once).
    """
    q, b = n // 2, n % 2
    r = 1.0 / math.sqrt(2.0)
    ke = even.shape[1]
    ce, co = cols[:ke], cols[ke:]
    out = torch.empty(n, cols.numel(), dtype=even.dtype)
    top = even[:q] * r
    out[:q, ce] = top
    out[n - q :, ce] = top.flip(0)
    if b:
        out[q, ce] = even[q]
        out[q, co] = 0.0
    top = odd * r
    out[:q, co] = top
    out[n - q :, co] = top.flip(0).neg_()
    return out


def _dense_svd(A: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Full SVD ``(U, σ, V)`` of a float64 matrix, unsorted for symmetric input (see :func:`_svd`)."""
    m, n = A.shape
    if m == n and torch.equal(A, A.T):
        # symmetric: an eigendecomposition is faster than an SVD and gives one,
        # A = Q Λ Qᵀ = (Q sign Λ) |Λ| Qᵀ.
        lam, Q = torch.linalg.eigh(A)
        sign = torch.where(lam < 0, -1.0, 1.0).to(torch.float64)
        return Q * sign, lam.abs(), Q
    U, s, Vh = torch.linalg.svd(A, full_matrices=True)
    return U, s, Vh.mT


def flushes_denormals() -> bool:
    """Whether this thread flushes denormal (subnormal) numbers to zero.

    torch sets the mode (:func:`torch.set_flush_denormal`) but has no getter; the smallest
    positive float64 survives a tensor's arithmetic only when the mode is off.

    Returns
    -------
    bool
        The mode of the calling thread.
    """
    return torch.tensor([5e-324], dtype=torch.float64).mul(1.0).item() == 0.0


@contextlib.contextmanager
def lapack_settings() -> Iterator[None]:
    """Run the block with the factorisations' settings, and put the caller's own back afterwards.

    In the block, torch uses at most :data:`FACTOR_THREADS` threads and flushes denormal numbers
    to zero (subnormal eigenvector entries slow LAPACK about tenfold). On leaving it, whatever
    happened inside, the caller's thread count and denormal mode (:func:`flushes_denormals`) are
    restored, so building an operator changes no process-wide setting.

    Yields
    ------
    None
    """
    threads = torch.get_num_threads()
    flush = flushes_denormals()
    wanted = max(1, min(FACTOR_THREADS, threads))
    if wanted != threads:
        torch.set_num_threads(wanted)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(flush)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _svd(A: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Full SVD ``(U, σ, V)`` (descending ``σ``) of a float64 CPU matrix.

    A symmetric matrix is factorised by an eigendecomposition (LAPACK's divide and conquer,
    ``syevd``), anything else by ``gesdd``. A **centrosymmetric** matrix (``J A J = A``, i.e. equal
    to itself rotated by 180°: the 1-D matrix of a zero-padded correlation with a symmetric,
    centred kernel, such as every odd uniform or Gaussian blur, or a strided bicubic with an even
    factor) is first split into its even and odd blocks (:func:`_half_blocks`), two problems of
    half the size, and the two factorisations are unfolded back (:func:`_unfold`): a quarter of
    the ``O(n³)`` work, and exact (the split is an orthogonal change of basis made of slices).
    Runs under :func:`lapack_settings`.
    """
    m, n = A.shape
    with lapack_settings():
        if m >= 2 and torch.equal(A, A.flip(0, 1)):
            even, odd = _half_blocks(A)
            Ue, se, Ve = _dense_svd(even)
            Uo, so, Vo = _dense_svd(odd)
            me = se.numel()
            sigma = torch.cat([se, so])
            order = torch.argsort(sigma, descending=True, stable=True)
            pos = torch.empty_like(order)
            pos[order] = torch.arange(m)  # where each (even, odd) column goes in descending order
            U = _unfold(Ue, Uo, m, pos)
            # V: the columns paired with σ in the same order, then both null spaces
            null, ne = torch.arange(m, n), Ve.shape[1] - me
            V = _unfold(Ve, Vo, n, torch.cat([pos[:me], null[:ne], pos[me:], null[ne:]]))
            return U, sigma[order], V
        U, sigma, V = _dense_svd(A)
        order = torch.argsort(sigma, descending=True, stable=True)
        if bool((order == torch.arange(m)).all()):
            return U, sigma, V
        return U[:, order], sigma[order], torch.cat([V[:, order], V[:, m:]], 1)


def _wide(A: Tensor) -> Tensor:
    """``A``; ``ValueError`` if it has more rows than columns."""
    m, n = A.shape
    if m > n:
        raise ValueError(f"a 1-D factor must not have more rows than columns, got {m} × {n}")
    return A


def _threshold(A: Tensor, svd: tuple[Tensor, Tensor, Tensor], threshold: float) -> Factor:
    """The :class:`Factor` of ``A`` from its SVD, singular values below ``threshold`` dropped."""
    m, n = A.shape
    U, sigma, V = svd
    smax = float(sigma[0]) if sigma.numel() else 0.0
    rank_tol = max(m, n) * torch.finfo(torch.float64).eps * smax
    keep = (sigma > rank_tol) & (sigma >= float(threshold))
    cut = (~keep) & (sigma > rank_tol)
    dropped = float(sigma[cut].max()) if bool(cut.any()) else 0.0
    return Factor(A, U, sigma, V, keep, dropped)


def factorize(matrix: Tensor, threshold: float = 0.0) -> Factor:
    """Float64 SVD of a 1-D matrix, with singular values below ``threshold`` set to zero.

    Singular values at or below the numerical-rank tolerance ``max(m, n) · eps · σ_max`` are
    always zeroed (as :func:`torch.linalg.pinv` does), so the pseudo-inverse never divides by
    rounding noise. Nothing is cached here: :func:`correlation_factor` caches the factors of
    correlation matrices by kernel and geometry.

    Parameters
    ----------
    matrix : torch.Tensor
        An ``m × n`` matrix with ``m ≤ n``.
    threshold : float
        Singular values ``< threshold`` are zeroed.

    Returns
    -------
    Factor
        The factorisation.
    """
    A = _wide(matrix.detach().to(device="cpu", dtype=torch.float64).contiguous())
    return _threshold(A, _svd(A), threshold)


def correlation_factor(
    kernel: Sequence[float] | Tensor,
    n: int,
    *,
    stride: int = 1,
    pad: int = 0,
    m: int | None = None,
    threshold: float = 0.0,
    boundary: str = "zero",
) -> Factor:
    """:func:`factorize` of :func:`~opkit_plugins._separable.correlation.correlation_matrix`, cached.

    Factors are cached by the kernel's bytes, the geometry and ``threshold``, and SVDs by the
    kernel and geometry (so another threshold costs no second SVD); a cache hit neither builds
    nor factorises the ``m × n`` matrix, so rebuilding an operator costs microseconds even at
    2048 pixels. Each cache keeps the :data:`~opkit_plugins._separable.factor.CACHE_SIZE` most
    recently used entries.

    Parameters
    ----------
    kernel : sequence of float or torch.Tensor
        The taps.
    n : int
        Input length.
    stride, pad, m, boundary
        As in :func:`~opkit_plugins._separable.correlation.correlation_matrix`.
    threshold : float
        As in :func:`factorize`.

    Returns
    -------
    Factor
        The factorisation.
    """
    k = torch.as_tensor(kernel, dtype=torch.float64).detach().cpu().flatten().contiguous()
    rows = n // stride if m is None else m
    return _correlation_factor((k.numpy().tobytes(), n, stride, pad, rows, boundary), float(threshold))


#: A correlation matrix as a hashable key: ``(kernel bytes, n, stride, pad, rows, boundary)``.
Geometry = tuple[bytes, int, int, int, int, str]


@functools.lru_cache(maxsize=CACHE_SIZE)
def _correlation_factor(geometry: Geometry, threshold: float) -> Factor:
    A, svd = _correlation_svd(geometry)
    return _threshold(A, svd, threshold)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _correlation_svd(geometry: Geometry) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """The correlation matrix of ``geometry`` and its SVD (:func:`_svd`)."""
    kernel, n, stride, pad, rows, boundary = geometry
    k = torch.from_numpy(np.frombuffer(kernel, dtype=np.float64).copy())
    A = _wide(correlation_matrix(k, n, stride=stride, pad=pad, m=rows, boundary=boundary))
    return A, _svd(A)


def svd_cache_size() -> int:
    """How many SVDs of correlation matrices are cached now (at most ``CACHE_SIZE``).

    Returns
    -------
    int
        The number of cached SVDs.
    """
    return _correlation_svd.cache_info().currsize
