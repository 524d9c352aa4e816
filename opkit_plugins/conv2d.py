r"""``conv2d``: circular 2-D convolution with any kernel, and its exact real SVD through the FFT.

Every channel :math:`x` (:math:`H \times W`) becomes

.. math::

    y_{ij} = \sum_{a < k_h} \sum_{b < k_w} k_{ab}\; x_{(i - a + c_h) \bmod H,\; (j - b + c_w) \bmod W},
    \qquad c = \lfloor k / 2 \rfloor,

a true convolution (not a correlation) with a periodic (circular) boundary, equal to
``scipy.ndimage.convolve(x, k, mode="wrap")``. With :math:`K = \mathrm{FFT2}(\tilde k)`, where
:math:`\tilde k` is the kernel embedded in an :math:`H \times W` array with its centre tap at
the origin, the convolution is the product :math:`\hat y_\omega = K_\omega \hat x_\omega` of
Fourier coefficients.

**The real SVD.** Take the orthonormal FFT :math:`\hat x = \mathrm{FFT2}(x)/\sqrt{HW}` of a
real image. A *self-conjugate* frequency (:math:`\omega = -\omega`: the DC bin, and the Nyquist
rows/columns of even sides) has a real coefficient: one real coordinate,
:math:`\hat x_\omega`. The other frequencies come in conjugate pairs
:math:`\{\omega, -\omega\}` with :math:`\hat x_{-\omega} = \overline{\hat x_\omega}`: two real
coordinates, :math:`\sqrt2\,\mathrm{Re}\,\hat x_\omega` and :math:`\sqrt2\,\mathrm{Im}\,\hat x_\omega`
(:math:`|\hat x_\omega|^2 + |\hat x_{-\omega}|^2` is their sum of squares, so the map is
orthonormal). That makes exactly :math:`HW` real coordinates per channel: the columns of
:math:`V`. On a pair, :math:`H` multiplies by :math:`K_\omega = |K_\omega| e^{i\phi_\omega}`,
i.e. scales by :math:`|K_\omega|` and rotates by :math:`\phi_\omega`; on a self-conjugate bin
:math:`K_\omega` is real. Hence

.. math::

    H = U \Sigma V^\top, \qquad \Sigma = |K_\omega| \text{ (twice for a pair)}, \qquad
    U = \text{the conjugate-symmetric all-pass filter } e^{i\phi_\omega} \text{ applied after } V,

with :math:`e^{i\phi} = \mathrm{sign}(K_\omega)` on self-conjugate bins and :math:`1` where
:math:`K_\omega = 0`. Nothing is a matrix: ``Vt`` is one ``rfft2`` and a repacking, ``V`` a
repacking and one ``irfft2``, ``Ut``/``U`` the same with one complex multiplication.

**Spectral layout.** ``Vt(x)`` has the image's shape ``(C, H, W)``. Let
:math:`W_i = \lfloor (W-1)/2 \rfloor` be the number of ``rfft2`` columns ``1 … W_i`` that are
not self-conjugate. Row ``r`` holds, in order:

* :math:`2W_i` values :math:`\sqrt2\,\mathrm{Re}\,\hat x_{r,q}, \sqrt2\,\mathrm{Im}\,\hat x_{r,q}`
  for :math:`q = 1 … W_i` (the frequencies :math:`(r, q)`: one member of each conjugate pair);
* one value per self-conjugate column :math:`q \in \{0, W/2\}`: the column is the 1-D real
  Fourier transform of a real sequence, so row :math:`r \le \lfloor H/2 \rfloor` holds
  :math:`\mathrm{Re}\,\hat x_{r,q}` (times :math:`\sqrt2` unless :math:`r \in \{0, H/2\}`) and
  row :math:`r > \lfloor H/2 \rfloor` holds :math:`\sqrt2\,\mathrm{Im}\,\hat x_{r,q}`
  (the imaginary part of the pair's other member).

**Threshold.** As for ``blur``: singular values below ``threshold`` (and those numerically
zero, below :math:`\max(H, W)\,\varepsilon\,\max|K|`) are set to zero, and the operator *is*
the thresholded convolution :math:`H = U \Sigma_t V^\top`, i.e. :math:`K_\omega` replaced by 0
on the dropped frequencies; ``H†`` never divides by them. With ``threshold=0`` only exact
(numerical) zeros are dropped and :math:`H` is the plain circular convolution.

**Boundary.** The image is treated as periodic: what leaves on the right enters on the left.
A zero boundary (``blur``) darkens the borders instead; a reflective one mirrors the image.
For a photograph, whose left and right edges differ, a circular blur mixes the two edges over a
band of the kernel's half-width, so a blur made by a camera (which sees the scene beyond the
frame) differs from this model near the borders. Restorations then show ringing in that band
unless the image is padded (e.g. reflected) beyond the kernel's reach and cropped afterwards.
"""

