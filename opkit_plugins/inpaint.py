r"""``inpaint``: keep some pixels, zero the others.

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

The field's masks (shared by the channels) are generators named by ``mask``:

* ``mask="box"``: a missing box of ``box_size`` (default half of each side; DPS and DAPS use
  128 × 128 on 256²) at a random position (``position="random"``, seeded; at least ``margin``
  pixels from every border) or centred (``position="center"``), :func:`box_mask`;
* ``mask="random"``: exactly :math:`\lfloor \text{missing} \cdot HW \rfloor` pixels missing,
  drawn without replacement (DPS's and DAPS's recipe; DAPS uses ``missing=0.7``),
  :func:`pixel_mask`;
* ``mask="half"``: the ``side`` half missing (``"right"``, ``"left"``, ``"top"``,
  ``"bottom"``; :math:`\lfloor W/2 \rfloor` columns or :math:`\lfloor H/2 \rfloor` rows),
  :func:`half_mask`.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch
from hypothesis import strategies as st
from torch import Tensor

import opkit
from opkit.params import in_range, one_of
from opkit.testing.strategies import shapes

__all__ = [
    "MASKS",
    "Inpaint",
    "InpaintParams",
    "box_mask",
    "half_mask",
    "pixel_mask",
    "random_mask",
]

_SEED_MAX = 2**63 - 1
#: The mask generators ``mask`` names.
MASKS = ("box", "random", "half")
#: The halves ``half_mask`` removes.
SIDES = ("right", "left", "top", "bottom")


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


def _box_size(value: Any, h: int, w: int) -> tuple[int, int]:
    if value is None:
        return max(1, h // 2), max(1, w // 2)
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"box_size must be a positive integer or a pair (height, width), got {value!r}")
    return pair[0], pair[1]


def box_mask(
    shape: tuple[int, int, int],
    box_size: int | tuple[int, int] | None = None,
    *,
    position: str = "random",
    margin: int = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A mask with one missing box: ``True`` (kept) everywhere but a ``box_size`` rectangle.

    A random box has its top-left corner uniform over every position that keeps it at least
    ``margin`` pixels from each border (DPS draws 128 × 128 boxes on 256² images, with a margin
    of 16); a centred one starts at ``((H − h) // 2, (W − w) // 2)``.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``.
    box_size : int or (int, int), optional
        Side, or ``(height, width)``, of the box; default ``(H // 2, W // 2)``.
    position : str
        ``"random"`` or ``"center"``.
    margin : int
        Smallest distance from a random box to the borders.
    generator : torch.Generator, optional
        Source of the random position.

    Returns
    -------
    torch.Tensor
        Boolean ``(1, H, W)``.

    Examples
    --------
    >>> m = box_mask((3, 8, 8), 4, position="center")
    >>> int((~m).sum()), bool(m[0, 2:6, 2:6].any())
    (16, False)
    """
    _, h, w = opkit.check_shape(shape)
    bh, bw = _box_size(box_size, h, w)
    if position not in ("random", "center"):
        raise ValueError(f"position must be 'random' or 'center', got {position!r}")
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ValueError(f"margin must be an integer >= 0, got {margin!r}")
    if bh + 2 * margin > h or bw + 2 * margin > w:
        raise ValueError(f"a {bh}×{bw} box with margin {margin} does not fit images of {h}×{w}")
    if position == "center":
        top, left = (h - bh) // 2, (w - bw) // 2
    else:
        device = generator.device if generator is not None else torch.device("cpu")
        top = int(torch.randint(margin, h - margin - bh + 1, (), generator=generator, device=device))
        left = int(torch.randint(margin, w - margin - bw + 1, (), generator=generator, device=device))
    keep = torch.ones((1, h, w), dtype=torch.bool)
    keep[:, top : top + bh, left : left + bw] = False
    return keep


