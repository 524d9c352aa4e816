"""``quantize``: uniform bit-depth reduction as an encode/decode operator.

With ``b`` bits per channel and ``L = 2**b`` levels::

    Encode(x) = clip(floor(L x), 0, L - 1)        (integer levels, int32)
    Decode(k) = (k + 1/2) / L                      (the centre of the level's interval)

For ``x`` in [0, 1] the level ``k`` is the index of the interval ``[k/L, (k+1)/L)`` holding ``x``
(``x = 1`` joins the top level), so ``|Decode(Encode(x)) - x| <= 1/(2L)`` and, since the centre
of a level's interval lies inside it, ``Encode(Decode(k)) == k`` exactly for every level.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from hypothesis import strategies as st
from torch import Tensor

import opkit
from opkit.params import in_range
from opkit.testing.strategies import shapes

__all__ = ["Quantize", "QuantizeParams"]


@attrs.frozen
class QuantizeParams:
    """Parameters of :class:`Quantize`.

    Attributes
    ----------
    bits : int
        Bits per channel, 1..16 (``2**bits`` levels).
    """

    bits: int = attrs.field(default=8, validator=in_range(1, 16, integer=True))


class Quantize(opkit.EncodeDecodeOperator[Tensor]):
    """Uniform quantisation to ``2**bits`` levels per channel (see the module docstring).

    The measurement is an integer tensor of levels with the shape of the image: int32 for a
    float32 (or lower precision) input and int64 for a float64 input, so that :meth:`decode`, a
    pure function of the levels, returns the precision that was encoded (int64 -> float64,
    other integers -> float32).

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``.
    params : QuantizeParams
        The bit depth.
    """

    def __init__(self, shape: tuple[int, int, int], params: QuantizeParams | None = None) -> None:
        super().__init__(shape)
        self.params = params if params is not None else QuantizeParams()

    @property
    def levels(self) -> int:
        """Number of levels ``2**bits``."""
        return 1 << self.params.bits

    def encode(self, x: Tensor) -> Tensor:
        """``clip(floor(2**b x), 0, 2**b - 1)`` (int64 for float64 input, else int32).

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, H, W)`` floating images in [0, 1] (values outside are clipped to the end levels).

        Returns
        -------
        torch.Tensor
            Integer levels, same shape.
        """
        self.check_input(x)
        lv = self.levels
        # exact in the input's precision: lv is a power of two, so x · lv only shifts the exponent
        # (float16/bfloat16 are widened first: their 2**bits may not even be representable)
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        k = torch.mul(work, lv).floor_().clamp_(0, lv - 1)
        return k.to(torch.int64 if x.dtype == torch.float64 else torch.int32)

    def decode(self, y: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """``(k + 1/2) / 2**b``.

        Parameters
        ----------
        y : torch.Tensor
            Integer levels ``(B, C, H, W)``.
        dtype : torch.dtype, optional
            Output dtype; defaults to float64 for int64 levels and float32 otherwise.

        Returns
        -------
        torch.Tensor
            Images in ``(0, 1)``.
        """
        self._check_levels(y)
        if dtype is None:
            dtype = torch.float64 if y.dtype == torch.int64 else torch.float32
        # (k + 1/2) / 2**b is exact in float32 for every level (k < 2**16 needs 17 significant
        # bits of the 24): computing it in float32 gives the float64 result rounded once, as before
        work = torch.float64 if dtype == torch.float64 else torch.float32
        out = y.to(work).add_(0.5).mul_(1.0 / self.levels)
        return out if out.dtype == dtype else out.to(dtype)

    def _check_levels(self, y: Any) -> None:
        if not isinstance(y, Tensor):
            raise TypeError(f"{self.label}: expected a torch.Tensor of levels, got {type(y).__name__}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"{self.label}: expected integer levels, got {y.dtype}")
        if y.ndim != 4 or tuple(y.shape[1:]) != self.shape:
            raise ValueError(
                f"{self.label}: expected integer levels of shape (B, {', '.join(map(str, self.shape))}),"
                f" got {tuple(y.shape)}"
            )

    def check_measurement(self, y: Tensor) -> None:
        """Raise ``ValueError`` unless ``y`` holds integer levels of this shape in ``[0, 2**bits - 1]``.

        Parameters
        ----------
        y : torch.Tensor
            Candidate levels ``(B, C, H, W)``.
        """
        self._check_levels(y)
        if y.numel() and bool(((y < 0) | (y > self.levels - 1)).any()):
            raise ValueError(
                f"{self.label}: levels must lie in [0, {self.levels - 1}] for bits={self.params.bits}, "
                f"got values in [{int(y.min())}, {int(y.max())}]"
            )

    def relaxed_codes(self, x: Tensor) -> Tensor:
        r"""The levels before the floor, centred: :math:`r(x) = 2^b x - \tfrac12`, unclamped.

        Differentiable (autograd) and affine in ``x``; ``clip(round_half_up(r(x)), 0, 2^b - 1)``
        is :meth:`encode` exactly (the floor of :math:`2^b x`), and :math:`r` is zero distance
        from the level ``k`` at the centre :math:`(k + \tfrac12)/2^b` of its interval, which is
        :meth:`decode`. The clip is not relaxed: outside :math:`[0, 1]`, where ``encode``
        saturates, :math:`r` keeps growing, so a residual :math:`k - r(x)` still pulls a pixel
        above 1 (or below 0) back toward the end level's centre instead of giving no gradient.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, H, W)`` floating images.

        Returns
        -------
        torch.Tensor
            ``(B, C, H, W)`` relaxed levels of ``x``'s dtype (float32 for half precision).
        """
        self.check_input(x)
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        return work * self.levels - 0.5

    def roundtrip_tolerance(self) -> float:
        """``1 / 2**(b+1)``: the largest error of a level centre, hence a bound on the RMSE."""
        return 0.5 / self.levels


def _factory(*, shape: tuple[int, int, int], bits: int = 8) -> Quantize:
    """Bit-depth quantisation: integer levels floor(2^bits x), decoded at the level centres."""
    return Quantize(shape, QuantizeParams(bits=bits))


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    """Register ``quantize``."""
    registry.add_operator(
        "quantize",
        _factory,
        strategy=st.fixed_dictionaries({"shape": shapes(), "bits": st.integers(1, 16)}),
    )
