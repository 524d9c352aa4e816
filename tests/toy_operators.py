"""Small operators with known dense matrices, for testing the core and the kit."""

from __future__ import annotations

import torch
from torch import Tensor

import opkit


class DenseSVD(opkit.SVDOperator):
    """``H = U diag(s) Vᵀ`` from explicit dense factors; ``y`` is flat, ``(B, m)``.

    Spectral layout: ``n`` coefficients; the first ``m`` are the measured ones.
    """

    def __init__(self, shape: tuple[int, int, int], U: Tensor, s: Tensor, V: Tensor) -> None:
        super().__init__(shape)
        self.Um, self.s_m, self.Vm = U, s, V
        n, m = V.shape[0], U.shape[0]
        s_full = torch.zeros(n, dtype=s.dtype)
        s_full[:m] = s
        self._s = s_full
        self.m, self.n = m, n

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.m,)

    @property
    def singulars(self) -> Tensor:
        return self._s

    def Vt(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.cast("V", self.Vm, x)

    def V(self, v: Tensor) -> Tensor:
        return (v @ self.cast("V", self.Vm, v).T).view(v.shape[0], *self.shape)

    def Ut(self, y: Tensor) -> Tensor:
        out = y.new_zeros(y.shape[0], self.n)
        out[:, : self.m] = y @ self.cast("U", self.Um, y)
        return out

    def U(self, v: Tensor) -> Tensor:
        return v[:, : self.m] @ self.cast("U", self.Um, v).T


def random_dense_svd(shape: tuple[int, int, int], m: int, rank: int, seed: int) -> tuple[DenseSVD, Tensor]:
    """A random ``m × n`` operator of the given rank and its dense float64 matrix."""
    g = torch.Generator().manual_seed(seed)
    n = shape[0] * shape[1] * shape[2]
    U, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    s = torch.zeros(m, dtype=torch.float64)
    s[:rank] = torch.rand(rank, generator=g, dtype=torch.float64) + 0.1
    op = DenseSVD(shape, U, s, V)
    A = U @ torch.diag(s) @ V[:, :m].T
    return op, A


class RoundToGrid(opkit.EncodeDecodeOperator[Tensor]):
    """Encode to ``levels`` integer levels per pixel; decode to the bin centres."""

    def __init__(self, shape: tuple[int, int, int], levels: int) -> None:
        super().__init__(shape)
        self.levels = levels

    def encode(self, x: Tensor) -> Tensor:
        return torch.clamp(torch.floor(x * self.levels), 0, self.levels - 1).to(torch.int64)

    def decode(self, y: Tensor) -> Tensor:
        return (y.to(torch.float64) + 0.5) / self.levels

    def roundtrip_tolerance(self) -> float:
        return 0.5 / self.levels
