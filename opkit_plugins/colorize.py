"""``colorize``: a weighted channel sum, the grayscale measurement of colorization.

Every pixel ``p ∈ R^C`` (``C = 3`` for an RGB image) is reduced to one value::

    y = Σ_c w_c x_c = wᵀ p,        y has shape (B, 1, H, W).

Per pixel, ``H`` is the ``1 × C`` matrix ``wᵀ``. Its SVD (DDRM, appendix D.4, the same
construction as block super-resolution with pixels in place of patches) is

.. math::

    wᵀ = 1 · (\\lVert w \\rVert, 0, …, 0) · Qᵀ,

with ``Q`` a ``C × C`` orthogonal matrix whose first column is ``q₁ = w / ‖w‖``. ``Q`` is built
once, in float64, as a Householder reflection; ``V = Q`` acts on every pixel at once through
one matrix product over the channel axis.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import einops
import torch
from hypothesis import strategies as st
from torch import Tensor

import opkit
from opkit.testing.strategies import shapes

__all__ = ["Colorize", "ColorizeParams", "householder_basis"]

#: Bounds on ``‖w‖`` keeping ``H``, ``Hᵀ`` and ``H†`` finite and normal in float32.
_NORM_RANGE = (1e-30, 1e30)


def householder_basis(w: Tensor) -> Tensor:
    """An orthogonal matrix whose first column is ``w / ‖w‖``, by one Householder reflection.

    With ``q = w / ‖w‖`` and ``u = e₁ + q``, the reflection ``P = I − 2 u uᵀ / (uᵀ u)`` maps
    ``e₁`` to ``−q``; negating its first column gives ``Q`` with ``Q e₁ = q`` and ``QᵀQ = I``.
    When ``q₁ < 0`` the reflection uses ``u = e₁ − q`` (mapping ``e₁`` to ``q``) instead, so
    that always ``uᵀu = 2 + 2|q₁| ≥ 2``: no cancellation, whatever the signs.

    Parameters
    ----------
    w : torch.Tensor
        A non-zero vector of length ``C`` (float64 recommended).

    Returns
    -------
    torch.Tensor
        ``Q``, shape ``(C, C)``, same dtype as ``w``; its columns are an orthonormal basis.

    Examples
    --------
    >>> import torch
    >>> q = householder_basis(torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))
    >>> torch.allclose(q[:, 0], torch.full((3,), 3**-0.5, dtype=torch.float64))
    True
    """
    if w.ndim != 1 or w.numel() == 0:
        raise ValueError(f"w must be a non-empty vector, got shape {tuple(w.shape)}")
    scale = w.abs().max()
    if not bool(scale > 0):
        raise ValueError("w must not be zero")
    q = (w / scale) / torch.linalg.vector_norm(w / scale)
    # reflect towards −q when q₁ ≥ 0 (towards +q otherwise) so that uᵀu = 2 + 2|q₁| ≥ 2
    u = q.clone() if bool(q[0] >= 0) else -q
    u[0] += 1.0
    basis: Tensor = torch.eye(w.numel(), dtype=w.dtype, device=w.device) - (2.0 / (u @ u)) * torch.outer(u, u)
    basis[:, 0] = q  # the reflection maps e₁ to ∓q: fix the sign (and the rounding) of column 0
    return basis


def _to_weights(value: Any) -> tuple[float, ...]:
    """attrs converter: a tuple of Python floats."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"weights must be a sequence of numbers, got {value!r}")
    try:
        if isinstance(value, Tensor):
            value = value.detach().cpu().reshape(-1).tolist()
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"weights must be a sequence of numbers, got {value!r}") from exc
    return out


