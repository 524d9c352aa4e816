"""``blur``: separable blur with zero padding and a thresholded Kronecker SVD.

``y = A_c X A_rᵀ`` on every channel: ``A_c`` (``H × H``) correlates each column with the
vertical kernel ``col``, ``A_r`` (``W × W``) each row with the horizontal kernel ``row``; the 2-D
kernel is ``K[a, b] = col[a] · row[b]`` and the output has the input's size ("same"), the image
being zero outside its borders (DDRM appendix D.5). The SVD is the Kronecker product of the two
1-D SVDs (:mod:`opkit_plugins._separable`).

Centre convention (also for even lengths): a kernel of ``L`` taps has its centre at index
``c = ⌊(L − 1)/2⌋`` and ``y_i = Σ_t k_t x_{i + t − c}``, a cross-correlation as computed by
``torch.nn.functional.conv2d(..., padding="same")``: an even kernel reaches one pixel further
to the right/bottom than to the left/top.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch
import torch.nn.functional as nnf
from hypothesis import strategies as st
from torch import Tensor

import opkit
from opkit.params import non_negative, one_of
from opkit.testing.strategies import shapes
from opkit_plugins._separable.correlation import separable_correlation, separable_correlation_adjoint
from opkit_plugins._separable.dct import dct_factor, is_centred_symmetric
from opkit_plugins._separable.factor import Factor
from opkit_plugins._separable.factorization import correlation_factor
from opkit_plugins._separable.operator import SeparableSVDOperator

__all__ = [
    "Blur",
    "BlurParams",
    "blur_reference",
    "gaussian_kernel",
    "kernel_centre",
    "uniform_kernel",
]

#: Default ``threshold``: the value the DDRM experiments use on each 1-D factor.
DEFAULT_THRESHOLD = 3e-2


def _opt_size(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _opt_positive(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    try:
        ok = not isinstance(value, bool) and math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{attribute.name} must be a positive finite number, got {value!r}")


def _to_taps(value: Any) -> tuple[float, ...] | None:
    """Converter: a 1-D kernel (sequence, array, tensor) to a tuple of floats; ``None`` stays."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        if value.ndim > 1:
            return value  # type: ignore[return-value]  # not 1-D: the validator names it
        value = value.detach().cpu().to(torch.float64).reshape(-1).tolist()
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return value  # type: ignore[no-any-return]  # the validator names the problem


def _taps(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, tuple) or not all(isinstance(v, float) for v in value):
        raise ValueError(f"{attribute.name} must be a 1-D sequence of numbers, got {value!r}")
    if len(value) == 0:
        raise ValueError(f"{attribute.name} must not be empty")
    if not all(math.isfinite(v) for v in value):
        raise ValueError(f"{attribute.name} must hold finite numbers, got {value!r}")
    if not any(v != 0 for v in value):
        raise ValueError(f"{attribute.name} must have a non-zero tap")


