"""The operator: ``Y = A_c X A_rᵀ`` on every channel, with its Kronecker SVD applied implicitly."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as nnf
from torch import Tensor

import opkit
from opkit_plugins._separable.dct import DCTFactor, dct, idct
from opkit_plugins._separable.factor import Factor

__all__ = ["SeparableSVDOperator"]


def _length(factor: Factor) -> int:
    """Input length ``n`` of a 1-D factor (without forming a DCT factor's dense matrices)."""
    return factor.n if isinstance(factor, DCTFactor) else int(factor.V.shape[0])


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
    direct_adjoint : callable, optional
        ``direct_adjoint(y) -> x``, a native implementation of ``A_cᵀ Y A_r`` (a transposed
        convolution); used for :meth:`adjoint` under the same condition.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        col: Factor,
        row: Factor,
        direct: Callable[[Tensor], Tensor] | None = None,
        direct_adjoint: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(shape)
        _, h, w = self.shape
        if _length(col) != h or _length(row) != w:
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
        exact = col.dropped == 0.0 and row.dropped == 0.0
        self._direct = direct if exact else None
        self._direct_adjoint = direct_adjoint if exact else None
        # float64 buffers, cast on demand (Operator.cast caches per device/dtype); the dense
        # truncated matrices and pseudo-inverses are formed on first use.
        self._buffers: dict[str, Callable[[], Tensor]] = {
            "Vc": lambda: col.V,
            "Vr": lambda: row.V,
            "Uc": lambda: col.U,
            "Ur": lambda: row.U,
            "Ac": lambda: col.truncated,
            "Ar": lambda: row.truncated,
            "Pc": lambda: col.pinv,
            "Pr": lambda: row.pinv,
        }

    def _b(self, key: str, like: Tensor) -> Tensor:
        return self.cast(key, self._buffers[key](), like)

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

    #: For each map: the dense buffer of each axis and whether it is transposed on the column
    #: (left) side; the row side uses the opposite transposition.
    _MAPS: ClassVar[dict[str, tuple[str, bool]]] = {
        "Vt": ("V", True),
        "V": ("V", False),
        "Ut": ("U", True),
        "U": ("U", False),
        "H": ("A", False),
        "Ht": ("A", True),
        "P": ("P", False),
    }

    def _apply(self, x: Tensor, kind: str) -> Tensor:
        """One of the maps of :attr:`_MAPS` on both axes (column axis ``-2``, row axis ``-1``)."""
        name, transposed = self._MAPS[kind]
        col, row = self._col, self._row
        if not isinstance(col, DCTFactor) and not isinstance(row, DCTFactor):
            left, right = self._b(name + "c", x), self._b(name + "r", x)
            return self._sandwich(left.mT if transposed else left, x, right if transposed else right.mT)
        out = self._axis(x, col, "c", kind, -2)
        return self._axis(out, row, "r", kind, -1)

    def _axis(self, x: Tensor, factor: Factor, side: str, kind: str, dim: int) -> Tensor:
        """Apply one 1-D map along ``dim``: a dense product, or DCTs for a :class:`DCTFactor`."""
        name, transposed = self._MAPS[kind]
        if isinstance(factor, DCTFactor):
            shape = (-1, 1) if dim == -2 else (-1,)

            def scale(vec: Tensor, tag: str) -> Tensor:
                return self.cast(f"dct_{tag}_{side}", vec.reshape(shape), x)

            if kind == "Vt":
                return dct(x, dim)
            if kind == "V":
                return idct(x, dim)
            if kind == "Ut":
                return dct(x, dim).mul_(scale(factor.sign, "sign"))
            if kind == "U":
                return idct(x * scale(factor.sign, "sign"), dim)
            if kind == "P":
                return idct(dct(x, dim).mul_(scale(factor.signed_pinv, "pinv")), dim)
            return idct(dct(x, dim).mul_(scale(factor.signed, "signed")), dim)  # H and Hᵀ: symmetric
        mat = self._b(name + side, x)
        if dim == -2:
            return torch.matmul(mat.mT if transposed else mat, x)
        return torch.matmul(x, mat if transposed else mat.mT)

    def Vt(self, x: Tensor) -> Tensor:
        """``V_cᵀ X V_r`` per channel, shape ``(B, C, H, W)``."""
        return self._apply(x, "Vt")

    def V(self, v: Tensor) -> Tensor:
        """``V_c Ṽ V_rᵀ`` per channel."""
        return self._apply(v, "V")

    def Ut(self, y: Tensor) -> Tensor:
        """``U_cᵀ Y U_r`` in the top-left ``m_c × m_r`` corner of a zero ``(B, C, H, W)`` grid."""
        core = self._apply(y, "Ut")
        _, h, w = self.shape
        if (h, w) == (self._mc, self._mr):
            return core
        return nnf.pad(core, (0, w - self._mr, 0, h - self._mc))

    def U(self, v: Tensor) -> Tensor:
        """``U_c Ṽ U_rᵀ`` of the top-left ``m_c × m_r`` corner of ``v``."""
        return self._apply(v[..., : self._mc, : self._mr], "U")

    def forward(self, x: Tensor) -> Tensor:
        """``H x``: the native ``direct`` map if nothing was truncated, else ``A_{c,t} X A_{r,t}ᵀ``."""
        if self._direct is not None:
            return self._direct(x)
        return self._apply(x, "H")

    def adjoint(self, y: Tensor) -> Tensor:
        """``Hᵀ y = A_{c,t}ᵀ Y A_{r,t}`` (the native ``direct_adjoint`` if nothing was truncated)."""
        self.check_measurement(y)
        if self._direct_adjoint is not None:
            return self._direct_adjoint(y)
        return self._apply(y, "Ht")

    def pinv(self, y: Tensor) -> Tensor:
        """``H† y = A_{c,t}⁺ Y A_{r,t}⁺ᵀ`` (equal to ``V Σ⁺ Uᵀ y``, two products per channel)."""
        self.check_measurement(y)
        return self._apply(y, "P")
