r"""Task-adapted forward SDEs of DriftRec (Welker, Chapman and Gerkmann).

Every SDE of the family drifts the clean image :math:`x_0` toward the corrupted image :math:`y`
while adding variance-exploding noise:

.. math::

    \mathrm{d}x = \gamma F(t)\,(y - x)\,\mathrm{d}t + g(t)\,\mathrm{d}w, \qquad
    g(t) = \nu\,\sigma_{\min}\Big(\frac{\sigma_{\max}}{\sigma_{\min}}\Big)^{t},
    \qquad t \in [t_\varepsilon, 1].

The drift is affine in :math:`x`, so the perturbation kernel is Gaussian,
:math:`p_{0t}(x_t \mid x_0, y) = \mathcal N(\mu_t, \sigma_t^2 I)`, with

.. math::

    \mu_t = e^{-\Phi(t)} x_0 + \big(1 - e^{-\Phi(t)}\big) y, \qquad
    \Phi(t) = \gamma \int_0^t F(s)\,\mathrm{d}s,

and the variance :math:`V(t) = \sigma_t^2` solving :math:`V' = -2\gamma F(t) V + g(t)^2`,
:math:`V(0) = 0`:

.. math::

    V(t) = \nu^2 \sigma_{\min}^2 \, e^{-2\Phi(t)} \int_0^t e^{2\Phi(s) + 2 L s}\,\mathrm{d}s,
    \qquad L = \ln(\sigma_{\max}/\sigma_{\min}).

Three members (paper eqs. 4--6):

* :class:`OUVE`: :math:`F = 1`, :math:`\nu = \sqrt{2(\gamma + L)}`,
  :math:`\sigma_t^2 = \sigma_{\min}^2 [(\sigma_{\max}/\sigma_{\min})^{2t} - e^{-2\gamma t}]`.
* :class:`TSDVE`: :math:`F = t`, closed form through the Dawson function; :math:`\nu` makes
  :math:`\sigma_1 = \sigma_{\max}` exactly.
* :class:`CosVE`: :math:`F = 1 - \cos \pi t`, variance by Gauss--Legendre quadrature on a grid of
  at least 1000 nodes and a cubic spline, computed once; :math:`\nu` makes :math:`\sigma_1 = \sigma_{\max}`.

A new member only needs :meth:`DriftSDE.F` (and optionally closed forms of :meth:`DriftSDE.Phi`
and :meth:`DriftSDE.unit_variance`); the base class supplies everything else numerically.

All methods take ``t`` either as a Python float or as a float tensor of shape ``(B,)`` and follow
the device and dtype of their tensor inputs. Coefficients are evaluated in float64.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar, overload

import attrs
import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.special import dawsn
from torch import Tensor

from opkit.operators import per_sample
from solvers.common import randn

__all__ = ["MAX_NODES", "OUVE", "SDE_NAMES", "TSDVE", "CosVE", "DriftSDE", "SDEParams", "get_sde"]

Time = float | Tensor


def _check_gamma(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise ValueError(f"{attribute.name} must be a positive finite number, got {value!r}")


def _check_sigmas(inst: SDEParams, attribute: attrs.Attribute[Any], value: Any) -> None:
    _check_gamma(inst, attribute, value)
    if attribute.name == "sigma_max" and not value > inst.sigma_min:
        raise ValueError(f"sigma_max must be larger than sigma_min={inst.sigma_min}, got {value!r}")


def _check_t_eps(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 <= value < 1):
        raise ValueError(f"{attribute.name} must be a number in [0, 1), got {value!r}")


#: The most grid nodes a numerical variance table may have (a million nodes already resolve the
#: variance far below float32 rounding; a model file asking for more is refused, not allocated).
MAX_NODES = 1_000_000


def _check_nodes(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= MAX_NODES:
        raise ValueError(f"{attribute.name} must be an integer in 16..{MAX_NODES}, got {value!r}")


@attrs.frozen
class SDEParams:
    """Validated parameters shared by every DriftRec SDE.

    Attributes
    ----------
    gamma : float
        Stiffness :math:`\\gamma > 0` of the drift toward ``y``.
    sigma_min, sigma_max : float
        Noise scales, ``0 < sigma_min < sigma_max``.
    t_eps : float
        Smallest process time :math:`t_\\varepsilon \\in [0, 1)` used by training and sampling.
    nodes : int
        Number of grid nodes of the numerical variance table (used only by SDEs without a closed
        form, e.g. :class:`CosVE`), from 16 to :data:`MAX_NODES`.
    """

    gamma: float = attrs.field(validator=_check_gamma, converter=float)
    sigma_min: float = attrs.field(validator=_check_gamma, converter=float)
    sigma_max: float = attrs.field(validator=_check_sigmas, converter=float)
    t_eps: float = attrs.field(validator=_check_t_eps, converter=float)
    nodes: int = attrs.field(default=1000, validator=_check_nodes)


def _convert_number(name: str, value: Any) -> Any:
    """Keep non-numbers as they are so the attrs validator reports them by name."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _np_time(t: Time) -> np.ndarray:
    if isinstance(t, Tensor):
        return t.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


