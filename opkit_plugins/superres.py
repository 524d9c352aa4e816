"""Super-resolution degradations: ``sr_block`` (block means) and ``sr_bicubic`` (strided bicubic).

``sr_block`` (DDRM appendix D.3): ``y`` holds the means of the ``f × f`` blocks of ``x``. Each
block ``p ∈ ℝ^{f²}`` is measured by ``kᵀp`` with ``k = 1/f² · 𝟙``, whose SVD is
``kᵀ = 1 · (1/f) · q₁ᵀ`` with ``q₁ = 𝟙/f``: one singular value ``1/f``, ``U = 1``. Completing
``q₁`` to an orthonormal basis ``Q`` of ``ℝ^{f²}`` (a Householder reflection, built once) gives
the SVD of the whole operator, applied block-wise by one matrix product.

``sr_bicubic``: ``y = A_c X A_rᵀ`` with ``A`` the ``(n/f) × n`` matrix of a strided correlation
with the antialiased Keys cubic (``a = −1/2``) stretched by ``f`` (``4f`` taps), zero padding;
its SVD is the Kronecker product of the two 1-D SVDs (shared with ``blur``, see
:mod:`opkit_plugins._separable`).
"""

from __future__ import annotations

from typing import Any

import attrs
import einops
import torch
import torch.nn.functional as nnf
from hypothesis import strategies as st
from torch import Tensor

import opkit
from opkit.params import check_positive_int, non_negative, one_of, positive_int
from opkit.testing.strategies import shapes
from opkit_plugins._separable.correlation import (
    separable_correlation,
    separable_correlation_adjoint,
    symmetric_index,
)
from opkit_plugins._separable.factorization import correlation_factor
from opkit_plugins._separable.operator import SeparableSVDOperator

__all__ = [
    "BicubicParams",
    "BlockParams",
    "SRBicubic",
    "SRBlock",
    "bicubic_kernel",
    "bicubic_padding",
    "block_basis",
    "keys_cubic",
    "sr_bicubic_reference",
]


def _check_divisible(shape: tuple[int, int, int], factor: int) -> None:
    _, h, w = shape
    if h % factor or w % factor:
        raise ValueError(f"shape {shape}: height and width must be divisible by factor={factor}")


# ----------------------------------------------------------------------------------------------
# sr_block
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class BlockParams:
    """Parameters of ``sr_block``.

    Attributes
    ----------
    factor : int
        Block side ``f`` (positive); ``H`` and ``W`` must be multiples of it.
    """

    factor: int = attrs.field(default=4, validator=positive_int)


def block_basis(factor: int) -> Tensor:
    """Orthonormal ``f² × f²`` basis whose first column is constant, ``1/f`` in every entry.

    It is the Householder reflection ``Q = I − 2 w wᵀ / (wᵀ w)`` with ``w = e₁ − 𝟙/f``, which
    maps ``e₁`` to ``q₁ = 𝟙/f`` (unit norm). ``Q`` is symmetric and orthogonal, ``Q = Qᵀ = Q⁻¹``.
    For ``f = 1`` it is ``[[1]]``.

    Parameters
    ----------
    factor : int
        Block side ``f``.

    Returns
    -------
    torch.Tensor
        ``Q`` in float64; column ``k`` is the ``k``-th basis vector of a block flattened in
        row-major order.
    """
    n = factor * factor
    q1 = torch.full((n,), 1.0 / factor, dtype=torch.float64)
    w = -q1
    w[0] += 1.0
    ww = float(w @ w)
    eye = torch.eye(n, dtype=torch.float64)
    if ww == 0.0:  # f = 1: e₁ is already q₁
        return eye
    return eye - 2.0 * torch.outer(w, w) / ww


