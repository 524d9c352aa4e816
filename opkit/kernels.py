r"""Blur kernels of the field: Gaussian (isotropic or rotated), camera-shake motion, box, disk, file.

Every generator returns a float64 ``(kh, kw)`` tensor whose entries are non-negative and sum to
one. Row index ``a`` runs down the image and column index ``b`` to the right; the tap that
multiplies the output pixel's own input pixel (the *centre*) is ``(kh // 2, kw // 2)``
(:func:`centre`), as in :func:`scipy.ndimage.convolve`. The generators that draw at random
(:func:`motion`) take a :class:`torch.Generator`, so a seed gives the same kernel on every
machine and torch's global random state is never used.

======================  ==================================================================
generator               kernel
======================  ==================================================================
:func:`gaussian`        :math:`k_{ab} \propto \exp(-\tfrac12 d^\top \Sigma^{-1} d)`; isotropic
                        (``sigma``) or with ``sigma1`` along ``angle`` and ``sigma2`` across
:func:`motion`          a random camera-shake trajectory (``size``, ``intensity``), the
                        recipe of the ``motionblur`` package used by DPS and DAPS
:func:`uniform`         the ``size × size`` box, every tap ``1/size²``
:func:`disk`            defocus: the exact area of each pixel inside a disk of ``radius``
:func:`from_file`       a ``.npy`` array or a greyscale image file, normalised
======================  ==================================================================

Examples
--------
>>> from opkit import kernels
>>> k = kernels.gaussian(61, sigma=3.0)
>>> tuple(k.shape), round(float(k.sum()), 12)
((61, 61), 1.0)
>>> import torch
>>> m = kernels.motion(61, 0.5, generator=torch.Generator().manual_seed(3))
>>> bool((m >= 0).all()), round(float(m.sum()), 12)
(True, 1.0)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "GENERATORS",
    "centre",
    "disk",
    "from_file",
    "gaussian",
    "motion",
    "normalise",
    "uniform",
]

#: Names of the kernel generators (the values ``conv2d``'s ``kernel`` parameter takes by name).
GENERATORS = ("gaussian", "motion", "uniform", "disk")

F64 = torch.float64


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _check_positive(name: str, value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = math.nan
    if isinstance(value, bool) or not 0.0 < f < math.inf:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return f


def centre(size: int) -> int:
    """Index of the centre tap of a kernel side of ``size`` taps: ``size // 2``.

    For odd sizes it is the middle tap; for even sizes the first of the two middle taps past the
    midpoint, the convention of :func:`scipy.ndimage.convolve` (an even kernel reaches one pixel
    further up and to the left of the output pixel than down and to the right).

    Parameters
    ----------
    size : int
        Taps along one axis.

    Returns
    -------
    int
        ``size // 2``.
    """
    return _check_size("size", size) // 2


def normalise(kernel: Any, *, what: str = "kernel") -> Tensor:
    r"""Check a 2-D kernel and scale it to sum to one: :math:`k / \sum_{ab} k_{ab}`.

    Parameters
    ----------
    kernel : array-like
        A 2-D array or tensor of real numbers.
    what : str
        How to name the kernel in error messages (e.g. the file it came from).

    Returns
    -------
    torch.Tensor
        The float64 ``(kh, kw)`` kernel, summing to one.

    Raises
    ------
    ValueError
        If the kernel is not 2-D, is empty, holds NaN or infinity, has a negative entry or is
        all zero.
    """
    try:
        k = kernel.detach() if isinstance(kernel, Tensor) else torch.as_tensor(np.asarray(kernel))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{what} must be a 2-D array of numbers, got {type(kernel).__name__}") from exc
    if k.ndim != 2 or k.numel() == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array (kh, kw), got shape {tuple(k.shape)}")
    if k.is_complex():
        raise ValueError(f"{what} must hold real numbers, got dtype {k.dtype}")
    k = k.to(device="cpu", dtype=F64)
    if not bool(torch.isfinite(k).all()):
        raise ValueError(f"{what} holds NaN or infinity")
    if bool((k < 0).any()):
        raise ValueError(
            f"{what} has negative entries (smallest {float(k.min()):.3g}); a blur kernel is >= 0"
        )
    total = float(k.sum())
    if not total > 0:
        raise ValueError(f"{what} is all zero: nothing to normalise")
    return k / total


def _offsets(size: int) -> Tensor:
    """Tap offsets from the kernel's midpoint, ``t − (size − 1)/2`` (half-integers for even sizes)."""
    return torch.arange(size, dtype=F64) - (size - 1) / 2