def pixel_mask(
    shape: tuple[int, int, int], missing: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """A mask with exactly ``⌊missing · H · W⌋`` missing pixels, drawn without replacement.

    The recipe of DPS and DAPS ("random" masks; DAPS: 70 % missing): a uniformly random set of
    that many pixels, shared by the channels. :func:`random_mask` instead drops each pixel
    independently (a binomial number of them).

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``.
    missing : float
        Fraction in ``[0, 1)``.
    generator : torch.Generator, optional
        Source of randomness.

    Returns
    -------
    torch.Tensor
        Boolean ``(1, H, W)``.

    Examples
    --------
    >>> import torch
    >>> m = pixel_mask((3, 10, 10), 0.7, generator=torch.Generator().manual_seed(0))
    >>> int((~m).sum())
    70
    """
    _, h, w = opkit.check_shape(shape)
    if isinstance(missing, bool) or not 0.0 <= float(missing) < 1.0:
        raise ValueError(f"missing must be a number in [0, 1), got {missing!r}")
    device = generator.device if generator is not None else torch.device("cpu")
    order = torch.randperm(h * w, generator=generator, device=device).cpu()
    keep = torch.ones(h * w, dtype=torch.bool)
    keep[order[: int(float(missing) * h * w)]] = False
    return keep.view(1, h, w)


def half_mask(shape: tuple[int, int, int], side: str = "right") -> Tensor:
    """A mask with one half missing: the ``⌊W/2⌋`` right or left columns, or ``⌊H/2⌋`` rows.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``.
    side : str
        The missing half: ``"right"``, ``"left"``, ``"top"`` or ``"bottom"``.

    Returns
    -------
    torch.Tensor
        Boolean ``(1, H, W)``.

    Examples
    --------
    >>> half_mask((1, 2, 5), "left")[0].int()
    tensor([[0, 0, 1, 1, 1],
            [0, 0, 1, 1, 1]], dtype=torch.int32)
    """
    _, h, w = opkit.check_shape(shape)
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    keep = torch.ones((1, h, w), dtype=torch.bool)
    if side == "right":
        keep[..., w - w // 2 :] = False
    elif side == "left":
        keep[..., : w // 2] = False
    elif side == "top":
        keep[:, : h // 2] = False
    else:
        keep[:, h - h // 2 :] = False
    return keep


def _to_mask(value: Any) -> Tensor | str | None:
    """attrs converter: a boolean ``(k, H, W)`` tensor (a copy) or ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in MASKS:
            raise ValueError(f"mask must be an array or one of the generators {MASKS}, got {value!r}")
        return value
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


def _mask_repr(mask: Tensor | str | None) -> str:
    if mask is None or isinstance(mask, str):
        return repr(mask)
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


def _optional_count(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        in_range(0, 2**31 - 1, integer=True)(inst, attribute, value)


def _boolean(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be True or False, got {value!r}")


@attrs.frozen
class InpaintParams:
    """Parameters of :class:`Inpaint` (frozen, validated).

    One of: an explicit ``mask``; ``missing`` alone (independent random pixels); or a mask
    generator ``mask="box"`` (``box_size``, ``position``, ``margin``, ``seed``),
    ``mask="random"`` (``missing``, ``seed``) or ``mask="half"`` (``side``).

    Attributes
    ----------
    mask : torch.Tensor, str or None
        Boolean mask, ``True`` = kept, stored as ``(1, H, W)`` (shared by the channels) or
        ``(C, H, W)``; a 2-D mask and 0/1 numeric arrays are accepted and converted (a copy).
        Or a generator's name: ``"box"``, ``"random"``, ``"half"``.
    missing : float or None
        Probability in ``[0, 1)`` that a pixel is missing (without ``mask``), or the exact
        fraction of missing pixels (``mask="random"``).
    seed : int or None
        Seed of a random mask (``None`` means 0).
    per_channel : bool
        Random mask drawn per channel instead of per pixel; only with ``missing`` alone.
    box_size : int, (int, int) or None
        Side or ``(height, width)`` of the box (``mask="box"``; default half of each side).
    position : str or None
        ``"random"`` (default) or ``"center"`` (``mask="box"``).
    margin : int or None
        Smallest distance of a random box from the borders (default 0).
    side : str or None
        The missing half for ``mask="half"``: ``"right"`` (default), ``"left"``, ``"top"``,
        ``"bottom"``.

    Raises
    ------
    ValueError
        For an invalid value (the message names the parameter), for both or neither of an
        explicit ``mask`` and ``missing``, or for a parameter the chosen mask does not take.
    """

    mask: Tensor | str | None = attrs.field(default=None, converter=_to_mask, eq=False, repr=_mask_repr)
    missing: float | None = attrs.field(default=None, validator=_missing_fraction)
    seed: int | None = attrs.field(default=None, validator=_optional_seed)
    per_channel: bool = attrs.field(default=False, validator=_boolean)
    box_size: Any = attrs.field(default=None)
    position: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(one_of("random", "center"))
    )
    margin: int | None = attrs.field(default=None, validator=_optional_count)
    side: str | None = attrs.field(default=None, validator=attrs.validators.optional(one_of(*SIDES)))

    def __attrs_post_init__(self) -> None:
        if self.box_size is not None:
            _box_size(self.box_size, 1, 1)  # the form only; the fit is checked with the image
        if isinstance(self.mask, str):
            takes = {
                "box": ("box_size", "position", "margin", "seed"),
                "random": ("missing", "seed"),
                "half": ("side",),
            }[self.mask]
            for name in ("missing", "seed", "box_size", "position", "margin", "side"):
                if getattr(self, name) is not None and name not in takes:
                    raise ValueError(f"{name} does not apply to mask={self.mask!r} (it takes {list(takes)})")
            if self.per_channel:
                raise ValueError(f"per_channel does not apply to mask={self.mask!r}")
            if self.mask == "random" and self.missing is None:
                raise ValueError("mask='random' needs missing (the fraction of missing pixels)")
            if self.mask == "box" and self.position == "center" and self.seed is not None:
                raise ValueError("seed applies to a random box, not to position='center'")
            return
        for name in ("box_size", "position", "margin", "side"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name} applies to the mask generators (mask='box' or 'half') only")
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
    mask : bool array or tensor, or str, optional
        ``True`` = kept; shape ``(H, W)`` (shared by the channels), ``(1, H, W)`` or
        ``(C, H, W)``. Or a generator: ``"box"``, ``"random"``, ``"half"``.
    missing : float, optional
        Instead of ``mask``: probability in ``[0, 1)`` that a pixel is missing.
    seed : int, optional
        Seed of the random mask (default 0).
    per_channel : bool
        Random mask drawn independently per channel.
    box_size, position, margin, side
        Parameters of the mask generators ``mask="box"`` and ``mask="half"``
        (:class:`InpaintParams`).

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
        box_size: int | tuple[int, int] | None = None,
        position: str | None = None,
        margin: int | None = None,
        side: str | None = None,
    ) -> None:
        super().__init__(shape)
        self.params = InpaintParams(
            mask=mask,
            missing=missing,
            seed=seed,
            per_channel=per_channel,
            box_size=box_size,
            position=position,
            margin=margin,
            side=side,
        )
        c, h, w = self.shape
        p = self.params
        if isinstance(p.mask, str):
            g = torch.Generator(device="cpu").manual_seed(p.seed or 0)
            if p.mask == "box":
                keep = box_mask(
                    self.shape, p.box_size, position=p.position or "random", margin=p.margin or 0, generator=g
                )
            elif p.mask == "random":
                keep = pixel_mask(self.shape, float(p.missing or 0.0), generator=g)
            else:
                keep = half_mask(self.shape, p.side or "right")
        elif self.params.mask is not None:
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
    box_size: int | tuple[int, int] | None = None,
    position: str | None = None,
    margin: int | None = None,
    side: str | None = None,
) -> Inpaint:
    """Inpainting: keep the pixels of a mask (given, random, a box or a half), zero the rest."""
    return Inpaint(
        shape,
        mask=mask,
        missing=missing,
        seed=seed,
        per_channel=per_channel,
        box_size=box_size,
        position=position,
        margin=margin,
        side=side,
    )


@st.composite
def _kwargs(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(shapes())
    c, h, w = shape
    kind = draw(st.sampled_from(["mask_hw", "mask_chw", "missing", "missing_per_channel", *MASKS]))
    if kind == "box":
        bh, bw = draw(st.integers(1, h)), draw(st.integers(1, w))
        margin = draw(st.integers(0, min(h - bh, w - bw) // 2))
        position = draw(st.sampled_from(["random", "center"]))
        kw: dict[str, Any] = {"shape": shape, "mask": "box", "box_size": (bh, bw), "position": position}
        return kw | (
            {"margin": margin, "seed": draw(st.integers(0, 2**31 - 1))} if position == "random" else {}
        )
    if kind == "random":
        return {
            "shape": shape,
            "mask": "random",
            "missing": draw(st.floats(0.0, 0.99)),
            "seed": draw(st.integers(0, 99)),
        }
    if kind == "half":
        return {"shape": shape, "mask": "half", "side": draw(st.sampled_from(list(SIDES)))}
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
