"""``inpaint``: keep some pixels, zero the others.

The degradation multiplies the image by a binary mask ``m`` (``True`` = kept)::

    y = m ⊙ x,        y has the shape of x, zeros where a pixel is missing.

It is diagonal in the pixel basis, so its SVD is trivial (DDRM, appendix D): ``U = V = I``
and the singular values are the mask itself, ``s_i = m_i ∈ {0, 1}``. Every factor costs one
elementwise multiplication; nothing is ever indexed or gathered, so building the operator
takes the time of drawing (or converting) one mask.

The mask is either given (``mask``, shape ``(H, W)`` shared by all channels or ``(C, H, W)``
per channel) or drawn at random: each pixel is missing independently with probability
``missing``, from a :class:`torch.Generator` seeded with ``seed`` (reproducible, independent
of torch's global random state). :func:`random_mask` draws the same masks from a generator the
caller passes.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch
from hypothesis import strategies as st
from torch import Tensor

import opkit
from opkit.params import in_range
from opkit.testing.strategies import shapes

__all__ = ["Inpaint", "InpaintParams", "random_mask"]

_SEED_MAX = 2**63 - 1


def random_mask(
    shape: tuple[int, int, int],
    missing: float,
    *,
    per_channel: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw a random inpainting mask: each entry is missing with probability ``missing``.

    Entry ``i`` is kept when ``u_i ≥ missing`` for ``u_i`` uniform on ``[0, 1)``, so
    ``P(kept) = 1 − missing`` independently for every pixel; the realised missing fraction is
    ``missing ± O(1/√n)``.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``.
    missing : float
        Probability in ``[0, 1)`` that an entry is missing.
    per_channel : bool
        Draw one mask per channel (shape ``(C, H, W)``) instead of one per pixel shared by all
        channels (shape ``(1, H, W)``).
    generator : torch.Generator, optional
        Source of randomness (its device is used); torch's default generator if omitted.

    Returns
    -------
    torch.Tensor
        Boolean mask, ``True`` = kept, of shape ``(C, H, W)`` or ``(1, H, W)``.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> random_mask((3, 4, 5), 0.5, generator=g).shape
    torch.Size([1, 4, 5])
    """
    c, h, w = opkit.check_shape(shape)
    if isinstance(missing, bool) or not 0.0 <= float(missing) < 1.0:
        raise ValueError(f"missing must be a number in [0, 1), got {missing!r}")
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand((c if per_channel else 1, h, w), generator=generator, device=device)
    return u >= float(missing)


def _to_mask(value: Any) -> Tensor | None:
    """attrs converter: a boolean ``(k, H, W)`` tensor (a copy) or ``None``."""
    if value is None:
        return None
    try:
        t = value.detach() if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"mask must be a boolean array or tensor, got {type(value).__name__}") from exc
    if t.ndim not in (2, 3) or t.numel() == 0:
        raise ValueError(f"mask must have shape (H, W) or (C, H, W), got {tuple(t.shape)}")
    if t.dtype != torch.bool:
        if t.is_complex() or not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"mask must be boolean (True = kept) or hold only 0 and 1, got dtype {t.dtype}")
        t = t != 0
    t = t.clone() if t.ndim == 3 else t.unsqueeze(0).clone()
    return t


def _mask_repr(mask: Tensor | None) -> str:
    if mask is None:
        return "None"
    return f"<bool mask {tuple(mask.shape)}, {int(mask.sum())} of {mask.numel()} kept>"