def gaussian(
    size: int | None = None,
    sigma: float | None = None,
    *,
    sigma1: float | None = None,
    sigma2: float | None = None,
    angle: float = 0.0,
) -> Tensor:
    r"""A sampled 2-D Gaussian, isotropic or rotated, normalised to sum to one.

    .. math::

        k_{ab} \propto \exp\!\Big(-\frac{u^2}{2\sigma_1^2} - \frac{v^2}{2\sigma_2^2}\Big),
        \qquad
        \begin{pmatrix} u \\ v \end{pmatrix} =
        \begin{pmatrix} \cos\theta & \sin\theta \\ -\sin\theta & \cos\theta \end{pmatrix}
        \begin{pmatrix} d_x \\ d_y \end{pmatrix},

    with :math:`d_x = b - (k_w - 1)/2` the column offset (to the right) and
    :math:`d_y = -(a - (k_h - 1)/2)` the row offset counted upwards, so ``sigma1`` lies along the
    direction at ``angle`` degrees counter-clockwise from the horizontal, as the image is
    displayed. The isotropic kernel is :math:`\sigma_1 = \sigma_2 = \sigma` (DPS and DiffPIR use
    ``size=61, sigma=3``; their :func:`scipy.ndimage.gaussian_filter` construction also truncates
    at :math:`4\sigma`, a difference below :math:`e^{-8}` of the peak). For even sizes the taps
    sit at half-integer offsets, symmetric about the kernel's midpoint.

    Parameters
    ----------
    size : int, optional
        Side of the square kernel; default :math:`2\lceil 3\max(\sigma_1, \sigma_2)\rceil + 1`.
    sigma : float, optional
        Standard deviation of the isotropic Gaussian (pixels). Give it, or ``sigma1`` and
        ``sigma2``.
    sigma1, sigma2 : float, optional
        Standard deviations along ``angle`` and across it.
    angle : float
        Direction of ``sigma1``, degrees counter-clockwise from the horizontal axis.

    Returns
    -------
    torch.Tensor
        The float64 ``(size, size)`` kernel.

    Raises
    ------
    ValueError
        For a missing or non-positive standard deviation, both forms given, or a bad size.
    """
    if sigma is not None:
        if sigma1 is not None or sigma2 is not None:
            raise ValueError("give sigma (isotropic) or sigma1 and sigma2 (anisotropic), not both")
        s1 = s2 = _check_positive("sigma", sigma)
    else:
        if sigma1 is None or sigma2 is None:
            raise ValueError("a Gaussian kernel needs sigma, or both sigma1 and sigma2")
        s1, s2 = _check_positive("sigma1", sigma1), _check_positive("sigma2", sigma2)
    try:
        theta = math.radians(float(angle))
    except (TypeError, ValueError):
        theta = math.nan
    if isinstance(angle, bool) or not math.isfinite(theta):
        raise ValueError(f"angle must be a finite number of degrees, got {angle!r}")
    n = 2 * math.ceil(3 * max(s1, s2)) + 1 if size is None else _check_size("size", size)
    d = _offsets(n)
    dx, dy = d[None, :], -d[:, None]
    u = math.cos(theta) * dx + math.sin(theta) * dy
    v = -math.sin(theta) * dx + math.cos(theta) * dy
    k = torch.exp(-0.5 * (u / s1) ** 2 - 0.5 * (v / s2) ** 2)
    return k / k.sum()


def uniform(size: int) -> Tensor:
    """The ``size × size`` box blur: every tap ``1 / size²``.

    Parameters
    ----------
    size : int
        Side of the box.

    Returns
    -------
    torch.Tensor
        The float64 ``(size, size)`` kernel.
    """
    n = _check_size("size", size)
    return torch.full((n, n), 1.0 / (n * n), dtype=F64)