from __future__ import annotations

import math
import os
from typing import Any

import attrs
import numpy as np
import torch
from hypothesis import strategies as st
from torch import Tensor

import opkit
from opkit import kernels
from opkit.params import non_negative
from opkit.testing.strategies import shapes

__all__ = ["Conv2d", "Conv2dParams", "circular_convolution", "transfer_function"]

#: Default ``threshold``, the value ``blur`` uses (DDRM's ``ZERO = 3e-2``).
DEFAULT_THRESHOLD = 3e-2
_SQRT2 = math.sqrt(2.0)
_SEED_MAX = 2**63 - 1

#: Parameters each kernel generator takes (besides ``threshold``).
_ALLOWED: dict[str, set[str]] = {
    "gaussian": {"size", "sigma", "sigma1", "sigma2", "angle"},
    "motion": {"size", "intensity", "seed"},
    "uniform": {"size"},
    "disk": {"radius", "size"},
    "explicit": set(),
    "file": set(),
}
_GENERATOR_PARAMS = ("size", "sigma", "sigma1", "sigma2", "angle", "intensity", "seed", "radius")


def _to_kernel(value: Any) -> Any:
    """attrs converter: a generator name or a path stays a string; an array becomes float64."""
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    try:
        t = value.detach() if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"kernel must be a 2-D array, a generator name ({', '.join(kernels.GENERATORS)}) or a file, "
            f"got {type(value).__name__}"
        ) from exc
    if t.ndim != 2 or t.numel() == 0:
        raise ValueError(f"kernel must be a non-empty 2-D array (kh, kw), got shape {tuple(t.shape)}")
    if t.is_complex():
        raise ValueError(f"kernel must hold real numbers, got dtype {t.dtype}")
    t = t.to(device="cpu", dtype=torch.float64).clone()
    if not bool(torch.isfinite(t).all()):
        raise ValueError("kernel holds NaN or infinity")
    if not bool((t != 0).any()):
        raise ValueError("kernel is all zero")
    return t