def _check_weights(_inst: Any, attribute: attrs.Attribute[Any], value: tuple[float, ...]) -> None:
    name = attribute.name
    if len(value) == 0:
        raise ValueError(f"{name} must hold at least one weight")
    if not all(math.isfinite(v) for v in value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if any(v < 0 for v in value):
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    if not any(v > 0 for v in value):
        raise ValueError(f"{name} must not be all zero, got {value!r}")
    big = max(value)
    norm = big * math.sqrt(sum((v / big) ** 2 for v in value))
    if not _NORM_RANGE[0] <= norm <= _NORM_RANGE[1]:
        raise ValueError(
            f"{name} must have a norm in [{_NORM_RANGE[0]:g}, {_NORM_RANGE[1]:g}] "
            f"(finite in float32), got norm {norm:g}"
        )


@attrs.frozen
class ColorizeParams:
    """Parameters of :class:`Colorize` (frozen, validated).

    Attributes
    ----------
    weights : tuple of float
        One non-negative, finite weight per channel, not all zero (``‖w‖`` within
        ``[1e-30, 1e30]`` so that every factor stays finite in float32).

    Raises
    ------
    ValueError
        For an invalid value; the message names ``weights``.
    """

    weights: tuple[float, ...] = attrs.field(converter=_to_weights, validator=_check_weights)


class Colorize(opkit.SVDOperator):
    r"""Weighted channel sum ``y = Σ_c w_c x_c`` with its per-pixel SVD.

    Per pixel ``p ∈ R^C``, ``H p = wᵀ p = ‖w‖ (Qᵀ p)₁`` with ``Q`` orthogonal and
    ``Q e₁ = w / ‖w‖`` (:func:`householder_basis`). The spectral layout is ``(C, H, W)``:
    coordinate ``k`` of a pixel sits on the channel axis, ``Vᵀ x = Qᵀ p`` for every pixel, and
    the singular values are ``(‖w‖, 0, …, 0)`` of shape ``(C, 1, 1)``, so each singular value
    meets the coefficient of its own basis vector at every pixel. ``Uᵀ y`` puts ``y`` on
    coordinate 0 and zeros on the others; ``U v`` reads coordinate 0. Directly,

    .. math::

        H x = \sum_c w_c x_c, \qquad Hᵀ y = w\,y, \qquad H^† y = \frac{w}{\lVert w \rVert^2}\,y .

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``.
    weights : sequence of float, optional
        One weight per channel; ``1/C`` each by default (the channel mean).

    Raises
    ------
    ValueError
        For invalid weights or a number of weights different from ``C``.

    Examples
    --------
    >>> import torch
    >>> op = Colorize((3, 4, 5))
    >>> x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    >>> torch.allclose(op(x), x.mean(1, keepdim=True))
    True
    """

    def __init__(self, shape: tuple[int, int, int], *, weights: Any = None) -> None:
        super().__init__(shape)
        c = self.shape[0]
        self.params = ColorizeParams(weights=(1.0 / c,) * c if weights is None else weights)
        if len(self.params.weights) != c:
            raise ValueError(
                f"weights must hold one weight per channel (C = {c}), got {len(self.params.weights)}"
            )
        w = torch.tensor(self.params.weights, dtype=torch.float64)
        basis = householder_basis(w)
        norm = float(w.abs().max() * torch.linalg.vector_norm(w / w.abs().max()))
        self._norm = norm
        self._w = w
        self._w_pinv = basis[:, 0] / norm  # w / ‖w‖², computed without squaring ‖w‖
        self._basis_t = basis.T.contiguous()  # Qᵀ: row k is basis vector k
        self._basis = basis.contiguous()
        s = torch.zeros((c, 1, 1), dtype=torch.float64)
        s[0] = norm
        self._s = s

    @property
    def weights(self) -> tuple[float, ...]:
        """The channel weights ``w``."""
        return self.params.weights

    @property
    def basis(self) -> Tensor:
        """``Q`` (float64, ``(C, C)``): column ``k`` is the ``k``-th right singular vector of a pixel."""
        return self._basis.clone()

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """``(1, H, W)``."""
        return (1, self.shape[1], self.shape[2])

    @property
    def singulars(self) -> Tensor:
        """``(‖w‖, 0, …, 0)`` of shape ``(C, 1, 1)`` (float64)."""
        return self._s

    def _mix(self, key: str, mat: Tensor, x: Tensor) -> Tensor:
        """``out[:, k] = Σ_c mat[k, c] x[:, c]`` at every pixel, as one matrix product."""
        h, w = x.shape[-2:]
        flat = einops.rearrange(x, "b c h w -> b c (h w)")
        out = torch.matmul(self.cast(key, mat, x), flat)
        return einops.rearrange(out, "b k (h w) -> b k h w", h=h, w=w)

    def Vt(self, x: Tensor) -> Tensor:
        """``Qᵀ p`` at every pixel; coefficient ``k`` on channel ``k``."""
        return self._mix("basis_t", self._basis_t, x)

    def V(self, v: Tensor) -> Tensor:
        """``Q v`` at every pixel (inverse of :meth:`Vt`)."""
        return self._mix("basis", self._basis, v)

    def Ut(self, y: Tensor) -> Tensor:
        """``y`` on spectral coordinate 0, zeros on coordinates ``1 … C−1``."""
        return torch.nn.functional.pad(y, (0, 0, 0, 0, 0, self.shape[0] - 1))

    def U(self, v: Tensor) -> Tensor:
        """Spectral coordinate 0 of ``v``, as a ``(B, 1, H, W)`` measurement."""
        return v[:, :1].clone(memory_format=torch.contiguous_format)

    def forward(self, x: Tensor) -> Tensor:
        """``H x = Σ_c w_c x_c`` (one matrix product over the channel axis)."""
        return self._mix("w", self._w.view(1, -1), x)

    def adjoint(self, y: Tensor) -> Tensor:
        """``Hᵀ y = w y`` (the measurement copied into every channel, scaled by ``w_c``)."""
        self.check_measurement(y)
        return y * self.cast("w_col", self._w.view(-1, 1, 1), y)

    def pinv(self, y: Tensor) -> Tensor:
        """``H† y = w y / ‖w‖²`` (the minimum-norm colour image with weighted sum ``y``)."""
        self.check_measurement(y)
        return y * self.cast("w_pinv_col", self._w_pinv.view(-1, 1, 1), y)


def _factory(*, shape: tuple[int, int, int], weights: Any = None) -> Colorize:
    """Colorization: the weighted channel sum (default the channel mean), one channel out."""
    return Colorize(shape, weights=weights)


@st.composite
def _kwargs(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(shapes(channels=(1, 3)))
    if draw(st.booleans()):
        return {"shape": shape}
    c = shape[0]
    weight = st.one_of(st.just(0.0), st.floats(1e-3, 4.0))
    ws = draw(st.lists(weight, min_size=c, max_size=c))
    if not any(ws):
        ws[draw(st.integers(0, c - 1))] = 1.0
    return {"shape": shape, "weights": ws}


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    """Register ``colorize``."""
    registry.add_operator("colorize", _factory, strategy=_kwargs())