def _disk_quadrant(x: Tensor, y: Tensor, r: float) -> Tensor:
    r"""Signed area of :math:`\{(s, t): s^2 + t^2 \le r^2\}` within the rectangle spanned by 0 and ``(x, y)``.

    For :math:`x, y \ge 0` the area is :math:`y\min(x, s^*) + P(\mathrm{clip}(x, s^*, r)) - P(s^*)`
    with :math:`s^* = \sqrt{\max(r^2 - y^2, 0)}` (where the circle crosses height ``y``) and
    :math:`P(s) = \int_0^s \sqrt{r^2 - u^2}\,du = \tfrac12\big(s\sqrt{r^2 - s^2} + r^2\arcsin(s/r)\big)`;
    the sign is ``sign(x)·sign(y)`` by symmetry.
    """
    ax, ay = x.abs(), y.abs()
    s_star = (r * r - ay.square()).clamp_min(0).sqrt()

    def prim(s: Tensor) -> Tensor:
        return 0.5 * (s * (r * r - s.square()).clamp_min(0).sqrt() + r * r * torch.asin((s / r).clamp(-1, 1)))

    upper = torch.minimum(torch.maximum(ax, s_star), torch.full_like(ax, r))
    area = ay * torch.minimum(ax, s_star) + prim(upper) - prim(s_star)
    return torch.sign(x) * torch.sign(y) * area


def disk(radius: float, size: int | None = None) -> Tensor:
    r"""Defocus blur: each tap is the area of its pixel inside a disk of ``radius``, normalised.

    The disk is centred on the kernel's midpoint; pixel ``(a, b)`` is the unit square centred at
    offsets :math:`(a - (k-1)/2,\; b - (k-1)/2)`. The area of each square inside the disk is
    exact (closed form, no sampling; MATLAB's ``fspecial("disk")`` computes the same coverage).

    Parameters
    ----------
    radius : float
        Radius in pixels, ``> 0``.
    size : int, optional
        Side of the kernel; default :math:`2\lceil r - \tfrac12\rceil + 1`, the smallest odd side
        that holds the disk.

    Returns
    -------
    torch.Tensor
        The float64 ``(size, size)`` kernel.
    """
    r = _check_positive("radius", radius)
    n = 2 * max(0, math.ceil(r - 0.5)) + 1 if size is None else _check_size("size", size)
    edges = torch.arange(n + 1, dtype=F64) - n / 2  # pixel borders, centred
    corner = _disk_quadrant(edges[None, :], edges[:, None], r)  # (n+1, n+1) over (y, x) corners
    area = corner[1:, 1:] - corner[1:, :-1] - corner[:-1, 1:] + corner[:-1, :-1]
    return normalise(area.clamp_min(0), what=f"disk of radius {r}")


def _uniform(n: int, generator: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=F64)