def _like_time(values: np.ndarray, t: Time) -> Time:
    """Return ``values`` shaped like ``t``: a tensor on ``t``'s device and dtype, or a float."""
    if isinstance(t, Tensor):
        dtype = t.dtype if t.is_floating_point() else torch.float64
        return torch.as_tensor(values, dtype=torch.float64).to(device=t.device, dtype=dtype)
    return float(values)


class DriftSDE(abc.ABC):
    r"""Base class of the family :math:`\mathrm{d}x = \gamma F(t)(y - x)\mathrm{d}t + g(t)\mathrm{d}w`.

    A subclass implements :meth:`F`. It may override :meth:`Phi` (:math:`\gamma\int_0^t F`) and
    :meth:`unit_variance` (the variance for :math:`\nu = 1`) with closed forms, and
    :meth:`_default_nu` with a normalisation of its own; the defaults compute both by quadrature on
    ``nodes`` equidistant grid nodes over :math:`[0, 1]` (8-point Gauss--Legendre per interval,
    accumulated) and interpolate with a cubic spline, once, at construction.

    By default :math:`\nu` is chosen so that :math:`\sigma_1 = \sigma_{\max}` exactly.

    Parameters
    ----------
    gamma : float
        Stiffness :math:`\gamma > 0`.
    sigma_min, sigma_max : float
        Noise scales, ``0 < sigma_min < sigma_max``.
    t_eps : float
        Smallest process time, in ``[0, 1)``.
    nodes : int
        Grid nodes of the numerical tables (at least 1000 is recommended; default 1000).

    Notes
    -----
    Every method of time takes ``t`` as a float or as a tensor of process times of shape
    ``(B,)`` in ``[0, 1]``, and returns the same kind: a float, or a tensor on ``t``'s device
    and dtype. Images (``x0``, ``x``, ``y``) are ``(B, C, H, W)`` tensors, and per-sample
    coefficients broadcast over them.
    """

    #: Registered short name (``"ouve"``, ``"tsdve"``, ``"cosve"``; empty for user subclasses).
    name: ClassVar[str] = ""
    #: Default stiffness of the subclass (paper settings).
    default_gamma: ClassVar[float] = 1.0

    def __init__(
        self,
        gamma: float | None = None,
        sigma_min: float = 0.01,
        sigma_max: float = 1.0,
        t_eps: float = 0.03,
        *,
        nodes: int = 1000,
    ) -> None:
        gamma = self.default_gamma if gamma is None else gamma
        self.params = SDEParams(
            gamma=_convert_number("gamma", gamma),
            sigma_min=_convert_number("sigma_min", sigma_min),
            sigma_max=_convert_number("sigma_max", sigma_max),
            t_eps=_convert_number("t_eps", t_eps),
            nodes=nodes,
        )
        self._tables: dict[str, CubicSpline] = {}
        self._nu = 1.0
        self._nu = float(self._default_nu())

    # -- parameters --------------------------------------------------------------------------
    @property
    def gamma(self) -> float:
        """Stiffness :math:`\\gamma`."""
        return self.params.gamma

    @property
    def sigma_min(self) -> float:
        """Smallest noise scale :math:`\\sigma_{\\min}`."""
        return self.params.sigma_min

    @property
    def sigma_max(self) -> float:
        """Largest noise scale :math:`\\sigma_{\\max}`."""
        return self.params.sigma_max

    @property
    def t_eps(self) -> float:
        """Smallest process time :math:`t_\\varepsilon`."""
        return self.params.t_eps

    @property
    def log_ratio(self) -> float:
        """:math:`L = \\ln(\\sigma_{\\max}/\\sigma_{\\min})`."""
        return math.log(self.sigma_max / self.sigma_min)

    @property
    def nu(self) -> float:
        """Normalisation :math:`\\nu` of the diffusion coefficient."""
        return self._nu

    def config(self) -> dict[str, Any]:
        """Parameters as a JSON-serialisable dict (``name`` included), for saving with a model.

        Returns
        -------
        dict
            ``{"name", "gamma", "sigma_min", "sigma_max", "t_eps", "nodes"}``.
        """
        return {"name": self.name, **attrs.asdict(self.params)}

    def __repr__(self) -> str:
        p = self.params
        return (
            f"{type(self).__name__}(gamma={p.gamma:g}, sigma_min={p.sigma_min:g}, "
            f"sigma_max={p.sigma_max:g}, t_eps={p.t_eps:g})"
        )

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.params == self.params  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.params))

    # -- the shape of the drift ----------------------------------------------------------------
    @abc.abstractmethod
    def F(self, t: np.ndarray) -> np.ndarray:
        """Drift shape :math:`F(t)` on a float64 array (elementwise)."""

    def Phi(self, t: np.ndarray) -> np.ndarray:
        """:math:`\\Phi(t) = \\gamma \\int_0^t F(s)\\,\\mathrm{d}s` on a float64 array.

        The default integrates :meth:`F` numerically (cumulative quadrature + cubic spline).
        """
        return np.asarray(self._table("phi")(np.asarray(t, dtype=np.float64)))

    def unit_variance(self, t: np.ndarray) -> np.ndarray:
        """Variance :math:`V(t)` for :math:`\\nu = 1` on a float64 array.

        The default evaluates
        :math:`\\sigma_{\\min}^2 e^{-2\\Phi(t)} \\int_0^t e^{2\\Phi(s) + 2Ls} ds`, the integral by
        cumulative Gauss--Legendre quadrature on the node grid; the spline interpolates the smooth
        factor :math:`e^{-2Lt}\\int_0^t \\cdots`, so relative errors stay near machine precision.
        """
        t = np.asarray(t, dtype=np.float64)
        two_l = 2.0 * self.log_ratio
        inner = self._table("var")(t)
        return np.asarray(self.sigma_min**2 * np.exp(two_l * t - 2.0 * self.Phi(t)) * inner)

    def _default_nu(self) -> float:
        return self.sigma_max / math.sqrt(float(self.unit_variance(np.array(1.0))))

    def _table(self, kind: str) -> CubicSpline:
        spline = self._tables.get(kind)
        if spline is None:
            self._build_tables()
            spline = self._tables[kind]
        return spline

    def _build_tables(self) -> None:
        n = self.params.nodes
        grid = np.linspace(0.0, 1.0, n)
        xg, wg = np.polynomial.legendre.leggauss(8)
        a, b = grid[:-1, None], grid[1:, None]
        s = 0.5 * (b - a) * xg[None, :] + 0.5 * (a + b)  # (n-1, 8) nodes per interval
        w = 0.5 * (b - a) * wg[None, :]
        phi = self.gamma * np.concatenate([[0.0], np.cumsum((w * self.F(s)).sum(1))])
        self._tables["phi"] = CubicSpline(grid, phi)
        two_l = 2.0 * self.log_ratio
        # integral of exp(2 Phi(s) + 2 L s), accumulated interval by interval and rescaled by
        # exp(-2 L t_k) at each node for a smooth, bounded spline target
        phi_s = self.Phi(s)
        seg = (w * np.exp(2.0 * phi_s + two_l * (s - b))).sum(1)  # integral scaled by exp(-2 L b)
        vals = np.zeros(n)
        decay = np.exp(-two_l * np.diff(grid))
        for k in range(n - 1):  # n scalar recurrences, once per SDE (not a hot path)
            vals[k + 1] = vals[k] * decay[k] + seg[k]
        self._tables["var"] = CubicSpline(grid, vals)

    # -- public coefficients --------------------------------------------------------------------
    @overload
    def mean_weight(self, t: float) -> float: ...
    @overload
    def mean_weight(self, t: Tensor) -> Tensor: ...
    def mean_weight(self, t: Time) -> Time:
        """Weight :math:`e^{-\\Phi(t)}` of ``x0`` in the mean :math:`\\mu_t`."""
        return _like_time(np.exp(-self.Phi(_np_time(t))), t)

    @overload
    def std(self, t: float) -> float: ...
    @overload
    def std(self, t: Tensor) -> Tensor: ...
    def std(self, t: Time) -> Time:
        """Standard deviation :math:`\\sigma_t = \\sqrt{V(t)}` of the perturbation kernel."""
        return _like_time(np.sqrt(np.maximum(self.variance_np(_np_time(t)), 0.0)), t)

    def variance_np(self, t: np.ndarray) -> np.ndarray:
        """:math:`V(t) = \\nu^2 \\times` :meth:`unit_variance` on a float64 array.

        Parameters
        ----------
        t : numpy.ndarray
            Process times.

        Returns
        -------
        numpy.ndarray
            The variances, float64.
        """
        return self._nu**2 * self.unit_variance(np.asarray(t, dtype=np.float64))

    @overload
    def diffusion(self, t: float) -> float: ...
    @overload
    def diffusion(self, t: Tensor) -> Tensor: ...
    def diffusion(self, t: Time) -> Time:
        """Diffusion coefficient :math:`g(t) = \\nu\\sigma_{\\min}(\\sigma_{\\max}/\\sigma_{\\min})^t`."""
        tn = _np_time(t)
        return _like_time(self._nu * self.sigma_min * np.exp(self.log_ratio * tn), t)

    def drift_rate(self, t: Time) -> Time:
        """Rate :math:`\\gamma F(t)` of the drift, so that ``drift = rate * (y - x)``."""
        return _like_time(self.gamma * self.F(_np_time(t)), t)

    def mean(self, x0: Tensor, y: Tensor, t: Time) -> Tensor:
        """Mean :math:`\\mu_t = e^{-\\Phi(t)} x_0 + (1 - e^{-\\Phi(t)}) y` of the perturbation kernel."""
        w = per_sample(self.mean_weight(t), x0)
        return y + w * (x0 - y)

    def drift(self, x: Tensor, y: Tensor, t: Time) -> Tensor:
        """Forward drift :math:`f(x, y, t) = \\gamma F(t)(y - x)`."""
        return per_sample(self.drift_rate(t), x) * (y - x)

    def marginal_sample(
        self, x0: Tensor, y: Tensor, t: Time, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw :math:`x_t = \\mu_t + \\sigma_t z` from the perturbation kernel.

        Parameters
        ----------
        x0, y : torch.Tensor
            Clean and corrupted images ``(B, C, H, W)``.
        t : float or torch.Tensor
            Process time(s).
        generator : torch.Generator, optional
            Source of the noise ``z``.

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            ``x_t`` and the standard normal ``z`` used.
        """
        z = randn(x0.shape, x0, generator)
        return self.mean(x0, y, t) + per_sample(self.std(t), x0) * z, z

    def prior_sample(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Start of the reverse process: :math:`x_1 = y + \\sigma_1 z`, :math:`z \\sim \\mathcal N(0, I)`.

        Parameters
        ----------
        y : torch.Tensor
            Corrupted images ``(B, C, H, W)``.
        generator : torch.Generator, optional
            Source of ``z`` (on ``y``'s device).

        Returns
        -------
        torch.Tensor
            The prior sample, like ``y``.
        """
        z = randn(y.shape, y, generator)
        return y + self.std(1.0) * z


class OUVE(DriftSDE):
    r"""Ornstein--Uhlenbeck variance-exploding SDE, :math:`F(t) = 1` (paper eq. 4).

    Closed forms: :math:`\Phi = \gamma t`, :math:`\nu = \sqrt{2(\gamma + L)}` and

    .. math:: \sigma_t^2 = \sigma_{\min}^2\big[(\sigma_{\max}/\sigma_{\min})^{2t} - e^{-2\gamma t}\big],

    so :math:`\sigma_1` is :math:`\sigma_{\max}` up to :math:`\sigma_{\min}^2 e^{-2\gamma}`.

    Parameters
    ----------
    gamma : float
        Stiffness (paper: 1).
    sigma_min, sigma_max : float
        Noise scales (paper: 0.01, 1).
    t_eps : float
        Smallest process time (paper: 0.03).
    nodes : int
        Unused (no table is needed); kept for a uniform signature.
    """

    name = "ouve"
    default_gamma = 1.0

    def F(self, t: np.ndarray) -> np.ndarray:
        """:math:`F(t) = 1`."""
        return np.ones_like(np.asarray(t, dtype=np.float64))

    def Phi(self, t: np.ndarray) -> np.ndarray:
        """:math:`\\Phi(t) = \\gamma t`."""
        return self.gamma * np.asarray(t, dtype=np.float64)

    def unit_variance(self, t: np.ndarray) -> np.ndarray:
        """:math:`\\sigma_{\\min}^2 [e^{2Lt} - e^{-2\\gamma t}] / (2(\\gamma + L))`."""
        t = np.asarray(t, dtype=np.float64)
        g, lr = self.gamma, self.log_ratio
        # e^{2Lt} - e^{-2 g t} = e^{2Lt} (1 - e^{-2 (g + L) t}), computed without cancellation
        return self.sigma_min**2 * np.exp(2 * lr * t) * -np.expm1(-2 * (g + lr) * t) / (2 * (g + lr))

    def _default_nu(self) -> float:
        return math.sqrt(2.0 * (self.gamma + self.log_ratio))


class TSDVE(DriftSDE):
    r""":math:`t`-squared decay variance-exploding SDE, :math:`F(t) = t` (paper eq. 5).

    :math:`\Phi = \gamma t^2/2`. With :math:`a = L/\sqrt\gamma` and the Dawson function
    :math:`D(x) = e^{-x^2}\int_0^x e^{u^2}\mathrm{d}u`, completing the square in the variance
    integral gives

    .. math::

        \sigma_t^2 = \frac{\nu^2\sigma_{\min}^2}{\sqrt\gamma}
        \Big[e^{2Lt} D\big(\sqrt\gamma\, t + a\big) - e^{-\gamma t^2} D(a)\Big],

    and :math:`\nu` is set so that :math:`\sigma_1 = \sigma_{\max}`.

    Parameters
    ----------
    gamma : float
        Stiffness (paper: 2, so that the terminal mean matches OUVE with :math:`\gamma = 1`).
    sigma_min, sigma_max : float
        Noise scales (paper: 0.01, 1).
    t_eps : float
        Smallest process time (paper: 0.03).
    nodes : int
        Unused (closed form); kept for a uniform signature.
    """

    name = "tsdve"
    default_gamma = 2.0

    def F(self, t: np.ndarray) -> np.ndarray:
        """:math:`F(t) = t`."""
        return np.asarray(t, dtype=np.float64)

    def Phi(self, t: np.ndarray) -> np.ndarray:
        """:math:`\\Phi(t) = \\gamma t^2 / 2`."""
        t = np.asarray(t, dtype=np.float64)
        return np.asarray(0.5 * self.gamma * t * t)

    def unit_variance(self, t: np.ndarray) -> np.ndarray:
        """Closed form through :func:`scipy.special.dawsn` (see the class docstring)."""
        t = np.asarray(t, dtype=np.float64)
        sg, lr = math.sqrt(self.gamma), self.log_ratio
        a = lr / sg
        bracket = np.exp(2 * lr * t) * dawsn(sg * t + a) - np.exp(-self.gamma * t * t) * dawsn(a)
        return np.asarray(self.sigma_min**2 * bracket / sg)


class CosVE(DriftSDE):
    r"""Cosine-drift variance-exploding SDE, :math:`F(t) = 1 - \cos \pi t` (paper eq. 6).

    :math:`\Phi = \gamma(t - \sin(\pi t)/\pi)` in closed form; the variance has none and is tabulated
    once by quadrature on ``nodes`` (:math:`\ge 1000` recommended) grid nodes with a cubic spline
    (see :meth:`DriftSDE.unit_variance`). :math:`\nu` makes :math:`\sigma_1 = \sigma_{\max}`.

    Parameters
    ----------
    gamma : float
        Stiffness (paper: 1).
    sigma_min, sigma_max : float
        Noise scales (paper: 0.01, 1).
    t_eps : float
        Smallest process time (paper: 0.03).
    nodes : int
        Grid nodes of the variance table (default 1000).
    """

    name = "cosve"
    default_gamma = 1.0

    def F(self, t: np.ndarray) -> np.ndarray:
        """:math:`F(t) = 1 - \\cos \\pi t`."""
        return 1.0 - np.cos(np.pi * np.asarray(t, dtype=np.float64))

    def Phi(self, t: np.ndarray) -> np.ndarray:
        """:math:`\\Phi(t) = \\gamma (t - \\sin(\\pi t)/\\pi)`."""
        t = np.asarray(t, dtype=np.float64)
        return self.gamma * (t - np.sin(np.pi * t) / np.pi)


#: Names accepted by :func:`get_sde` and by ``solvers.driftrec(sde=...)``.
SDE_NAMES: dict[str, type[DriftSDE]] = {"ouve": OUVE, "tsdve": TSDVE, "cosve": CosVE}


def get_sde(sde: str | DriftSDE | dict[str, Any], **params: Any) -> DriftSDE:
    """Resolve an SDE given by name, config dict or object.

    Parameters
    ----------
    sde : str, dict or DriftSDE
        ``"ouve"``, ``"tsdve"`` or ``"cosve"`` (case-insensitive); a dict as returned by
        :meth:`DriftSDE.config`; or an SDE object, returned as is.
    **params
        Keyword parameters for the constructor when ``sde`` is a name.

    Returns
    -------
    DriftSDE
        The SDE.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if isinstance(sde, DriftSDE):
        if params:
            raise ValueError("parameters can only be given with an SDE name, not with an SDE object")
        return sde
    if isinstance(sde, dict):
        cfg = dict(sde)
        name = cfg.pop("name", None)
        return get_sde(str(name), **{**cfg, **params})
    if not isinstance(sde, str) or sde.lower() not in SDE_NAMES:
        raise ValueError(f"sde must be one of {sorted(SDE_NAMES)} or a DriftSDE object, got {sde!r}")
    return SDE_NAMES[sde.lower()](**params)
