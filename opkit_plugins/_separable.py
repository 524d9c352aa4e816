"""Shared machinery of the separable operators (``blur``, ``sr_bicubic``): Kronecker SVDs.

A separable linear map of an image ``X`` (one ``H × W`` channel) is ``Y = A_c X A_rᵀ`` where
``A_c`` (``m_c × H``) acts along the columns (vertically) and ``A_r`` (``m_r × W``) along the
rows (horizontally). In vectorised form ``H = A_r ⊗ A_c`` (DDRM paper, appendix D.5). With the
1-D SVDs ``A_c = U_c S_c V_cᵀ`` and ``A_r = U_r S_r V_rᵀ``,

.. math::

    H = (U_r ⊗ U_c)\\,(S_r ⊗ S_c)\\,(V_r ⊗ V_c)^T ,

so ``Vᵀ x`` is ``V_cᵀ X V_r`` and ``V v`` is ``V_c Ṽ V_rᵀ``: two small matrix products per channel,
never an ``n × n`` matrix. The singular value paired with the coefficient ``(i, j)`` of
``V_cᵀ X V_r`` is ``s_c[i] · s_r[j]`` (the outer product of the 1-D singular values). Here the
spectral layout *is* that ``(C, H, W)`` grid, so each coefficient sits next to its own singular value
by construction; nothing is sorted or permuted (the reference implementation sorts globally and
pairs values with the wrong coefficients when channels are interleaved).

1-D convolution matrices are built by :func:`correlation_matrix`, factorised once in float64 by
:func:`factorize` (cached per matrix) and then cast lazily to the data's device and dtype.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

import attrs
import torch
import torch.nn.functional as nnf
from torch import Tensor

import opkit

__all__ = ["Factor", "SeparableSVDOperator", "correlation_matrix", "factorize"]


def correlation_matrix(
    kernel: Sequence[float], n: int, *, stride: int = 1, pad: int = 0, m: int | None = None
) -> Tensor:
    """Dense float64 matrix of a zero-padded, strided 1-D correlation.

    .. math::

        (A x)_i = \\sum_{t=0}^{L-1} k_t \\, x_{i s + t - p}, \\qquad x_j = 0 \\text{ outside } [0, n),

    i.e. ``A[i, j] = k[j - i·s + p]`` where ``0 ≤ j - i·s + p < L``. This is exactly what
    ``torch.nn.functional.conv1d`` (a cross-correlation) computes on the input zero-padded with
    ``p`` samples on the left.

    Parameters
    ----------
    kernel : sequence of float
        The taps ``k_0 … k_{L-1}``.
    n : int
        Input length.
    stride : int
        Stride ``s``.
    pad : int
        Zero samples added on the left, ``p`` (the index of the tap that lands on ``x_{i s}``).
    m : int, optional
        Output length; defaults to ``n // stride``.

    Returns
    -------
    torch.Tensor
        The ``m × n`` float64 matrix.
    """
    k = torch.as_tensor(kernel, dtype=torch.float64).flatten()
    rows = n // stride if m is None else m
    i = torch.arange(rows).unsqueeze(1)
    j = torch.arange(n).unsqueeze(0)
    t = j - i * stride + pad
    valid = (t >= 0) & (t < k.numel())
    return torch.where(valid, k[t.clamp(0, k.numel() - 1)], torch.zeros((), dtype=torch.float64))


@attrs.frozen(eq=False)
class Factor:
    """A 1-D matrix ``A`` (``m × n``, ``m ≤ n``) with its thresholded SVD, all in float64.

    ``A ≈ U diag(s) V[:, :m]ᵀ`` where ``s`` has been thresholded; the *truncated* operator
    ``A_t = U diag(s) V[:, :m]ᵀ`` is the one the separable operators apply.

    Attributes
    ----------
    matrix : torch.Tensor
        ``A`` itself.
    U : torch.Tensor
        ``m × m`` orthogonal.
    s : torch.Tensor
        ``m`` singular values, descending, zero where dropped.
    V : torch.Tensor
        ``n × n`` orthogonal; its first ``m`` columns pair with ``s``.
    truncated : torch.Tensor
        ``A_t`` (``m × n``).
    pinv : torch.Tensor
        ``A_t⁺ = V[:, :m] diag(s⁺) Uᵀ`` (``n × m``), ``s⁺ = 1/s`` where ``s > 0`` and ``0`` elsewhere.
    dropped : float
        Largest singular value above the numerical-rank tolerance that the threshold set to
        zero (``0.0`` if none): then ``A_t`` equals ``A`` to float64 rounding.
    """

    matrix: Tensor
    U: Tensor
    s: Tensor
    V: Tensor
    truncated: Tensor
    pinv: Tensor
    dropped: float


_CACHE: OrderedDict[tuple[int, int, str, float], Factor] = OrderedDict()
_CACHE_SIZE = 16


def _svd(A: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Full SVD ``(U, s, V)`` (descending ``s``) of a float64 CPU matrix."""
    m, n = A.shape
    if m == n and torch.equal(A, A.T):
        # symmetric: an eigendecomposition is about twice as fast as an SVD and gives one,
        # A = Q Λ Qᵀ = (Q sign Λ) |Λ| Qᵀ.
        lam, Q = torch.linalg.eigh(A)
        order = torch.argsort(lam.abs(), descending=True)
        lam, Q = lam[order], Q[:, order]
        sign = torch.where(lam < 0, -1.0, 1.0).to(torch.float64)
        return Q * sign, lam.abs(), Q
    U, s, Vh = torch.linalg.svd(A, full_matrices=True)
    return U, s, Vh.mT