def _beta_integer(a: int, b: int, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` draws of Beta(a, b) for integers a, b ≥ 1: the a-th smallest of a + b − 1 uniforms."""
    u = torch.rand((n, a + b - 1), generator=generator, dtype=F64)
    return u.sort(dim=1).values[:, a - 1]


def _triangular(low: float, mode: float, high: float, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` draws of the triangular distribution on ``[low, high]`` peaking at ``mode`` (inverse CDF)."""
    u = torch.rand(n, generator=generator, dtype=F64)
    width = high - low
    cut = (mode - low) / width
    left = low + (u * width * (mode - low)).sqrt()
    right = high - ((1 - u) * width * (high - mode)).sqrt()
    return torch.where(u < cut, left, right)


#: The recipe's small constant added to ``1 − intensity`` and to the angle bound.
_MOTION_EPS = 0.1


def _motion_path(side_x: float, side_y: float, intensity: float, generator: torch.Generator | None) -> Tensor:
    """The recipe's trajectory on a ``side_x × side_y`` canvas: complex points ``x + i y``."""
    diagonal = math.hypot(side_x, side_y)
    u = _uniform(2, generator)
    max_len = 0.75 * diagonal * (float(u[0]) + intensity**2 * float(u[1]))
    scale = (1 - intensity + _MOTION_EPS) * diagonal
    # steps Beta(1, 30)·scale, those not shorter than the whole path rejected, until they sum to
    # at least the path length (the last one included); drawn in blocks, same law as one by one
    kept: list[Tensor] = []
    total = 0.0
    while total < max_len:
        steps = _beta_integer(1, 30, 256, generator) * scale
        steps = steps[steps < max_len]
        csum = total + steps.cumsum(0)
        done = torch.nonzero(csum >= max_len)
        if len(done):
            steps = steps[: int(done[0]) + 1]
        kept.append(steps)
        total += float(steps.sum())
    step = torch.cat(kept) if kept else torch.zeros(0, dtype=F64)
    n = step.numel()
    if n == 0:  # a path of length zero (probability zero): one point, a delta kernel
        return torch.tensor([complex(side_x / 2, side_y / 2)])
    max_angle = intensity * math.pi * float(_uniform(1, generator)[0])
    jitter = float(_beta_integer(2, 20, 1, generator)[0])
    first = float(_uniform(1, generator, -max_angle, max_angle)[0]) if max_angle > 0 else 0.0
    size = _triangular(0.0, intensity * max_angle, max_angle + _MOTION_EPS, max(n - 1, 0), generator)
    flips = torch.rand(max(n - 1, 0), generator=generator, dtype=F64) < jitter
    # each later angle keeps the previous one's sign, or flips it with probability `jitter`
    signs = math.copysign(1.0, first) * torch.where(flips, -1.0, 1.0).cumprod(0) if first != 0 else 0 * size
    angles = torch.cat([torch.tensor([first], dtype=F64), size * signs])
    path = torch.cumsum(torch.polar(step, angles), 0)
    path = path - path.mean()  # centre of mass at the origin
    rotation = torch.polar(torch.ones((), dtype=F64), math.pi * _uniform(1, generator)[0])
    return path * rotation + complex(side_x / 2, side_y / 2)


def _segment_distance(px: Tensor, py: Tensor, path: Tensor) -> Tensor:
    """Distance from every point ``(px, py)`` to the polyline ``path`` (complex vertices)."""
    ax, ay = path[:-1].real, path[:-1].imag
    dx, dy = path[1:].real - ax, path[1:].imag - ay
    if path.numel() == 1:
        return ((px - path.real) ** 2 + (py - path.imag) ** 2).sqrt()
    inv_len2 = 1.0 / (dx.square() + dy.square()).clamp_min(1e-300)
    best = torch.full(px.shape, math.inf, dtype=F64)
    chunk = max(1, 2**22 // max(px.numel(), 1))
    for s in range(0, ax.numel(), chunk):  # segments in blocks, bounding the memory
        sl = slice(s, s + chunk)
        qx, qy = px[..., None] - ax[sl], py[..., None] - ay[sl]
        # t = clip(<q, d> / |d|², 0, 1): the closest point of the segment is a + t d
        t = (qx * dx[sl]).addcmul_(qy, dy[sl]).mul_(inv_len2[sl]).clamp_(0, 1)
        qx.addcmul_(t, dx[sl], value=-1.0)
        qy.addcmul_(t, dy[sl], value=-1.0)
        best = torch.minimum(best, qx.square_().addcmul_(qy, qy).amin(-1))
    return best.sqrt_()


def _gaussian_smooth(img: Tensor, sigma: float) -> Tensor:
    """Separable sampled-Gaussian smoothing (taps to ±3σ, zero outside the canvas)."""
    half = math.ceil(3 * sigma)
    d = torch.arange(-half, half + 1, dtype=F64)
    g = torch.exp(-0.5 * (d / sigma) ** 2)
    g = g / g.sum()
    x = img[None, None]
    x = torch.nn.functional.conv2d(x, g.view(1, 1, -1, 1), padding=(half, 0))
    x = torch.nn.functional.conv2d(x, g.view(1, 1, 1, -1), padding=(0, half))
    return x[0, 0]


def motion(size: int = 61, intensity: float = 0.5, *, generator: torch.Generator | None = None) -> Tensor:
    r"""A random camera-shake kernel: the recipe of Borodenko's ``motionblur`` package, as used by DPS.

    DPS (Chung et al. 2023), DiffPIR and DAPS draw their motion kernels with
    ``motionblur.Kernel(size=(61, 61), intensity=0.5)``. This is that recipe, written from its
    description with torch's seeded generator (the numbers drawn differ from numpy's, the law is
    the same). On a canvas twice the kernel's size with diagonal :math:`D`:

    1. path length :math:`L = 0.75\,D\,(U_1 + U_2)`, :math:`U_1 \sim U(0, 1)`,
       :math:`U_2 \sim U(0, \text{intensity}^2)`;
    2. step lengths :math:`\mathrm{Beta}(1, 30)\,(1 - \text{intensity} + 0.1)\,D`, each shorter
       than :math:`L`, drawn until they sum to at least :math:`L`;
    3. an angle bound :math:`\alpha \sim U(0, \text{intensity}\,\pi)` and a jitter
       :math:`p \sim \mathrm{Beta}(2, 20)`; the first step's direction is :math:`U(-\alpha, \alpha)`,
       each later one has magnitude :math:`\mathrm{Tri}(0, \text{intensity}\,\alpha, \alpha + 0.1)`
       and the previous direction's sign, flipped with probability :math:`p`;
    4. the path is the cumulative sum of the steps :math:`r_j e^{i\theta_j}`, moved so that the mean
       of its points is the canvas centre and rotated by :math:`U(0, \pi)`;
    5. it is drawn as a line of width :math:`\max(1, \lfloor D/150 \rfloor)`, smoothed by a
       Gaussian of :math:`\sigma = \lfloor D/100 \rfloor` pixels (none when zero), reduced to the
       kernel's size and normalised to sum to one.

    Two details differ from the package, which draws with Pillow: the line is anti-aliased (each
    canvas pixel is :math:`\mathrm{clip}(w/2 + 1/2 - d, 0, 1)` for its distance :math:`d` to the
    path) and the 2× reduction averages 2×2 blocks instead of a Lanczos filter, so that the kernel
    is non-negative by construction. ``intensity = 0`` gives a straight line of random length and
    direction; 1 a long curved, often self-crossing path.

    Parameters
    ----------
    size : int
        Side of the square kernel (DPS: 61).
    intensity : float
        In ``[0, 1]`` (DPS: 0.5).
    generator : torch.Generator, optional
        Source of randomness; torch's default generator if omitted.

    Returns
    -------
    torch.Tensor
        The float64 ``(size, size)`` kernel.
    """
    n = _check_size("size", size)
    try:
        inten = float(intensity)
    except (TypeError, ValueError):
        inten = math.nan
    if isinstance(intensity, bool) or not 0.0 <= inten <= 1.0:
        raise ValueError(f"intensity must be a number in [0, 1], got {intensity!r}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("motion kernels are drawn on the CPU: pass a CPU torch.Generator")
    side = 2 * n
    diagonal = math.hypot(side, side)
    path = _motion_path(side, side, inten, generator)
    width = max(1, int(diagonal / 150))
    # pixel (i, j) covers [j, j+1) × [i, i+1); only pixels within reach of the path can be lit
    reach = width / 2 + 0.5
    lo_x = max(0, math.floor(float(path.real.min()) - reach))
    hi_x = min(side, math.ceil(float(path.real.max()) + reach) + 1)
    lo_y = max(0, math.floor(float(path.imag.min()) - reach))
    hi_y = min(side, math.ceil(float(path.imag.max()) + reach) + 1)
    canvas = torch.zeros((side, side), dtype=F64)
    if lo_x < hi_x and lo_y < hi_y:
        cx = torch.arange(lo_x, hi_x, dtype=F64) + 0.5
        cy = torch.arange(lo_y, hi_y, dtype=F64) + 0.5
        dist = _segment_distance(cx[None, :].expand(len(cy), -1), cy[:, None].expand(-1, len(cx)), path)
        canvas[lo_y:hi_y, lo_x:hi_x] = (reach - dist).clamp(0, 1)
    blur = int(diagonal * 0.01)
    if blur > 0:
        canvas = _gaussian_smooth(canvas, float(blur))
    small = canvas.view(n, 2, n, 2).mean(dim=(1, 3))
    return normalise(small, what="motion kernel")


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm")


def from_file(path: str | os.PathLike[str]) -> Tensor:
    """A kernel read from a ``.npy`` array or a greyscale image file, normalised to sum to one.

    A ``.npy`` file must hold a 2-D array of non-negative real numbers (it is read with
    ``allow_pickle=False``: no code runs). An image is read at its own bit depth (8 or 16 bits, or
    float); a colour image is converted to grey with ITU-R 601 luma weights first.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    torch.Tensor
        The float64 ``(kh, kw)`` kernel.

    Raises
    ------
    ValueError
        For a missing or unreadable file, an unknown suffix, an array that is not 2-D, negative
        entries, or an all-zero kernel (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"kernel file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot read kernel file {str(p)!r}: {exc}") from exc
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"kernel file {str(p)!r} must hold real numbers, got dtype {arr.dtype}")
        return normalise(arr.astype(np.float64), what=f"kernel file {str(p)!r}")
    if suffix not in _IMAGE_SUFFIXES:
        raise ValueError(
            f"kernel file {str(p)!r}: expected a .npy array or an image ({', '.join(_IMAGE_SUFFIXES)})"
        )
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            grey = im if im.mode in ("L", "I", "I;16", "F") else im.convert("L")
            arr = np.asarray(grey).astype(np.float64)
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"cannot read kernel file {str(p)!r}: {exc}") from exc
    return normalise(arr, what=f"kernel file {str(p)!r}")