def _missing_fraction(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    in_range(0.0, 1.0)(inst, attribute, value)
    if float(value) >= 1.0:
        raise ValueError(f"{attribute.name} must be a number in [0, 1), got {value!r}")


def _optional_seed(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        in_range(0, _SEED_MAX, integer=True)(inst, attribute, value)


def _boolean(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be True or False, got {value!r}")


@attrs.frozen
class InpaintParams:
    """Parameters of :class:`Inpaint` (frozen, validated).

    Exactly one of ``mask`` and ``missing`` is given.

    Attributes
    ----------
    mask : torch.Tensor or None
        Boolean mask, ``True`` = kept, stored as ``(1, H, W)`` (shared by the channels) or
        ``(C, H, W)``; a 2-D mask and 0/1 numeric arrays are accepted and converted (a copy).
    missing : float or None
        Probability in ``[0, 1)`` that a pixel is missing (random mask).
    seed : int or None
        Seed of the random mask (``None`` means 0); only with ``missing``.
    per_channel : bool
        Random mask drawn per channel instead of per pixel; only with ``missing``.

    Raises
    ------
    ValueError
        For an invalid value (the message names the parameter), for both or neither of
        ``mask`` and ``missing``, or for ``seed``/``per_channel`` given with ``mask``.
    """

    mask: Tensor | None = attrs.field(default=None, converter=_to_mask, eq=False, repr=_mask_repr)
    missing: float | None = attrs.field(default=None, validator=_missing_fraction)
    seed: int | None = attrs.field(default=None, validator=_optional_seed)
    per_channel: bool = attrs.field(default=False, validator=_boolean)

    def __attrs_post_init__(self) -> None:
        if (self.mask is None) == (self.missing is None):
            raise ValueError(
                "inpaint needs exactly one of mask (True = kept) and missing (a fraction in [0, 1)); "
                + ("both were given" if self.mask is not None else "neither was given")
            )
        if self.mask is not None and (self.seed is not None or self.per_channel):
            raise ValueError("seed and per_channel apply only to a random mask (missing=...), not to mask=")


class Inpaint(opkit.DiagonalOperator):
    r"""Masking ``y = m ⊙ x``, zeros where a pixel is missing, with the trivial SVD.

    ``U = V = I`` and the singular values are the mask, ``s_i = m_i ∈ {0, 1}``, laid out like
    the image (broadcast over channels for a shared mask). Hence

    .. math::

        H x = m ⊙ x, \qquad Hᵀ y = m ⊙ y, \qquad H^† y = m ⊙ y,

    since :math:`s^+ = s` for values in :math:`\{0, 1\}`. ``Uᵀ`` and ``U`` multiply by the mask
    (``Uᵀ y`` is zero on the unmeasured coordinates); ``V`` and ``Vᵀ`` return their argument.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``.
    mask : bool array or tensor, optional
        ``True`` = kept; shape ``(H, W)`` (shared by the channels), ``(1, H, W)`` or
        ``(C, H, W)``.
    missing : float, optional
        Instead of ``mask``: probability in ``[0, 1)`` that a pixel is missing.
    seed : int, optional
        Seed of the random mask (default 0).
    per_channel : bool
        Random mask drawn independently per channel.

    Raises
    ------
    ValueError
        For bad parameters or a mask whose shape does not fit ``shape``.

    Examples
    --------
    >>> import torch
    >>> op = Inpaint((3, 4, 6), missing=0.5, seed=1)
    >>> x = torch.rand(2, 3, 4, 6)
    >>> bool((op(x) == x * op.mask).all())
    True
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        *,
        mask: Any = None,
        missing: float | None = None,
        seed: int | None = None,
        per_channel: bool = False,
    ) -> None:
        super().__init__(shape)
        self.params = InpaintParams(mask=mask, missing=missing, seed=seed, per_channel=per_channel)
        c, h, w = self.shape
        if self.params.mask is not None:
            keep = self.params.mask
            if tuple(keep.shape[1:]) != (h, w) or keep.shape[0] not in (1, c):
                raise ValueError(
                    f"mask of shape {tuple(keep.shape)} does not fit images of shape {self.shape}: "
                    f"expected ({h}, {w}), (1, {h}, {w}) or ({c}, {h}, {w})"
                )
        else:
            p = self.params
            g = torch.Generator(device="cpu").manual_seed(p.seed or 0)
            keep = random_mask(self.shape, float(p.missing or 0.0), per_channel=p.per_channel, generator=g)
        self._keep = keep
        self._s = keep.to(torch.float32)

    @property
    def mask(self) -> Tensor:
        """The boolean mask (``True`` = kept), ``(1, H, W)`` or ``(C, H, W)`` (a copy)."""
        return self._keep.clone()

    @property
    def singulars(self) -> Tensor:
        """The mask as 0/1 floats, ``(1, H, W)`` or ``(C, H, W)``."""
        return self._s

    def _m(self, like: Tensor) -> Tensor:
        return self.cast("mask", self._s, like)

    def Ut(self, y: Tensor) -> Tensor:
        """``m ⊙ y``: the measured coordinates of ``y``, zero elsewhere."""
        return y * self._m(y)

    def U(self, v: Tensor) -> Tensor:
        """``m ⊙ v``: reads only the measured coordinates."""
        return v * self._m(v)

    def forward(self, x: Tensor) -> Tensor:
        """``H x = m ⊙ x`` (one multiplication)."""
        return x * self._m(x)

    def adjoint(self, y: Tensor) -> Tensor:
        """``Hᵀ y = m ⊙ y``."""
        self.check_measurement(y)
        return y * self._m(y)

    def pinv(self, y: Tensor) -> Tensor:
        """``H† y = m ⊙ y`` (the kept pixels of ``y``; missing ones are zero)."""
        self.check_measurement(y)
        return y * self._m(y)


def _factory(
    *,
    shape: tuple[int, int, int],
    mask: Any = None,
    missing: float | None = None,
    seed: int | None = None,
    per_channel: bool = False,
) -> Inpaint:
    """Inpainting: keep the pixels of a mask (given, or random with a missing fraction), zero the rest."""
    return Inpaint(shape, mask=mask, missing=missing, seed=seed, per_channel=per_channel)


@st.composite
def _kwargs(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(shapes())
    c, h, w = shape
    kind = draw(st.sampled_from(["mask_hw", "mask_chw", "missing", "missing_per_channel"]))
    if kind.startswith("mask"):
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        kept = draw(st.floats(0.0, 1.0))
        m = torch.rand((h, w) if kind == "mask_hw" else (c, h, w), generator=g) < kept
        return {"shape": shape, "mask": m.numpy() if draw(st.booleans()) else m}
    return {
        "shape": shape,
        "missing": draw(st.floats(0.0, 0.99)),
        "seed": draw(st.integers(0, 2**31 - 1)),
        "per_channel": kind == "missing_per_channel",
    }


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    """Register ``inpaint``."""
    registry.add_operator("inpaint", _factory, strategy=_kwargs())