def factorize(matrix: Tensor, threshold: float = 0.0) -> Factor:
    """Float64 SVD of a 1-D matrix, with singular values below ``threshold`` set to zero.

    Singular values at or below the numerical-rank tolerance ``max(m, n) · eps · s_max`` are
    always zeroed (as :func:`torch.linalg.pinv` does), so the pseudo-inverse never divides by
    rounding noise. Factorisations are cached per (matrix bytes, threshold), so building the same
    operator again, or a square image whose two axes share a kernel, costs no second SVD.

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
    A = matrix.detach().to(device="cpu", dtype=torch.float64).contiguous()
    m, n = A.shape
    if m > n:
        raise ValueError(f"a 1-D factor must not have more rows than columns, got {m} × {n}")
    key = (m, n, hashlib.sha256(A.numpy().tobytes()).hexdigest(), float(threshold))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    U, s, V = _svd(A)
    smax = float(s[0]) if s.numel() else 0.0
    rank_tol = max(m, n) * torch.finfo(torch.float64).eps * smax
    keep = (s > rank_tol) & (s >= float(threshold))
    cut = (~keep) & (s > rank_tol)
    dropped = float(s[cut].max()) if bool(cut.any()) else 0.0
    st = torch.where(keep, s, torch.zeros_like(s))
    sp = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
    Vm = V[:, :m]
    hit = Factor(matrix=A, U=U, s=st, V=V, truncated=(U * st) @ Vm.mT, pinv=(Vm * sp) @ U.mT, dropped=dropped)
    _CACHE[key] = hit
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return hit


class SeparableSVDOperator(opkit.SVDOperator):
    """``Y = A_c X A_rᵀ`` on every channel, with its Kronecker SVD applied implicitly.

    Spectral layout: ``Vt(x)`` has shape ``(B, C, H, W)``, ``Vt(x)[b, c] = V_cᵀ X_{b,c} V_r``;
    :attr:`singulars` has shape ``(1, H, W)`` with ``singulars[0, i, j] = s_c[i]·s_r[j]``
    (zero for ``i ≥ m_c`` or ``j ≥ m_r``, the null space of a downsampling). ``Ut(y)`` places
    ``U_cᵀ Y U_r`` in the top-left ``m_c × m_r`` corner of that grid and zeros elsewhere;
    ``U(v)`` reads that corner only.

    ``H`` is the operator of the (thresholded) SVD: ``H = A_{c,t} ⊗ A_{r,t}`` with
    ``A_t = U diag(s_t) Vᵀ``. It is applied as two matrix products with the dense truncated 1-D
    matrices, or, when no singular value was dropped (so ``A_t = A``), by the given ``direct``
    implementation (a native convolution), which is then the same operator.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``.
    col, row : Factor
        Factorisations of ``A_c`` (``m_c × H``) and ``A_r`` (``m_r × W``).
    direct : callable, optional
        ``direct(x) -> y``, a native implementation of ``A_c X A_rᵀ``; used for :meth:`forward`
        only when neither factor was truncated.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        col: Factor,
        row: Factor,
        direct: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(shape)
        _, h, w = self.shape
        if col.V.shape[0] != h or row.V.shape[0] != w:
            raise ValueError(
                f"factor sizes {tuple(col.matrix.shape)}, {tuple(row.matrix.shape)} do not fit {self.shape}"
            )
        self._col, self._row = col, row
        self._mc, self._mr = col.s.numel(), row.s.numel()
        sc = torch.zeros(h, dtype=torch.float64)
        sc[: self._mc] = col.s
        sr = torch.zeros(w, dtype=torch.float64)
        sr[: self._mr] = row.s
        self._s = torch.outer(sc, sr).unsqueeze(0)
        self._direct = direct if (col.dropped == 0.0 and row.dropped == 0.0) else None
        # float64 buffers, cast on demand (Operator.cast caches per device/dtype)
        self._buffers = {
            "Vc": col.V,
            "Vr": row.V,
            "Uc": col.U,
            "Ur": row.U,
            "Ac": col.truncated,
            "Ar": row.truncated,
            "Pc": col.pinv,
            "Pr": row.pinv,
        }

    def _b(self, key: str, like: Tensor) -> Tensor:
        return self.cast(key, self._buffers[key], like)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """``(C, m_c, m_r)``."""
        return (self.shape[0], self._mc, self._mr)

    @property
    def singulars(self) -> Tensor:
        """``s_c[i]·s_r[j]`` on the ``(1, H, W)`` grid (float64)."""
        return self._s

    @property
    def col_factor(self) -> Factor:
        """The factorisation of the vertical 1-D matrix ``A_c``."""
        return self._col

    @property
    def row_factor(self) -> Factor:
        """The factorisation of the horizontal 1-D matrix ``A_r``."""
        return self._row

    @staticmethod
    def _sandwich(left: Tensor, x: Tensor, right_t: Tensor) -> Tensor:
        # left @ X @ right_t for every (b, c): the right product folds batch, channels and rows
        # into one GEMM; the left one is a broadcast batched product.
        return torch.matmul(left, torch.matmul(x, right_t))

    def Vt(self, x: Tensor) -> Tensor:
        """``V_cᵀ X V_r`` per channel, shape ``(B, C, H, W)``."""
        return self._sandwich(self._b("Vc", x).mT, x, self._b("Vr", x))

    def V(self, v: Tensor) -> Tensor:
        """``V_c Ṽ V_rᵀ`` per channel."""
        return self._sandwich(self._b("Vc", v), v, self._b("Vr", v).mT)

    def Ut(self, y: Tensor) -> Tensor:
        """``U_cᵀ Y U_r`` in the top-left ``m_c × m_r`` corner of a zero ``(B, C, H, W)`` grid."""
        core = self._sandwich(self._b("Uc", y).mT, y, self._b("Ur", y))
        _, h, w = self.shape
        return nnf.pad(core, (0, w - self._mr, 0, h - self._mc))

    def U(self, v: Tensor) -> Tensor:
        """``U_c Ṽ U_rᵀ`` of the top-left ``m_c × m_r`` corner of ``v``."""
        return self._sandwich(self._b("Uc", v), v[..., : self._mc, : self._mr], self._b("Ur", v).mT)

    def forward(self, x: Tensor) -> Tensor:
        """``H x``: the native ``direct`` map if nothing was truncated, else ``A_{c,t} X A_{r,t}ᵀ``."""
        if self._direct is not None:
            return self._direct(x)
        return self._sandwich(self._b("Ac", x), x, self._b("Ar", x).mT)

    def adjoint(self, y: Tensor) -> Tensor:
        """``Hᵀ y = A_{c,t}ᵀ Y A_{r,t}``."""
        return self._sandwich(self._b("Ac", y).mT, y, self._b("Ar", y))

    def pinv(self, y: Tensor) -> Tensor:
        """``H† y = A_{c,t}⁺ Y A_{r,t}⁺ᵀ`` (equal to ``V Σ⁺ Uᵀ y``, two products per channel)."""
        self.check_measurement(y)
        return self._sandwich(self._b("Pc", y), y, self._b("Pr", y).mT)
