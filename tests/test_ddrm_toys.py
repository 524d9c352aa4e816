"""Test-local operators for the DDRM tests, and checks that they obey the operator laws.

They let the DDRM tests run whatever plugins are registered: a dense SVD with random
orthogonal factors and mixed zero/small/large singular values, inpainting, block-mean
super-resolution, colorization, a separable blur (all with the implicit SVDs of the DDRM
paper's appendix D) and a rounding codec as an encode/decode pair.
"""

from __future__ import annotations

import einops
import pytest
import torch
from torch import Tensor

import opkit
from opkit.testing import check_operator
from tests.toy_operators import DenseSVD as ToyDenseSVD

Shape = tuple[int, int, int]


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def _orthogonal(n: int, g: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


class DenseSVD(ToyDenseSVD):
    """``H = U diag(s) Vᵀ`` with random orthogonal ``U`` (m×m), ``V`` (n×n); ``y`` is ``(B, m)``.

    Spectral layout: ``(n,)``; the first ``m`` coordinates are the measured ones. Singular
    values cycle through ``values`` (zeros allowed: a rank-deficient ``H``), the rest are 0.
    """

    def __init__(
        self, shape: Shape, m: int, values: tuple[float, ...] = (2.0, 0.05, 0.0, 0.7), seed: int = 0
    ):
        n = shape[0] * shape[1] * shape[2]
        g = torch.Generator().manual_seed(seed)
        U, V = _orthogonal(m, g), _orthogonal(n, g)
        s = torch.tensor([values[i % len(values)] for i in range(m)], dtype=torch.float64)
        super().__init__(shape, U, s, V)

    def dense(self) -> Tensor:
        """The ``m × n`` matrix."""
        return self.Um @ (self._s[: self.m, None] * self.Vm[:, : self.m].T)


class _StoredSVD(opkit.SVDOperator):
    """The toys below keep their singular values in ``_s``; ``y`` has the shape of ``x`` unless
    a toy says otherwise."""

    _s: Tensor

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def singulars(self) -> Tensor:
        return self._s


class MaskSVD(opkit.DiagonalOperator):
    """Inpainting ``y = m ⊙ x`` (``U = V = I``, ``s = m``)."""

    def __init__(self, shape: Shape, missing: float = 0.5, seed: int = 0) -> None:
        super().__init__(shape)
        g = torch.Generator().manual_seed(seed)
        self._s = (torch.rand((1, *shape[1:]), generator=g, dtype=torch.float64) >= missing).double()

    @property
    def singulars(self) -> Tensor:
        return self._s

    def Ut(self, y: Tensor) -> Tensor:
        return y * self.singulars_like(y)

    def U(self, v: Tensor) -> Tensor:
        return v * self.singulars_like(v)


class BlockMeanSVD(_StoredSVD):
    """Block-mean super-resolution by ``factor``: per block an orthonormal basis whose first
    vector is constant, so ``s = 1/factor`` on it and 0 on the others.

    Spectral layout ``(C, H/f, W/f, f²)``.
    """

    def __init__(self, shape: Shape, factor: int = 2) -> None:
        super().__init__(shape)
        f = factor
        if shape[1] % f or shape[2] % f:
            raise ValueError("shape must be divisible by factor")
        self.f = f
        first = torch.full((f * f, 1), 1.0 / f, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.cat([first, torch.eye(f * f, dtype=torch.float64)[:, 1:]], 1))
        self.Q = q * torch.sign(q[0, 0])  # columns: basis vectors; first = 1/f constant
        s = torch.zeros(f * f, dtype=torch.float64)
        s[0] = 1.0 / f
        self._s = s

    @property
    def out_shape(self) -> tuple[int, ...]:
        c, h, w = self.shape
        return (c, h // self.f, w // self.f)

    def Vt(self, x: Tensor) -> Tensor:
        blocks = einops.rearrange(x, "b c (h p) (w q) -> b c h w (p q)", p=self.f, q=self.f)
        return blocks @ self.cast("Q", self.Q, x)

    def V(self, v: Tensor) -> Tensor:
        blocks = v @ self.cast("Q", self.Q, v).T
        return einops.rearrange(blocks, "b c h w (p q) -> b c (h p) (w q)", p=self.f, q=self.f)

    def Ut(self, y: Tensor) -> Tensor:
        out = y.new_zeros(*y.shape, self.f * self.f)
        out[..., 0] = y
        return out

    def U(self, v: Tensor) -> Tensor:
        return v[..., 0]

    @staticmethod
    def reference(x: Tensor, f: int) -> Tensor:
        return torch.nn.functional.avg_pool2d(x, f)


class ColorizeSVD(_StoredSVD):
    """Grayscale ``y = Σ_c w_c x_c``: per pixel a 3×3 orthonormal basis with first vector
    ``w/‖w‖``, singular value ``‖w‖``. Spectral layout ``(3, H, W)``."""

    def __init__(self, shape: Shape, weights: tuple[float, float, float] = (0.299, 0.587, 0.114)) -> None:
        super().__init__(shape)
        if shape[0] != 3:
            raise ValueError("colorize needs 3 channels")
        w = torch.tensor(weights, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.cat([w[:, None], torch.eye(3, dtype=torch.float64)[:, 1:]], 1))
        self.Q = q * torch.sign(q[:, 0] @ w)
        self.w = w
        self._s = torch.tensor([float(w.norm()), 0.0, 0.0], dtype=torch.float64).view(3, 1, 1)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (1, *self.shape[1:])

    def Vt(self, x: Tensor) -> Tensor:
        return torch.einsum("ji,bjhw->bihw", self.cast("Q", self.Q, x), x)

    def V(self, v: Tensor) -> Tensor:
        return torch.einsum("ij,bjhw->bihw", self.cast("Q", self.Q, v), v)

    def Ut(self, y: Tensor) -> Tensor:
        return torch.cat([y, y.new_zeros(y.shape[0], 2, *y.shape[2:])], 1)

    def U(self, v: Tensor) -> Tensor:
        return v[:, :1]


def _blur_matrix(n: int, kernel: Tensor) -> Tensor:
    """``n × n`` zero-padded 'same' convolution with an odd 1-D kernel."""
    k = kernel.numel()
    a = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(k):
            c = i + j - k // 2
            if 0 <= c < n:
                a[i, c] = kernel[j]
    return a


class SeparableBlurSVD(_StoredSVD):
    """Separable zero-padded blur ``Y = A_c X A_rᵀ`` per channel, SVD the Kronecker product of
    the 1-D SVDs (``V x = V_c X V_rᵀ``, ``s = s_c s_rᵀ``). Spectral layout ``(C, H, W)``."""

    def __init__(self, shape: Shape, kernel: tuple[float, ...] = (0.25, 0.5, 0.25)) -> None:
        super().__init__(shape)
        k = torch.tensor(kernel, dtype=torch.float64)
        self.Ac, self.Ar = _blur_matrix(shape[1], k), _blur_matrix(shape[2], k)
        uc, sc, vct = torch.linalg.svd(self.Ac)
        ur, sr, vrt = torch.linalg.svd(self.Ar)
        self.Uc, self.Vc, self.Ur, self.Vr = uc, vct.T, ur, vrt.T
        self._s = (sc[:, None] * sr[None, :]).unsqueeze(0)

    def _two(self, a: str, b: str, x: Tensor, ta: bool) -> Tensor:
        ma = self.cast(a, getattr(self, a), x)
        mb = self.cast(b, getattr(self, b), x)
        if ta:
            return ma.T @ x @ mb
        return ma @ x @ mb.T

    def Vt(self, x: Tensor) -> Tensor:
        return self._two("Vc", "Vr", x, True)

    def V(self, v: Tensor) -> Tensor:
        return self._two("Vc", "Vr", v, False)

    def Ut(self, y: Tensor) -> Tensor:
        return self._two("Uc", "Ur", y, True)

    def U(self, v: Tensor) -> Tensor:
        return self._two("Uc", "Ur", v, False)

    def reference(self, x: Tensor) -> Tensor:
        return self.cast("Ac", self.Ac, x) @ x @ self.cast("Ar", self.Ar, x).T


class RoundingCodec(opkit.EncodeDecodeOperator[Tensor]):
    """Rounding to ``levels + 1`` grey levels: ``Encode(x) = round(L x)`` (int64 codes, clipped
    to ``[0, L]``), ``Decode(k) = k / L``."""

    def __init__(self, shape: Shape, levels: int = 7) -> None:
        super().__init__(shape)
        self.levels = levels

    def encode(self, x: Tensor) -> Tensor:
        return torch.round(x * self.levels).clamp(0, self.levels).to(torch.long)

    def decode(self, y: Tensor) -> Tensor:
        if not isinstance(y, Tensor) or y.ndim != 4 or tuple(y.shape[1:]) != self.shape:
            raise ValueError(
                f"RoundingCodec: codes must have shape (B, {self.shape}), got {getattr(y, 'shape', y)}"
            )
        return y.to(torch.float64) / self.levels

    def roundtrip_tolerance(self) -> float:
        return 0.5 / self.levels


def toy_svd_operators(shape: Shape = (3, 4, 6)) -> dict[str, opkit.SVDOperator]:
    """One of each local SVD operator for ``shape`` (3 channels, even sides)."""
    c, h, w = shape
    return {
        "dense": DenseSVD(shape, m=(c * h * w) // 2 + 1, seed=1),
        "inpaint": MaskSVD(shape, missing=0.5, seed=2),
        "sr_block": BlockMeanSVD(shape, factor=2),
        "colorize": ColorizeSVD(shape),
        "blur": SeparableBlurSVD(shape),
    }


@pytest.mark.parametrize("name", sorted(toy_svd_operators()))
def test_toy_svd_operators_obey_the_laws(name: str) -> None:
    op = toy_svd_operators()[name]
    ref = None
    if isinstance(op, BlockMeanSVD):
        ref = lambda x: BlockMeanSVD.reference(x, 2)  # noqa: E731
    elif isinstance(op, SeparableBlurSVD):
        ref = op.reference
    elif isinstance(op, ColorizeSVD):
        ref = lambda x: torch.einsum("c,bchw->bhw", op.w.to(x), x).unsqueeze(1)  # noqa: E731
    elif isinstance(op, DenseSVD):
        ref = lambda x: x.flatten(1) @ op.dense().to(x).T  # noqa: E731
    check_operator(op, reference=ref)


def test_toy_dense_svd_has_mixed_singular_values() -> None:
    s = toy_svd_operators()["dense"].singulars
    assert bool((s == 0).any()) and bool(((s > 0) & (s < 0.1)).any()) and bool((s > 1).any())


def test_toy_codec_obeys_the_laws() -> None:
    check_operator(RoundingCodec((1, 4, 6)))