@attrs.frozen
class BlurParams:
    """Parameters of ``blur`` (frozen, validated; a bad value raises ``ValueError`` naming it).

    Attributes
    ----------
    kernel : str
        ``"uniform"``, ``"gaussian"``, ``"anisotropic"`` or ``"explicit"`` (given ``row``/``col``).
    size : int or None
        Taps per axis. ``uniform``: default 9; ``gaussian``: default ``2⌈3σ⌉ + 1``;
        ``anisotropic``: default 9 (as in the DDRM experiments). Odd or even.
    sigma : float or None
        Standard deviation of ``gaussian`` (pixels), required for it.
    sigma_h, sigma_v : float or None
        Horizontal and vertical standard deviations of ``anisotropic``; default 20 and 1 (DDRM).
    row, col : tuple of float or None
        Explicit horizontal and vertical taps (``kernel="explicit"``); a missing one is ``(1.0,)``.
    threshold : float
        1-D singular values below it are set to zero (default ``3e-2``), see :class:`Blur`.
    boundary : str
        ``"zero"`` (default: the image is zero outside its borders, as in DDRM) or
        ``"reflect"`` (half-sample symmetric extension ``… x_1 x_0 | x_0 x_1 … x_{n−1} |
        x_{n−1} x_{n−2} …``, as ``scipy.ndimage``'s ``mode="reflect"``, numpy's ``"symmetric"``
        and ``sr_bicubic``'s ``boundary="symmetric"``; not torch's whole-sample ``"reflect"``
        padding). With a symmetric odd kernel a reflective blur is diagonalised exactly by the
        DCT-II (:class:`~opkit_plugins._separable.dct.DCTFactor`): no eigendecomposition, and
        ``V``/``Vᵀ`` are fast DCTs.
    """

    kernel: str = attrs.field(
        default="uniform", validator=one_of("uniform", "gaussian", "anisotropic", "explicit")
    )
    size: int | None = attrs.field(default=None, validator=_opt_size)
    sigma: float | None = attrs.field(default=None, validator=_opt_positive)
    sigma_h: float | None = attrs.field(default=None, validator=_opt_positive)
    sigma_v: float | None = attrs.field(default=None, validator=_opt_positive)
    row: tuple[float, ...] | None = attrs.field(default=None, converter=_to_taps, validator=_taps)
    col: tuple[float, ...] | None = attrs.field(default=None, converter=_to_taps, validator=_taps)
    threshold: float = attrs.field(default=DEFAULT_THRESHOLD, validator=non_negative)
    boundary: str = attrs.field(default="zero", validator=one_of("zero", "reflect"))

    def __attrs_post_init__(self) -> None:
        allowed = {
            "uniform": {"size"},
            "gaussian": {"size", "sigma"},
            "anisotropic": {"size", "sigma_h", "sigma_v"},
            "explicit": {"row", "col"},
        }[self.kernel]
        for name in ("size", "sigma", "sigma_h", "sigma_v", "row", "col"):
            if getattr(self, name) is not None and name not in allowed:
                raise ValueError(
                    f"{name} does not apply to kernel={self.kernel!r} (it takes {sorted(allowed)})"
                )
        if self.kernel == "gaussian" and self.sigma is None:
            raise ValueError("sigma is required for kernel='gaussian'")
        if self.kernel == "explicit" and self.row is None and self.col is None:
            raise ValueError("row or col is required for kernel='explicit'")

    def kernels(self) -> tuple[Tensor, Tensor]:
        """The 1-D taps ``(col, row)`` (vertical, horizontal) in float64.

        Returns
        -------
        tuple of torch.Tensor
            ``col`` then ``row``.
        """
        if self.kernel == "uniform":
            k = uniform_kernel(self.size if self.size is not None else 9)
            return k, k
        if self.kernel == "gaussian":
            assert self.sigma is not None
            k = gaussian_kernel(self.sigma, self.size)
            return k, k
        if self.kernel == "anisotropic":
            size = self.size if self.size is not None else 9
            sh = self.sigma_h if self.sigma_h is not None else 20.0
            sv = self.sigma_v if self.sigma_v is not None else 1.0
            return gaussian_kernel(sv, size), gaussian_kernel(sh, size)
        one = (1.0,)
        return (
            torch.tensor(self.col if self.col is not None else one, dtype=torch.float64),
            torch.tensor(self.row if self.row is not None else one, dtype=torch.float64),
        )