class SRBlock(opkit.SVDOperator):
    """Block-averaging downsampling by ``f``: ``y[b, c, i, j]`` = mean of block ``(i, j)``.

    .. math::

        y_{ij} = \\frac{1}{f^2} \\sum_{p, q < f} x_{f i + p,\\, f j + q}
              = \\underbrace{1}_{U}\\cdot\\underbrace{\\tfrac{1}{f}}_{s}\\cdot
                \\underbrace{q_1^T}_{V^T} \\operatorname{vec}(\\text{block}_{ij}).

    ``V`` is block-diagonal with the Householder basis ``Q`` (:func:`block_basis`) on every
    block. Because ``Q = I − 2wwᵀ/(wᵀw)`` with ``w = e₁ − q₁``, ``Q p = p − c w = p − c e₁ + (c/f) 𝟙``
    with ``c = 2 wᵀp / wᵀw``: one block sum (``avg_pool2d``) and one broadcast add per pixel. And
    ``Q = Qᵀ``, so ``V`` and ``Vᵀ`` are the same map.

    Spectral layout: ``Vt(x)`` has shape ``(B, C, H/f, f, W/f, f)`` (a block view of the image);
    entry ``[b, c, i, p, j, q]`` is coefficient ``k = p·f + q`` of block ``(i, j)``, i.e.
    ``(Qᵀ vec(block))_k`` with the block flattened row-major. :attr:`singulars` has shape
    ``(f, 1, f)``: ``1/f`` at ``[0, 0, 0]`` (coefficient ``k = 0``, the block sum over ``f``) and
    zero elsewhere. ``Ut(y)`` puts ``y`` in coefficient ``0`` and zeros elsewhere; ``U(v)`` reads
    ``v[:, :, :, 0, :, 0]``.

    ``H`` is :func:`torch.nn.functional.avg_pool2d`, ``Hᵀ y`` spreads ``y/f²`` over each block and
    ``H† y`` repeats each measured value over its block (nearest-neighbour upsampling).

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``, ``H`` and ``W`` multiples of ``factor``.
    factor : int
        Block side ``f``.
    """

    def __init__(self, shape: tuple[int, int, int], factor: int = 4) -> None:
        super().__init__(shape)
        self.params = BlockParams(factor=factor)
        _check_divisible(self.shape, factor)
        f = factor
        self._f = f
        self._ww = 2.0 * (f - 1) / f  # wᵀw
        s = torch.zeros((f, 1, f), dtype=torch.float64)
        s[0, 0, 0] = 1.0 / f
        self._s = s

    @property
    def factor(self) -> int:
        """The block side ``f``."""
        return self._f

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """``(C, H/f, W/f)``."""
        c, h, w = self.shape
        return (c, h // self._f, w // self._f)

    @property
    def singulars(self) -> Tensor:
        """``1/f`` on coefficient ``0`` of every block, zero elsewhere; shape ``(f, 1, f)``."""
        return self._s

    def _reflect(self, img: Tensor) -> Tensor:
        """``Q p`` for every block ``p`` of a ``(B, C, H, W)`` tensor, as ``(B, C, H/f, f, W/f, f)``."""
        f = self._f
        if f == 1:
            return einops.rearrange(img, "b c h w -> b c h 1 w 1").clone()
        b, c, h, w = img.shape
        rows = img.reshape(b, c, h // f, f, w)
        # block sums: first over the f rows of a block (contiguous rows, one pass over the image),
        # then over f strided neighbours of the f-times smaller result (avg_pool2d, or a sum over
        # a trailing axis of length f, are 2-4x slower on CPU)
        part = rows.sum(3)
        total = part[..., 0::f] + part[..., 1::f]
        for q in range(2, f):  # over the f offsets of a block (not over pixels)
            total += part[..., q::f]
        # Q p = p − s w = p − s e₁ + (s/f) 𝟙 with s = 2 wᵀp / wᵀw and wᵀp = p₀ − Σp / f
        s = (img[..., ::f, ::f] - total * (1.0 / f)).mul_(2.0 / self._ww)
        # broadcast the per-block constant along whole rows (long contiguous inner loops)
        out = rows + (s * (1.0 / f)).repeat_interleave(f, dim=-1)[:, :, :, None, :]
        out.view(b, c, h, w)[..., ::f, ::f] -= s
        return out.view(b, c, h // f, f, w // f, f)

    def Vt(self, x: Tensor) -> Tensor:
        """Block coefficients ``Qᵀ p``, shape ``(B, C, H/f, f, W/f, f)``."""
        return self._reflect(x)

    def V(self, v: Tensor) -> Tensor:
        """Image whose block ``(i, j)`` is ``Q v[:, :, i, :, j, :]``."""
        img = einops.rearrange(v, "b c h p w q -> b c (h p) (w q)")
        return einops.rearrange(self._reflect(img), "b c h p w q -> b c (h p) (w q)")

    def Ut(self, y: Tensor) -> Tensor:
        """``y`` in coefficient ``0`` of each block, zeros in the other ``f² − 1``."""
        f = self._f
        return nnf.pad(y[:, :, :, None, :, None], (0, f - 1, 0, 0, 0, f - 1))

    def U(self, v: Tensor) -> Tensor:
        """The measured coefficient ``v[:, :, :, 0, :, 0]``."""
        return v[:, :, :, 0, :, 0]

    def forward(self, x: Tensor) -> Tensor:
        """``H x`` = :func:`torch.nn.functional.avg_pool2d` with kernel and stride ``f``."""
        return nnf.avg_pool2d(x, self._f)

    def adjoint(self, y: Tensor) -> Tensor:
        """``Hᵀ y``: each block filled with ``y/f²``."""
        self.check_measurement(y)
        f = self._f
        return einops.repeat(y / (f * f), "b c h w -> b c (h p) (w q)", p=f, q=f)

    def pinv(self, y: Tensor) -> Tensor:
        """``H† y``: each block filled with ``y`` (the minimum-norm image with those means)."""
        self.check_measurement(y)
        f = self._f
        return einops.repeat(y, "b c h w -> b c (h p) (w q)", p=f, q=f)


def _block_factory(*, shape: tuple[int, int, int], factor: int = 4) -> SRBlock:
    """Block-average downsampling by ``factor`` (y = (B, C, H/f, W/f) block means)."""
    return SRBlock(shape, factor=factor)


# ----------------------------------------------------------------------------------------------
# sr_bicubic
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class BicubicParams:
    """Parameters of ``sr_bicubic``.

    Attributes
    ----------
    factor : int
        Downsampling factor ``f`` (positive); ``H`` and ``W`` must be multiples of it.
    threshold : float
        1-D singular values below it are zeroed (``≥ 0``; default ``0``: only numerically zero
        ones, see :func:`opkit_plugins._separable.factorization.factorize`).
    boundary : str
        ``"zero"`` (default: zero padding) or ``"symmetric"`` (half-sample reflection, as
        MATLAB ``imresize`` and the DDRM code).
    """

    factor: int = attrs.field(default=4, validator=positive_int)
    threshold: float = attrs.field(default=0.0, validator=non_negative)
    boundary: str = attrs.field(default="zero", validator=one_of("zero", "symmetric"))


def keys_cubic(x: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic convolution kernel.

    .. math::

        W(x) = \\begin{cases}
            (a + 2)|x|^3 - (a + 3)|x|^2 + 1 & |x| \\le 1 \\\\
            a|x|^3 - 5a|x|^2 + 8a|x| - 4a & 1 < |x| < 2 \\\\
            0 & \\text{otherwise}
        \\end{cases}

    With ``a = −1/2`` it reproduces quadratics and sums to one over any unit-spaced grid,
    ``Σ_k W(x − k) = 1``.

    Parameters
    ----------
    x : torch.Tensor
        Positions.
    a : float
        The free parameter (``−0.5`` in MATLAB and PIL bicubic).

    Returns
    -------
    torch.Tensor
        ``W(x)``.
    """
    ax = x.abs()
    inner = (a + 2) * ax**3 - (a + 3) * ax**2 + 1
    outer = a * ax**3 - 5 * a * ax**2 + 8 * a * ax - 4 * a
    return torch.where(ax <= 1, inner, torch.where(ax < 2, outer, torch.zeros_like(ax)))


def bicubic_padding(factor: int) -> int:
    """Left zero padding ``p = ⌊3f/2⌋`` of the strided bicubic correlation.

    Output sample ``i`` (centre ``(i + ½) f`` in input pixel units) reads the inputs
    ``i·f − p … i·f − p + 4f − 1``, which centres the ``4f`` taps on it.

    Parameters
    ----------
    factor : int
        Downsampling factor ``f``.

    Returns
    -------
    int
        ``p``.
    """
    return (3 * factor) // 2


def bicubic_kernel(factor: int, a: float = -0.5) -> Tensor:
    """The ``4f`` taps of antialiased bicubic downsampling by ``f`` (float64, summing to one).

    Tap ``t`` weighs the input pixel whose centre lies ``x_t`` output pixels from the output
    pixel's centre, ``x_t = (t − p + ½ − f/2)/f`` with ``p`` = :func:`bicubic_padding`, and equals
    ``W(x_t)/f`` (:func:`keys_cubic` stretched by ``f``, as MATLAB ``imresize`` and PIL do when
    shrinking). For even ``f`` this is ``x_t = (t − 2f + ½)/f``, the kernel of the DDRM
    experiments; for odd ``f`` the output centre is an input pixel centre, ``x_t = (t − 2f + 1)/f``
    and the last tap (``x = 2``) is zero. The samples of ``W`` at spacing ``1/f`` sum to ``f``
    exactly (partition of unity), so after the ``1/f`` scaling the taps sum to one; they are
    renormalised to remove rounding.

    Parameters
    ----------
    factor : int
        Downsampling factor ``f``.
    a : float
        Keys' parameter.

    Returns
    -------
    torch.Tensor
        The ``4f`` taps.
    """
    check_positive_int("factor", factor)
    t = torch.arange(4 * factor, dtype=torch.float64)
    x = (t - bicubic_padding(factor) + 0.5 - factor / 2) / factor
    k = keys_cubic(x, a) / factor
    return k / k.sum()


def sr_bicubic_reference(x: Tensor, factor: int, boundary: str = "zero") -> Tensor:
    """Direct strided bicubic downsampling: one ``conv2d`` with the ``4f × 4f`` kernel.

    ``x`` is padded by ``p`` = :func:`bicubic_padding` on the top/left and ``3f − p`` on the
    bottom/right (with zeros, or by half-sample symmetric reflection for
    ``boundary="symmetric"``), then correlated with ``k kᵀ`` (``k`` = :func:`bicubic_kernel`) at
    stride ``f``.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` with ``H``, ``W`` multiples of ``f``.
    factor : int
        ``f``.
    boundary : str
        ``"zero"`` or ``"symmetric"``.

    Returns
    -------
    torch.Tensor
        ``(B, C, H/f, W/f)``.
    """
    f = factor
    p = bicubic_padding(f)
    k = bicubic_kernel(f).to(device=x.device, dtype=x.dtype)
    c, h, w = x.shape[1:]
    weight = torch.outer(k, k).expand(c, 1, 4 * f, 4 * f)
    if boundary == "symmetric":
        rows = symmetric_index(h, -p, h + 3 * f - p).to(x.device)
        cols = symmetric_index(w, -p, w + 3 * f - p).to(x.device)
        padded = x[:, :, rows][:, :, :, cols]
    elif boundary == "zero":
        padded = nnf.pad(x, (p, 3 * f - p, p, 3 * f - p))
    else:
        raise ValueError(f"boundary must be 'zero' or 'symmetric', got {boundary!r}")
    return nnf.conv2d(padded, weight, stride=f, groups=c)


class SRBicubic(SeparableSVDOperator):
    """Strided bicubic downsampling by ``f`` with zero padding, ``y = A_c X A_rᵀ`` per channel.

    .. math::

        y_{ij} = \\sum_{s, t < 4f} k_s k_t \\, x_{f i + s - p,\\; f j + t - p},
        \\qquad x = 0 \\text{ outside the image},

    with ``k`` = :func:`bicubic_kernel` and ``p`` = :func:`bicubic_padding`. Boundary: zero
    padding by default (as ``blur``), so the border rows of ``y`` see a truncated kernel and are
    darker than MATLAB's; ``boundary="symmetric"`` extends the image by half-sample reflection
    instead (MATLAB ``imresize`` and the DDRM code): the reflected taps fold back onto the border
    pixels, and ``y`` is one strided ``conv2d`` of the reflected image. ``A_c`` is
    ``(H/f) × H``, ``A_r`` is ``(W/f) × W``; the SVD is the Kronecker product of their SVDs
    (:class:`~opkit_plugins._separable.operator.SeparableSVDOperator`, spectral layout ``(B, C, H, W)``,
    singular values zero outside the top-left ``H/f × W/f`` corner).

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)``, ``H`` and ``W`` multiples of ``factor``.
    factor : int
        ``f``.
    threshold : float
        1-D singular values below it are zeroed.
    boundary : str
        ``"zero"`` or ``"symmetric"``.
    """

    def __init__(
        self, shape: tuple[int, int, int], factor: int = 4, threshold: float = 0.0, boundary: str = "zero"
    ) -> None:
        params = BicubicParams(factor=factor, threshold=threshold, boundary=boundary)
        shp = opkit.check_shape(shape)
        _check_divisible(shp, factor)
        _, h, w = shp
        k = bicubic_kernel(factor)
        p = bicubic_padding(factor)
        col = correlation_factor(k, h, stride=factor, pad=p, threshold=threshold, boundary=boundary)
        row = (
            col
            if w == h
            else correlation_factor(k, w, stride=factor, pad=p, threshold=threshold, boundary=boundary)
        )
        pads = (p, 3 * factor - p, p, 3 * factor - p)

        def direct(x: Tensor) -> Tensor:
            kk = self.cast("kernel", k, x)
            return separable_correlation(x, kk, kk, stride=factor, pads=pads, boundary=boundary)

        def direct_adjoint(y: Tensor) -> Tensor:
            # the transposed strided correlation, cropped to the image: two 1-D passes that add
            # shifted slices in place (peak about 1 + 1/f images; conv_transpose2d needed ~4)
            kk = self.cast("kernel", k, y)
            return separable_correlation_adjoint(y, kk, kk, (h, w), stride=factor, pads=pads)

        adjoint = direct_adjoint if boundary == "zero" else None
        super().__init__(shp, col, row, direct=direct, direct_adjoint=adjoint)
        self.params = params
        self._kernel = k

    @property
    def kernel(self) -> Tensor:
        """The 1-D taps (:func:`bicubic_kernel`), float64."""
        return self._kernel


def _bicubic_factory(
    *, shape: tuple[int, int, int], factor: int = 4, threshold: float = 0.0, boundary: str = "zero"
) -> SRBicubic:
    """Strided bicubic downsampling by ``factor`` (Keys a=-0.5, 4*factor taps, zero padding)."""
    return SRBicubic(shape, factor=factor, threshold=threshold, boundary=boundary)


def _block_strategy() -> st.SearchStrategy[dict[str, Any]]:
    return st.integers(1, 4).flatmap(
        lambda f: st.fixed_dictionaries({"shape": shapes(multiple_of=f, max_side=16), "factor": st.just(f)})
    )


def _bicubic_strategy() -> st.SearchStrategy[dict[str, Any]]:
    return st.integers(1, 4).flatmap(
        lambda f: st.fixed_dictionaries(
            {
                "shape": shapes(multiple_of=f, max_side=16),
                "factor": st.just(f),
                "boundary": st.sampled_from(["zero", "symmetric"]),
            }
        )
    )


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    """Register ``sr_block`` and ``sr_bicubic``."""
    registry.add_operator("sr_block", _block_factory, strategy=_block_strategy())
    registry.add_operator("sr_bicubic", _bicubic_factory, strategy=_bicubic_strategy())
