"""The DCT: fast orthonormal transforms, and the factor of a reflective correlation they diagonalise.

A symmetric odd kernel correlated with half-sample reflection at the borders is diagonalised by
the DCT-II (:class:`DCTFactor`): its factor costs ``O(n·L)`` to build and ``O(n log n)`` to apply
(:func:`dct`, :func:`idct`), with no eigendecomposition and no dense ``n × n`` matrix.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from opkit_plugins._separable.correlation import correlation_matrix
from opkit_plugins._separable.factor import CACHE_SIZE, Factor

__all__ = [
    "DCTFactor",
    "dct",
    "dct_eigenvalues",
    "dct_factor",
    "dct_matrix",
    "idct",
    "is_centred_symmetric",
]


def dct_matrix(n: int) -> Tensor:
    """The orthonormal ``n``-point DCT-II matrix, float64.

    ``C[k, j] = α_k cos(π k (2j + 1) / (2n))`` with ``α_0 = √(1/n)`` and ``α_k = √(2/n)``;
    ``C Cᵀ = I`` and ``C x`` is the DCT-II of ``x`` (:func:`dct`).

    Parameters
    ----------
    n : int
        Length.

    Returns
    -------
    torch.Tensor
        ``C``, ``n × n``.
    """
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    c = torch.cos(math.pi * k * (2 * j + 1) / (2 * n)) * math.sqrt(2.0 / n)
    c[0] = math.sqrt(1.0 / n)
    return c


def _twiddle(n: int, like: Tensor, inverse: bool) -> Tensor:
    """``α_k e^{−iπk/(2n)}`` (or its reciprocal conjugate for the inverse), ``k ≤ n/2``, cached."""
    return _twiddle_on(n, like.dtype, like.device, inverse)


@functools.cache
def _twiddle_on(n: int, dtype: torch.dtype, device: torch.device, inverse: bool) -> Tensor:
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    alpha = torch.full_like(k, math.sqrt(2.0 / n))
    alpha[0] = math.sqrt(1.0 / n)
    angle = math.pi * k / (2 * n)
    twiddle = torch.polar(1.0 / alpha, angle) if inverse else torch.polar(alpha, -angle)
    cplx = torch.complex128 if dtype == torch.float64 else torch.complex64
    return twiddle.to(device=device, dtype=cplx)


def dct(x: Tensor, dim: int = -1) -> Tensor:
    """Orthonormal DCT-II along ``dim`` in ``O(n log n)`` (one real FFT of length ``n``).

    Makhoul's algorithm: with ``v = (x_0, x_2, x_4, …, x_5, x_3, x_1)`` (even samples, then the
    odd ones reversed) and ``V = FFT(v)``, the DCT-II is ``X_k = α_k Re(e^{−iπk/(2n)} V_k)``;
    for a real ``x`` only ``V_0 … V_{n/2}`` are needed, since ``X_{n−k} = −α Im(e^{−iπk/(2n)} V_k)``.
    Equal to ``C x`` with ``C`` = :func:`dct_matrix` (to rounding).

    Parameters
    ----------
    x : torch.Tensor
        Real input (float32 or float64).
    dim : int
        Axis.

    Returns
    -------
    torch.Tensor
        The coefficients, natural frequency order, same shape.
    """
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    half = n // 2 + 1
    v = torch.cat([x[..., 0::2], x[..., 1::2].flip(-1)], -1)
    z = torch.fft.rfft(v) * _twiddle(n, x, False)
    out = torch.empty_like(x)
    out[..., :half] = z.real
    out[..., half:] = z.imag[..., 1 : n - half + 1].flip(-1).neg()
    return out.movedim(-1, dim)


def idct(c: Tensor, dim: int = -1) -> Tensor:
    """Inverse of :func:`dct` (the orthonormal DCT-III, ``Cᵀ c``) along ``dim`` in ``O(n log n)``.

    Parameters
    ----------
    c : torch.Tensor
        Coefficients in natural frequency order.
    dim : int
        Axis.

    Returns
    -------
    torch.Tensor
        The signal.
    """
    c = c.movedim(dim, -1)
    n = c.shape[-1]
    half, top = n // 2 + 1, (n + 1) // 2
    imag = torch.zeros((*c.shape[:-1], half), dtype=c.dtype, device=c.device)
    imag[..., 1:] = c.flip(-1)[..., : half - 1].neg()
    v = torch.fft.irfft(torch.complex(c[..., :half].contiguous(), imag) * _twiddle(n, c, True), n=n)
    out = torch.empty_like(c)
    out[..., 0::2] = v[..., :top]
    out[..., 1::2] = v[..., top:].flip(-1)
    return out.movedim(-1, dim)


def dct_eigenvalues(kernel: Sequence[float] | Tensor, n: int) -> Tensor:
    """Eigenvalues ``λ_k`` of a symmetric odd kernel's half-sample reflective correlation, ``O(n·L)``.

    ``λ_k = k_c + 2 Σ_{d=1}^{c} k_{c+d} cos(π k d / n)`` for ``k = 0 … n−1`` (natural DCT order),
    with ``c = (L − 1)/2`` the centre; see :class:`DCTFactor` for the proof that the DCT-II
    diagonalises the matrix with exactly these values.

    Parameters
    ----------
    kernel : sequence of float or torch.Tensor
        ``L`` taps, ``L`` odd, ``k_{c+d} = k_{c−d}``.
    n : int
        Signal length.

    Returns
    -------
    torch.Tensor
        ``λ`` (float64, length ``n``).
    """
    k = torch.as_tensor(kernel, dtype=torch.float64).flatten()
    c = (k.numel() - 1) // 2
    d = torch.arange(1, c + 1, dtype=torch.float64)
    freq = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    return k[c] + 2.0 * (k[c + 1 :] * torch.cos(math.pi * freq * d / n)).sum(1)


def is_centred_symmetric(kernel: Sequence[float] | Tensor) -> bool:
    """Whether a kernel has odd length and equals its reverse (``k_{c+d} = k_{c−d}``).

    Parameters
    ----------
    kernel : sequence of float or torch.Tensor
        Taps.

    Returns
    -------
    bool
        ``True`` for a symmetric kernel centred on its middle tap.
    """
    k = torch.as_tensor(kernel, dtype=torch.float64).flatten()
    return k.numel() % 2 == 1 and torch.equal(k, k.flip(0))


class DCTFactor(Factor):
    """The thresholded SVD of a half-sample reflective correlation with a symmetric odd kernel.

    **Claim.** Let ``A`` (``n × n``) be the "same" correlation ``(A x)_i = Σ_{|d| ≤ c} k_{c+d}
    x̃_{i+d}`` of a kernel with ``k_{c+d} = k_{c−d}``, where ``x̃`` extends ``x`` by half-sample
    symmetric reflection (``x̃_{−1−j} = x̃_j``, ``x̃_{n+j} = x̃_{n−1−j}``, period ``2n``:
    :func:`symmetric_index`, ``boundary="symmetric"`` of :func:`correlation_matrix`). Then
    ``A = Cᵀ diag(λ) C`` with ``C`` the orthonormal DCT-II (:func:`dct_matrix`) and ``λ`` as in
    :func:`dct_eigenvalues`.

    **Proof.** The DCT-II basis functions ``φ_k(j) = cos(π k (2j + 1)/(2n))``, read at any
    integer ``j``, are ``2n``-periodic and even about ``j = −1/2`` (and about ``j = n − 1/2``):
    ``φ_k(−1−j) = cos(−π k (2j+1)/(2n)) = φ_k(j)``. So the reflected extension of ``x = Σ_k X_k
    α_k φ_k`` is ``x̃ = Σ_k X_k α_k φ_k`` at every integer, with no error at the borders (this is
    where the half-sample reflection matters: a zero or whole-sample extension breaks it). By
    the symmetry of the kernel and ``cos(a + b) + cos(a − b) = 2 cos a cos b``,

    .. math::

        \\sum_{|d| \\le c} k_{c+d}\\, φ_k(i + d)
          = φ_k(i) \\Big(k_c + 2\\sum_{d=1}^{c} k_{c+d} \\cos\\frac{π k d}{n}\\Big)
          = λ_k\\, φ_k(i),

    for every ``i``, kernel length included (``c ≥ n`` only wraps the reflection more often).
    Hence ``A Cᵀ = Cᵀ diag(λ)``. ∎

    The SVD follows, ``A = (Cᵀ sign λ) |λ| C``: ``V = Cᵀ``, ``U = Cᵀ diag(sign λ)``,
    ``σ = |λ|``, **in natural frequency order** (not sorted: ``V``/``Vᵀ`` are then an inverse
    and forward DCT, ``O(n log n)`` by :func:`idct` and :func:`dct`). Values at or below the
    rank tolerance ``n · ε · max σ``, or below ``threshold``, are zeroed as in
    :func:`~opkit_plugins._separable.factorization.factorize`.
    The dense matrices (``matrix``, ``U``, ``V``, ``truncated``, ``pinv``) are formed only on
    request (tests, small sizes); the operators apply the factor through the transforms.

    Parameters
    ----------
    kernel : sequence of float or torch.Tensor
        Symmetric odd taps (see :func:`is_centred_symmetric`).
    n : int
        Signal length.
    threshold : float
        Singular values below it are zeroed.
    """

    def __init__(self, kernel: Sequence[float] | Tensor, n: int, threshold: float = 0.0) -> None:
        k = torch.as_tensor(kernel, dtype=torch.float64).detach().cpu().flatten()
        if not is_centred_symmetric(k):
            raise ValueError("a DCT factor needs a symmetric kernel of odd length")
        self.kernel, self.n = k, n
        lam = dct_eigenvalues(k, n)
        self.eigenvalues = lam
        """``λ`` in natural DCT order (signed)."""
        sigma = lam.abs()
        rank_tol = n * torch.finfo(torch.float64).eps * float(sigma.max())
        keep = (sigma > rank_tol) & (sigma >= float(threshold))
        cut = (~keep) & (sigma > rank_tol)
        self.sigma, self.keep = sigma, keep
        self.dropped = float(sigma[cut].max()) if bool(cut.any()) else 0.0
        self.s = torch.where(keep, sigma, torch.zeros_like(sigma))
        self.sign = torch.where(lam < 0, -1.0, 1.0).to(torch.float64)
        """``sign λ`` (``U = V diag(sign)``)."""
        self.signed = self.sign * self.s
        """``sign(λ) s``: the truncated eigenvalues, ``A_t = Cᵀ diag(signed) C``."""
        self.signed_pinv = torch.where(keep, 1.0 / torch.where(keep, lam, torch.ones_like(lam)), 0.0)
        """The eigenvalues of ``A_t⁺`` (``1/λ`` where kept, else 0)."""

    @functools.cached_property
    def matrix(self) -> Tensor:  # type: ignore[override]
        """The dense reflective correlation matrix ``A`` (``n × n``, float64)."""
        c = (self.kernel.numel() - 1) // 2
        return correlation_matrix(self.kernel, self.n, pad=c, boundary="symmetric")

    @functools.cached_property
    def V(self) -> Tensor:  # type: ignore[override]
        """``Cᵀ`` (dense; the operators use :func:`idct` instead)."""
        return dct_matrix(self.n).T.contiguous()

    @functools.cached_property
    def U(self) -> Tensor:  # type: ignore[override]
        """``Cᵀ diag(sign λ)`` (dense)."""
        return self.V * self.sign

    @functools.cached_property
    def truncated(self) -> Tensor:
        """``A_t = Cᵀ diag(sign(λ) s) C`` (dense)."""
        return (self.V * self.signed) @ self.V.T

    @functools.cached_property
    def pinv(self) -> Tensor:
        """``A_t⁺ = Cᵀ diag(λ⁺) C`` (dense)."""
        return (self.V * self.signed_pinv) @ self.V.T


def dct_factor(kernel: Sequence[float] | Tensor, n: int, threshold: float = 0.0) -> DCTFactor:
    """:class:`DCTFactor`, cached by kernel, length and threshold.

    Parameters
    ----------
    kernel : sequence of float or torch.Tensor
        Symmetric odd taps.
    n : int
        Length.
    threshold : float
        As in :func:`~opkit_plugins._separable.factorization.factorize`.

    Returns
    -------
    DCTFactor
        The factor.
    """
    k = torch.as_tensor(kernel, dtype=torch.float64).detach().cpu().flatten().contiguous()
    return _dct_factor(k.numpy().tobytes(), n, float(threshold))


@functools.lru_cache(maxsize=CACHE_SIZE)
def _dct_factor(kernel: bytes, n: int, threshold: float) -> DCTFactor:
    """:class:`DCTFactor` of the float64 taps whose bytes are ``kernel`` (a hashable key)."""
    return DCTFactor(torch.from_numpy(np.frombuffer(kernel, dtype=np.float64).copy()), n, threshold)