def uniform_kernel(size: int) -> Tensor:
    """``size`` taps of ``1/size`` (a 9-tap uniform blur has nine taps of 1/9).

    Parameters
    ----------
    size : int
        Number of taps, ``≥ 1``.

    Returns
    -------
    torch.Tensor
        The float64 taps.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    return torch.full((size,), 1.0 / size, dtype=torch.float64)


def kernel_centre(length: int) -> int:
    """Index of the centre tap, ``c = ⌊(L − 1)/2⌋`` (torch's ``padding="same"`` convention).

    Parameters
    ----------
    length : int
        Number of taps ``L``.

    Returns
    -------
    int
        ``c``.
    """
    return (length - 1) // 2


def gaussian_kernel(sigma: float, size: int | None = None) -> Tensor:
    """Sampled, normalised Gaussian ``k_t ∝ exp(−d_t² / (2σ²))``, ``Σ k_t = 1``.

    The taps sit at ``d_t = t − (L − 1)/2`` (integer offsets ``−(L−1)/2 … (L−1)/2`` for odd
    ``L``, symmetric half-integers for even ``L``). With ``L = 9`` this is the DDRM anisotropic
    kernel (``σ = 20`` horizontally, ``σ = 1`` vertically: ``exp(−d²/(2σ²))`` at ``d = −4 … 4``,
    normalised).

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels, ``> 0``.
    size : int, optional
        ``L``; default ``2⌈3σ⌉ + 1`` (covers ``±3σ``).

    Returns
    -------
    torch.Tensor
        The float64 taps.
    """
    if isinstance(sigma, bool) or not (math.isfinite(float(sigma)) and float(sigma) > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
    length = 2 * math.ceil(3 * float(sigma)) + 1 if size is None else size
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    d = torch.arange(length, dtype=torch.float64) - (length - 1) / 2
    k = torch.exp(-(d**2) / (2 * float(sigma) ** 2))
    return k / k.sum()


def _factor(kernel: Tensor, n: int, threshold: float, boundary: str) -> Factor:
    """The 1-D factor of one axis: a DCT for a reflective symmetric odd kernel, else a dense SVD."""
    if boundary == "reflect" and is_centred_symmetric(kernel):
        return dct_factor(kernel, n, threshold)
    extension = "symmetric" if boundary == "reflect" else "zero"
    return correlation_factor(
        kernel, n, pad=kernel_centre(kernel.numel()), threshold=threshold, boundary=extension
    )


def _same_pads(length: int) -> tuple[int, int]:
    c = kernel_centre(length)
    return c, length - 1 - c


def blur_reference(x: Tensor, col: Sequence[float] | Tensor, row: Sequence[float] | Tensor) -> Tensor:
    """Direct blur: one depthwise ``conv2d`` with the 2-D kernel ``col ⊗ row``, zero padding.

    Equal to ``conv2d(x, K, padding="same", groups=C)``: the input is zero-padded by
    ``c`` = :func:`kernel_centre` on the top/left and ``L − 1 − c`` on the bottom/right.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)``.
    col, row : sequence of float or torch.Tensor
        Vertical and horizontal taps.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``.
    """
    kc = torch.as_tensor(col, dtype=x.dtype, device=x.device).flatten()
    kr = torch.as_tensor(row, dtype=x.dtype, device=x.device).flatten()
    c = x.shape[1]
    weight = torch.outer(kc, kr).expand(c, 1, kc.numel(), kr.numel())
    top, bottom = _same_pads(kc.numel())
    left, right = _same_pads(kr.numel())
    return nnf.conv2d(nnf.pad(x, (left, right, top, bottom)), weight, groups=c)


class Blur(SeparableSVDOperator):
    """Separable blur ``y = A_c X A_rᵀ`` per channel, zero or reflective border, "same" output size.

    .. math::

        y_{ij} = \\sum_{a < L_c} \\sum_{b < L_r} \\mathrm{col}_a \\, \\mathrm{row}_b \\;
                 x_{i + a - c_c,\\; j + b - c_r}, \\qquad c = \\lfloor (L - 1)/2 \\rfloor,

    with ``x = 0`` outside the image (``boundary="zero"``, the default) or ``x`` extended by
    half-sample symmetric reflection (``boundary="reflect"``). ``A_c = U_c S_c V_cᵀ`` and
    ``A_r = U_r S_r V_rᵀ`` are factorised in float64 and every 1-D singular value below
    ``threshold`` is set to zero (DDRM's ``ZERO = 3e-2`` on each factor is the default). The
    operator is then the **truncated** blur ``H = A_{c,t} ⊗ A_{r,t}`` with
    ``A_t = U S_t Vᵀ``: its singular values are the products ``s_c[i]·s_r[j]`` of kept 1-D
    values (each ``≥ threshold²`` if non-zero), ``H†`` is exact for it and every law holds for
    it. When the threshold drops nothing (only numerically zero singular values, e.g.
    ``threshold = 0``, or a mild kernel) ``H`` is the plain blur and :meth:`forward` runs the
    direct separable correlation (two 1-D passes); otherwise it multiplies by the dense
    truncated 1-D matrices.

    With ``boundary="reflect"`` and a symmetric odd kernel on an axis, that axis's factor is
    exact and closed-form: ``A = Cᵀ diag(λ) C`` with ``C`` the orthonormal DCT-II and
    ``λ_k = k_c + 2 Σ_d k_{c+d} cos(π k d / n)`` (proof in
    :class:`~opkit_plugins._separable.dct.DCTFactor`), so construction costs ``O(n·L)`` and
    ``V``, ``Vᵀ``, ``H†`` (and ``H`` when truncated) are DCTs, ``O(n log n)`` per line. The
    singular values of such an axis are in natural frequency order, not sorted. Other kernels
    (even or asymmetric) with ``boundary="reflect"`` use the dense SVD of the reflective
    correlation matrix.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)``.
    **params
        See :class:`BlurParams`.
    """

    def __init__(self, shape: tuple[int, int, int], **params: Any) -> None:
        if params.get("kernel") is None:
            params["kernel"] = (
                "explicit" if (params.get("row") is not None or params.get("col") is not None) else "uniform"
            )
        p = BlurParams(**params)
        shp = opkit.check_shape(shape)
        _, h, w = shp
        kc, kr = p.kernels()
        same = h == w and torch.equal(kc, kr)
        col = _factor(kc, h, p.threshold, p.boundary)
        row = col if same else _factor(kr, w, p.threshold, p.boundary)
        top, bottom = _same_pads(kc.numel())
        left, right = _same_pads(kr.numel())
        pads = (left, right, top, bottom)
        extension = "symmetric" if p.boundary == "reflect" else "zero"

        def direct(x: Tensor) -> Tensor:
            kcx, krx = self.cast("kc", kc, x), self.cast("kr", kr, x)
            return separable_correlation(x, kcx, krx, pads=pads, boundary=extension)

        def direct_adjoint(y: Tensor) -> Tensor:
            # Aᵀ: every sample spread back over the pixels it read (a correlation with the flipped
            # kernel), as two 1-D passes
            return separable_correlation_adjoint(
                y, self.cast("kc", kc, y), self.cast("kr", kr, y), (h, w), pads=pads
            )

        if p.boundary == "zero":
            adjoint: Callable[[Tensor], Tensor] | None = direct_adjoint
        elif is_centred_symmetric(kc) and is_centred_symmetric(kr):
            adjoint = direct  # a reflective blur with symmetric kernels is a symmetric matrix
        else:
            adjoint = None  # Aᵀ through the dense factors
        super().__init__(shp, col, row, direct=direct, direct_adjoint=adjoint)
        self.params = p
        self._kc, self._kr = kc, kr

    @property
    def col_kernel(self) -> Tensor:
        """Vertical taps (float64)."""
        return self._kc

    @property
    def row_kernel(self) -> Tensor:
        """Horizontal taps (float64)."""
        return self._kr


def _factory(
    *,
    shape: tuple[int, int, int],
    kernel: str | None = None,
    size: int | None = None,
    sigma: float | None = None,
    sigma_h: float | None = None,
    sigma_v: float | None = None,
    row: Sequence[float] | None = None,
    col: Sequence[float] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    boundary: str = "zero",
) -> Blur:
    """Separable blur (zero or reflective border): uniform, gaussian, anisotropic (DDRM) or explicit taps."""
    return Blur(
        shape,
        kernel=kernel,
        size=size,
        sigma=sigma,
        sigma_h=sigma_h,
        sigma_v=sigma_v,
        row=row,
        col=col,
        threshold=threshold,
        boundary=boundary,
    )


def _strategy() -> st.SearchStrategy[dict[str, Any]]:
    taps = st.lists(st.floats(0.05, 1.0), min_size=1, max_size=6).map(lambda v: tuple(t / sum(v) for t in v))
    threshold = st.floats(3e-2, 0.2)
    kernel = st.one_of(
        st.fixed_dictionaries({"kernel": st.just("uniform"), "size": st.integers(1, 9)}),
        st.fixed_dictionaries({"kernel": st.just("gaussian"), "sigma": st.floats(0.3, 2.5)}),
        st.fixed_dictionaries(
            {
                "kernel": st.just("anisotropic"),
                "sigma_h": st.floats(0.5, 20.0),
                "sigma_v": st.floats(0.5, 20.0),
            }
        ),
        st.fixed_dictionaries({"kernel": st.just("explicit"), "row": taps, "col": taps}),
    )
    boundary = st.sampled_from(["zero", "reflect"])
    return st.tuples(kernel, shapes(max_side=20), threshold, boundary).map(
        lambda t: {**t[0], "shape": t[1], "threshold": t[2], "boundary": t[3]}
    )


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    """Register ``blur``."""
    registry.add_operator("blur", _factory, strategy=_strategy())