def _kernel_repr(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"<explicit kernel {tuple(value.shape)}>"
    return repr(value)


def _opt_int(lo: int, hi: int) -> Any:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{attribute.name} must be an integer in [{lo}, {hi}], got {value!r}")

    return check


def _opt_positive(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    try:
        ok = not isinstance(value, bool) and 0.0 < float(value) < math.inf
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{attribute.name} must be a positive finite number, got {value!r}")


def _opt_finite(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    try:
        ok = not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


def _opt_unit(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    try:
        ok = not isinstance(value, bool) and 0.0 <= float(value) <= 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{attribute.name} must be a number in [0, 1], got {value!r}")


@attrs.frozen
class Conv2dParams:
    """Parameters of ``conv2d`` (frozen, validated; a bad value raises ``ValueError`` naming it).

    Attributes
    ----------
    kernel : torch.Tensor or str
        An explicit ``(kh, kw)`` kernel (any real numbers, used as given), one of the generators
        ``"gaussian"``, ``"motion"``, ``"uniform"``, ``"disk"`` (:mod:`opkit.kernels`, each
        normalised to sum to one), or the path of a ``.npy`` or greyscale image file
        (:func:`opkit.kernels.from_file`, normalised).
    size : int or None
        Side of a generated kernel: ``gaussian`` (default :math:`2\\lceil 3\\sigma\\rceil + 1`),
        ``motion`` (default 61, as DPS), ``uniform`` (default 9), ``disk`` (default: holds the
        disk).
    sigma : float or None
        Isotropic Gaussian standard deviation (default 3, as DPS, when neither form is given).
    sigma1, sigma2, angle : float or None
        Anisotropic Gaussian: standard deviations along and across ``angle`` (degrees,
        counter-clockwise from the horizontal).
    intensity : float or None
        Motion blur intensity in ``[0, 1]`` (default 0.5, as DPS).
    seed : int or None
        Seed of the motion trajectory (default 0).
    radius : float or None
        Disk radius in pixels (default 3).
    threshold : float
        Singular values ``|K_ω|`` below it are set to zero (default ``3e-2``, as ``blur``).
    """

    kernel: Any = attrs.field(default="gaussian", converter=_to_kernel, eq=False, repr=_kernel_repr)
    size: int | None = attrs.field(default=None, validator=_opt_int(1, 2**20))
    sigma: float | None = attrs.field(default=None, validator=_opt_positive)
    sigma1: float | None = attrs.field(default=None, validator=_opt_positive)
    sigma2: float | None = attrs.field(default=None, validator=_opt_positive)
    angle: float | None = attrs.field(default=None, validator=_opt_finite)
    intensity: float | None = attrs.field(default=None, validator=_opt_unit)
    seed: int | None = attrs.field(default=None, validator=_opt_int(0, _SEED_MAX))
    radius: float | None = attrs.field(default=None, validator=_opt_positive)
    threshold: float = attrs.field(default=DEFAULT_THRESHOLD, validator=non_negative)

    @property
    def source(self) -> str:
        """``"explicit"``, ``"file"`` or the generator's name."""
        if isinstance(self.kernel, Tensor):
            return "explicit"
        return self.kernel if self.kernel in kernels.GENERATORS else "file"

    def __attrs_post_init__(self) -> None:
        if self.source == "file" and not os.path.isfile(self.kernel):
            raise ValueError(
                f"kernel {self.kernel!r} is neither a generator ({', '.join(kernels.GENERATORS)}) nor an "
                "existing .npy or image file"
            )
        allowed = _ALLOWED[self.source]
        for name in _GENERATOR_PARAMS:
            if getattr(self, name) is not None and name not in allowed:
                what = f"kernel={self.kernel!r}" if self.source != "explicit" else "an explicit kernel"
                takes = f"it takes {sorted(allowed)}" if allowed else "it takes none"
                raise ValueError(f"{name} does not apply to {what} ({takes})")
        if self.source == "gaussian":
            aniso = (self.sigma1, self.sigma2, self.angle)
            if self.sigma is not None and any(v is not None for v in aniso):
                raise ValueError("give sigma (isotropic) or sigma1, sigma2, angle (anisotropic), not both")
            if (self.sigma1 is None) != (self.sigma2 is None) or (
                self.angle is not None and self.sigma1 is None
            ):
                raise ValueError("an anisotropic Gaussian needs both sigma1 and sigma2 (angle optional)")

    def make_kernel(self) -> Tensor:
        """The kernel, float64 ``(kh, kw)``.

        Returns
        -------
        torch.Tensor
            Explicit kernels as given; generated and file kernels sum to one.
        """
        source = self.source
        if source == "explicit":
            return self.kernel.clone()  # type: ignore[no-any-return]
        if source == "file":
            return kernels.from_file(self.kernel)
        if source == "gaussian":
            if self.sigma1 is not None:
                return kernels.gaussian(
                    self.size, sigma1=self.sigma1, sigma2=self.sigma2, angle=self.angle or 0.0
                )
            return kernels.gaussian(self.size, 3.0 if self.sigma is None else self.sigma)
        if source == "motion":
            g = torch.Generator().manual_seed(0 if self.seed is None else self.seed)
            size = 61 if self.size is None else self.size
            return kernels.motion(size, 0.5 if self.intensity is None else self.intensity, generator=g)
        if source == "uniform":
            return kernels.uniform(9 if self.size is None else self.size)
        return kernels.disk(3.0 if self.radius is None else self.radius, self.size)


def transfer_function(kernel: Tensor, height: int, width: int) -> Tensor:
    r"""The half-spectrum :math:`K = \mathrm{rFFT2}(\tilde k)` of a kernel on an ``H × W`` torus.

    :math:`\tilde k` is ``kernel`` embedded in an ``H × W`` array with its centre tap
    (:func:`opkit.kernels.centre` of each side) at index ``(0, 0)`` and the other taps wrapped
    around, so that the circular convolution is :math:`\mathrm{irFFT2}(K \cdot \mathrm{rFFT2}(x))`
    (unnormalised FFTs). Only the ``kh`` rows holding taps are transformed along the width; the
    transform along the height is then a full complex FFT.

    Parameters
    ----------
    kernel : torch.Tensor
        ``(kh, kw)`` with ``kh ≤ H`` and ``kw ≤ W``.
    height, width : int
        ``H`` and ``W``.

    Returns
    -------
    torch.Tensor
        ``(H, W // 2 + 1)``, complex, in the kernel's precision (complex128 for float64).
    """
    kh, kw = kernel.shape
    if kh > height or kw > width:
        raise ValueError(f"a {kh}×{kw} kernel does not fit a {height}×{width} torus")
    ch, cw = kh // 2, kw // 2
    rows = torch.zeros((kh, width), dtype=kernel.dtype, device=kernel.device)
    rows[:, : kw - cw] = kernel[:, cw:]  # tap b sits at column (b - c_w) mod W
    if cw:
        rows[:, width - cw :] = kernel[:, :cw]
    half = torch.fft.rfft(rows, dim=1)  # (kh, W//2 + 1): only the rows that hold taps
    full = torch.zeros((height, width // 2 + 1), dtype=half.dtype, device=half.device)
    full[: kh - ch] = half[ch:]  # tap a sits at row (a - c_h) mod H
    if ch:
        full[height - ch :] = half[:ch]
    return torch.fft.fft(full, dim=0)


def circular_convolution(x: Tensor, kernel: Tensor) -> Tensor:
    r"""Direct circular convolution, by summing shifted copies (no FFT): the reference of ``conv2d``.

    .. math:: y_{ij} = \sum_{a,b} k_{ab}\, x_{(i - a + c_h) \bmod H,\, (j - b + c_w) \bmod W},

    computed as a correlation with the flipped kernel on a circularly padded image
    (``torch.nn.functional.conv2d``). Equal to ``scipy.ndimage.convolve(x, k, mode="wrap")``.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)``.
    kernel : torch.Tensor
        ``(kh, kw)``, ``kh ≤ H``, ``kw ≤ W``.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``.
    """
    kh, kw = kernel.shape
    c = x.shape[1]
    ch, cw = kh // 2, kw // 2
    w = torch.flip(kernel, dims=(0, 1)).to(device=x.device, dtype=x.dtype).expand(c, 1, kh, kw)
    # output (i, j) reads x at i - a + ch for a = 0..kh-1, i.e. the flipped kernel's tap
    # a' = kh-1-a at offset a' - (kh-1-ch): pad kh-1-ch above and ch below
    pads = (kw - 1 - cw, cw, kh - 1 - ch, ch)
    xp = torch.nn.functional.pad(x, pads, mode="circular") if any(pads) else x
    return torch.nn.functional.conv2d(xp, w, groups=c)


class Conv2d(opkit.SVDOperator):
    r"""Circular 2-D convolution ``y = k ⊛ x`` per channel, with the exact real Fourier SVD.

    See the module documentation for the convolution, the SVD and the spectral layout. Costs:
    building is one FFT of the kernel's footprint (float64) and elementwise work on the
    :math:`H \times (W/2+1)` half-spectrum; ``forward``, ``adjoint`` and ``pinv`` are one
    ``rfft2``, one complex multiplication and one ``irfft2`` (a plain FFT convolution);
    ``Vt``/``Ut`` are one ``rfft2`` plus a repacking and ``V``/``U`` a repacking plus one
    ``irfft2``.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)``; any sides, odd or even, at least the kernel's.
    **params
        See :class:`Conv2dParams`.

    Examples
    --------
    >>> import torch
    >>> op = Conv2d((3, 32, 24), kernel="motion", size=15, intensity=0.5, seed=3, threshold=0)
    >>> x = torch.rand(2, 3, 32, 24, dtype=torch.float64)
    >>> bool(torch.allclose(op(x), circular_convolution(x, op.kernel), atol=1e-12))
    True
    >>> bool(torch.allclose(op.V(op.Vt(x)), x, atol=1e-12))
    True
    """

    def __init__(self, shape: tuple[int, int, int], **params: Any) -> None:
        p = Conv2dParams(**params)
        shp = opkit.check_shape(shape)
        super().__init__(shp)
        self.params = p
        _, h, w = shp
        k = p.make_kernel()
        kh, kw = k.shape
        if kh > h or kw > w:
            raise ValueError(
                f"the {kh}×{kw} kernel does not fit images of {h}×{w}: conv2d needs kernel sides up to "
                f"the image's (pass a smaller size, or a larger image)"
            )
        self._kernel = k
        self._wi = (w - 1) // 2
        self._selfcols = [0, w // 2] if w % 2 == 0 else [0]
        K = transfer_function(k, h, w)  # complex128 (H, W//2+1)
        # the self-conjugate columns made exactly conjugate-symmetric along H (real on the
        # self-conjugate bins), so that every constant derived from K is too
        rev = (-torch.arange(h)) % h
        cols = K[:, self._selfcols]
        K[:, self._selfcols] = 0.5 * (cols + cols[rev].conj())
        re_im = torch.view_as_real(K)
        mag = torch.addcmul(re_im[..., 0].square(), re_im[..., 1], re_im[..., 1]).sqrt_()  # |K|
        tol = max(h, w) * torch.finfo(torch.float64).eps * float(mag.max())
        thr = float(p.threshold)
        keep = mag >= thr if thr > tol else mag > tol
        self._K = K
        self._masters: dict[str, Tensor] = {}
        self._spectra: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}
        self._mag = mag
        self._keep = keep
        r = np.arange(h)
        low = r <= h // 2
        sc = (r == 0) | ((h % 2 == 0) & (r == h // 2))
        q = 1 / _SQRT2
        # pack: value = Re·a + Im·b ; unpack: Re = d·u0 + d_rev·u1, Im = d·u2 + d_rev·u3
        self._pack_a = torch.from_numpy(np.where(sc, 1.0, np.where(low, _SQRT2, 0.0)))
        self._pack_b = torch.from_numpy(np.where(low, 0.0, _SQRT2))
        self._unpack_w = torch.from_numpy(
            np.stack(
                [
                    np.where(sc, 1.0, np.where(low, q, 0.0)),
                    np.where(low, 0.0, q),
                    np.where(low, 0.0, q),
                    np.where(low & ~sc, -q, 0.0),
                ]
            )
        )
        s = torch.where(keep, mag, torch.zeros_like(mag))
        self._s = self._pack_real(s).unsqueeze(0)  # (1, H, W)

    # -- properties -------------------------------------------------------------------------------
    @property
    def out_shape(self) -> tuple[int, ...]:
        """Same as :attr:`shape`."""
        return self.shape

    @property
    def kernel(self) -> Tensor:
        """The kernel, float64 ``(kh, kw)`` (a copy)."""
        return self._kernel.clone()

    @property
    def transfer(self) -> Tensor:
        r""":math:`K = \mathrm{rFFT2}(\tilde k)`, complex128 ``(H, W//2 + 1)``, unthresholded (a copy)."""
        return self._K.clone()

    @property
    def dropped(self) -> int:
        """Singular values set to zero per channel (0: ``H`` is the plain circular convolution)."""
        return int((self._s == 0).sum())

    @property
    def singulars(self) -> Tensor:
        """``|K_ω|`` (zero where dropped) in the spectral layout, ``(1, H, W)`` float64."""
        return self._s

    # -- spectra: complex128 masters built on first use, cast per device and dtype ---------------
    def _master(self, key: str) -> Tensor:
        hit = self._masters.get(key)
        if hit is not None:
            return hit
        K, keep = self._K, self._keep
        zero = torch.zeros((), dtype=K.dtype)
        if key == "K":
            hit = torch.where(keep, K, zero)
        elif key == "K_conj":
            hit = torch.where(keep, K.conj(), zero)
        elif key == "K_pinv":
            safe = torch.where(keep, self._mag, torch.ones_like(self._mag))
            hit = torch.where(keep, K.conj() / safe.square(), zero)
        elif key in ("phase", "phase_conj"):
            nonzero = self._mag > 0
            hit = torch.where(
                nonzero, K / torch.where(nonzero, self._mag, 1.0), torch.ones((), dtype=K.dtype)
            )
            hit = hit.conj() if key == "phase_conj" else hit
        else:  # pragma: no cover - internal keys only
            raise KeyError(key)
        hit = hit.resolve_conj()
        self._masters[key] = hit
        return hit

    def _spectrum(self, key: str, like: Tensor) -> Tensor:
        """The half-spectrum constant ``key``, complex in ``like``'s precision, on its device (cached)."""
        ctype = torch.complex128 if like.dtype == torch.float64 else torch.complex64
        k = (key, like.device, ctype)
        hit = self._spectra.get(k)
        if hit is None:
            hit = self._master(key).to(device=like.device, dtype=ctype)
            self._spectra[k] = hit
        return hit

    def _weights(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Packing weights ``a``, ``b`` ``(H, 1)`` and unpacking weights ``(4, H, 1)`` like ``like``."""
        a = self.cast("pack_a", self._pack_a, like)[:, None]
        b = self.cast("pack_b", self._pack_b, like)[:, None]
        u = self.cast("unpack", self._unpack_w, like)[:, :, None]
        return a, b, u

    # -- layout -------------------------------------------------------------------------------------
    def _pack_real(self, s: Tensor) -> Tensor:
        """Per-bin real values ``(H, W//2+1)`` (singular values) in the spectral layout ``(H, W)``."""
        _, h, w = self.shape
        wi = self._wi
        out = torch.empty((h, w), dtype=s.dtype, device=s.device)
        out[:, : 2 * wi].view(h, wi, 2).copy_(s[:, 1 : 1 + wi, None])  # a pair's two coordinates
        out[:, 2 * wi :] = s[:, self._selfcols]
        return out

    def _pack(self, Z: Tensor, like: Tensor) -> Tensor:
        """Half-spectrum ``(…, H, W//2+1)`` of a real image to its ``H·W`` real coordinates."""
        _, h, w = self.shape
        wi = self._wi
        out = torch.empty((*Z.shape[:-2], h, w), dtype=like.dtype, device=like.device)
        if wi:
            torch.mul(
                torch.view_as_real(Z[..., 1 : 1 + wi]), _SQRT2, out=out[..., : 2 * wi].unflatten(-1, (wi, 2))
            )
        a, b, _ = self._weights(like)
        cols = Z[..., self._selfcols]
        out[..., 2 * wi :] = cols.real * a + cols.imag * b
        return out

    def _unpack(self, v: Tensor) -> Tensor:
        """The inverse of :meth:`_pack`: ``H·W`` real coordinates to a conjugate-symmetric half-spectrum."""
        _, h, w = self.shape
        wi = self._wi
        ctype = torch.complex128 if v.dtype == torch.float64 else torch.complex64
        Z = torch.empty((*v.shape[:-2], h, w // 2 + 1), dtype=ctype, device=v.device)
        Zr = torch.view_as_real(Z)
        if wi:
            torch.mul(v[..., : 2 * wi].unflatten(-1, (wi, 2)), 1 / _SQRT2, out=Zr[..., 1 : 1 + wi, :])
        d = v[..., 2 * wi :]
        d_rev = torch.roll(d.flip(-2), 1, dims=-2)  # d_rev[r] = d[(H - r) mod H]
        _, _, u = self._weights(v)
        Zr[..., self._selfcols, 0] = d * u[0] + d_rev * u[1]
        Zr[..., self._selfcols, 1] = d * u[2] + d_rev * u[3]
        return Z

    # -- the SVD ------------------------------------------------------------------------------------
    def Vt(self, x: Tensor) -> Tensor:
        """``Vᵀ x``: the real Fourier coordinates of ``x`` (one ``rfft2``), shape ``(B, C, H, W)``."""
        return self._pack(torch.fft.rfft2(x, norm="ortho"), x)

    def V(self, v: Tensor) -> Tensor:
        """``V v``: the image with real Fourier coordinates ``v`` (one ``irfft2``)."""
        _, h, w = self.shape
        return torch.fft.irfft2(self._unpack(v), s=(h, w), norm="ortho")

    def Ut(self, y: Tensor) -> Tensor:
        """``Uᵀ y``: the real Fourier coordinates of ``y`` rotated back by the kernel's phases."""
        F = torch.fft.rfft2(y, norm="ortho")
        return self._pack(F.mul_(self._spectrum("phase_conj", y)), y)

    def U(self, v: Tensor) -> Tensor:
        """``U v``: the image of the coordinates ``v`` rotated by the kernel's phases."""
        _, h, w = self.shape
        Z = self._unpack(v).mul_(self._spectrum("phase", v))
        return torch.fft.irfft2(Z, s=(h, w), norm="ortho")

    # -- direct maps (one FFT convolution each) -------------------------------------------------------
    def _filter(self, x: Tensor, key: str) -> Tensor:
        _, h, w = self.shape
        F = torch.fft.rfft2(x)
        return torch.fft.irfft2(F.mul_(self._spectrum(key, x)), s=(h, w))

    def forward(self, x: Tensor) -> Tensor:
        """``H x``: the (thresholded) circular convolution, one FFT product."""
        return self._filter(x, "K")

    def adjoint(self, y: Tensor) -> Tensor:
        """``Hᵀ y``: the circular correlation with the kernel (conjugate transfer function)."""
        self.check_measurement(y)
        return self._filter(y, "K_conj")

    def pinv(self, y: Tensor) -> Tensor:
        r"""``H† y``: :math:`\overline{K_\omega}/|K_\omega|^2` on kept frequencies, zero elsewhere."""
        self.check_measurement(y)
        return self._filter(y, "K_pinv")


def _factory(
    *,
    shape: tuple[int, int, int],
    kernel: Any = "gaussian",
    size: int | None = None,
    sigma: float | None = None,
    sigma1: float | None = None,
    sigma2: float | None = None,
    angle: float | None = None,
    intensity: float | None = None,
    seed: int | None = None,
    radius: float | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> Conv2d:
    """Circular 2-D convolution with any kernel (gaussian, motion, uniform, disk, an array or a file)."""
    return Conv2d(
        shape,
        kernel=kernel,
        size=size,
        sigma=sigma,
        sigma1=sigma1,
        sigma2=sigma2,
        angle=angle,
        intensity=intensity,
        seed=seed,
        radius=radius,
        threshold=threshold,
    )


@st.composite
def _kwargs(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(shapes(max_side=16))
    _, h, w = shape
    side = min(h, w)
    kind = draw(st.sampled_from(["explicit", "gaussian", "anisotropic", "motion", "uniform", "disk"]))
    kw: dict[str, Any] = {"shape": shape, "threshold": draw(st.floats(1e-2, 0.2))}
    if kind == "explicit":
        kh, kwid = draw(st.integers(1, min(h, 5))), draw(st.integers(1, min(w, 5)))
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        k = torch.rand((kh, kwid), generator=g, dtype=torch.float64) + 0.05
        if draw(st.booleans()):  # any real kernel: signed taps too
            k = k - 0.5
        kw["kernel"] = k if draw(st.booleans()) else k.numpy()
    elif kind == "gaussian":
        kw.update(kernel="gaussian", sigma=draw(st.floats(0.3, 3.0)), size=draw(st.integers(1, side)))
    elif kind == "anisotropic":
        kw.update(
            kernel="gaussian",
            sigma1=draw(st.floats(0.3, 4.0)),
            sigma2=draw(st.floats(0.3, 4.0)),
            angle=draw(st.floats(-180.0, 180.0)),
            size=draw(st.integers(1, side)),
        )
    elif kind == "motion":
        kw.update(
            kernel="motion",
            size=draw(st.integers(1, min(side, 9))),
            intensity=draw(st.floats(0.0, 1.0)),
            seed=draw(st.integers(0, 2**31 - 1)),
        )
    elif kind == "uniform":
        kw.update(kernel="uniform", size=draw(st.integers(1, side)))
    else:
        radius = draw(st.floats(0.3, 4.0))
        kw.update(kernel="disk", radius=radius, size=min(side, 2 * max(0, math.ceil(radius - 0.5)) + 1))
    return kw


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    """Register ``conv2d``."""
    registry.add_operator("conv2d", _factory, strategy=_kwargs())
