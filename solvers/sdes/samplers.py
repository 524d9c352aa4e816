r"""Reverse-time samplers for DriftRec, as plain functions.

Every sampler integrates the reverse of the forward SDE
:math:`\mathrm{d}x = f(x, y, t)\,\mathrm{d}t + g(t)\,\mathrm{d}w` from :math:`t = 1` down to
:math:`t_\varepsilon`, with a score model :math:`s(x, y, t) \approx \nabla\log p_t(x \mid y)`:

* reverse SDE (Anderson): :math:`\mathrm{d}x = [f - g^2 s]\,\mathrm{d}t + g\,\mathrm{d}\bar w`;
* probability-flow ODE (Song et al.): :math:`\mathrm{d}x/\mathrm{d}t = f - \tfrac12 g^2 s`.

Signature shared by the samplers: ``sampler(score, sde, y, x, ...)`` where ``score(x, y, t)``
takes ``t`` as a tensor ``(B,)`` of ``x``'s dtype, ``sde`` is the forward
:class:`~solvers.sdes.DriftSDE`, ``y`` the corrupted images ``(B, C, H, W)``, ``x`` the
initial state at :math:`t = 1` (normally :meth:`~solvers.sdes.DriftSDE.prior_sample`),
and the return value is ``(x_final, SamplerInfo)``. ``callback(i, t, x)`` is called after every
step with the step index, the time reached and the state.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from opkit.params import check_positive_int
from solvers.common import randn
from solvers.common.finite import FiniteWatch
from solvers.sdes.forward import DriftSDE

__all__ = [
    "SAMPLERS",
    "SamplerInfo",
    "check_grid_power",
    "check_stable_grid",
    "euler_heun",
    "euler_maruyama",
    "probability_flow",
    "stiffest_step",
    "time_grid",
]

ScoreFn = Callable[[Tensor, Tensor, Tensor], Tensor]
Callback = Callable[[int, float, Tensor], None]


@dataclass
class SamplerInfo:
    """What a sampler did.

    Attributes
    ----------
    nfe : int
        Number of score-network evaluations (each on the whole batch).
    steps : int
        Accepted steps.
    rejected : int
        Rejected steps (adaptive ODE sampler only).
    """

    nfe: int = 0
    steps: int = 0
    rejected: int = 0


def check_grid_power(power: float) -> float:
    """``power`` as a float when it is a number in ``(0, 4]`` (:func:`time_grid`), else ``ValueError``."""
    if not (isinstance(power, int | float) and not isinstance(power, bool) and 0 < power <= 4):
        raise ValueError(f"grid_power must be a number in (0, 4], got {power!r}")
    return float(power)


def time_grid(sde: DriftSDE, steps: int, power: float = 1.0) -> list[float]:
    r"""The ``steps + 1`` times of the fixed-step samplers, from 1 down to :math:`t_\varepsilon`.

    .. math:: t_i = t_\varepsilon + (1 - t_\varepsilon)\,(1 - i/N)^p, \qquad i = 0, \dots, N.

    ``power`` :math:`p = 1` is the uniform grid (the paper's); :math:`p < 1` puts more of the
    steps near :math:`t = 1`, where the reverse process moves farthest from its start
    :math:`y + \sigma_1 z`, and fewer near :math:`t_\varepsilon`.

    Parameters
    ----------
    sde : DriftSDE
        Gives :math:`t_\varepsilon`.
    steps : int
        Number of steps :math:`N`.
    power : float
        The exponent :math:`p`, in ``(0, 4]``.

    Returns
    -------
    list of float
        :math:`t_0 = 1 > t_1 > \dots > t_N = t_\varepsilon`.
    """
    steps = check_positive_int("steps", steps)
    power = check_grid_power(power)
    if power == 1:  # the uniform grid, written as it always was (bit for bit)
        return [1.0 + (sde.t_eps - 1.0) * i / steps for i in range(steps + 1)]
    return [sde.t_eps + (1.0 - sde.t_eps) * (1.0 - i / steps) ** power for i in range(steps + 1)]


def stiffest_step(sde: DriftSDE, grid: list[float]) -> tuple[float, float, float]:
    r"""The grid's least stable step for the fixed-step samplers: ``(h λ, t_i, t_{i+1})``.

    On data concentrated at one image (the sharpest posterior; a trained score comes close at
    high :math:`t`, where :math:`\sigma_t` dwarfs the correction :math:`x_0 - y`), one reverse
    step multiplies the error by :math:`1 - h\lambda(t)` with
    :math:`\lambda = g(t)^2/\sigma_t^2 - \gamma F(t)`. Euler--Maruyama and Euler--Heun are
    stable for :math:`h\lambda < 2`; beyond it a step amplifies the noise it should remove.
    Uniform OUVE grids reach 2 below 6 steps; :func:`time_grid` with ``power`` 0.5 below 31.

    Parameters
    ----------
    sde : DriftSDE
        The forward SDE.
    grid : list of float
        Decreasing times, e.g. from :func:`time_grid`.

    Returns
    -------
    (float, float, float)
        The largest :math:`h\lambda(t_i)` and the step's two ends.
    """
    return max(
        ((t0 - t1) * (sde.diffusion(t0) ** 2 / sde.std(t0) ** 2 - sde.drift_rate(t0)), t0, t1)
        for t0, t1 in itertools.pairwise(grid)
    )


def check_stable_grid(sde: DriftSDE, steps: int, power: float) -> None:
    """Refuse a powered grid (``power != 1``) whose stiffest step is unstable (:func:`stiffest_step`).

    The uniform grid is never refused: it keeps the behaviour it always had at any step count.

    Parameters
    ----------
    sde : DriftSDE
        The forward SDE.
    steps : int
        Number of steps.
    power : float
        The exponent of :func:`time_grid`.

    Raises
    ------
    ValueError
        Naming the unstable step and the fewest steps that make the grid stable.
    """
    if check_grid_power(power) == 1:
        return

    def stiff(n: int) -> tuple[float, float, float]:
        return stiffest_step(sde, time_grid(sde, n, power))

    worst, t0, t1 = stiff(steps)
    if worst < 2:
        return
    lo, hi = steps, 2 * steps  # stiff(lo) >= 2; find the first stable count by doubling, then halving
    while stiff(hi)[0] >= 2 and hi < 1_000_000:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if stiff(mid)[0] >= 2 else (lo, mid)
    raise ValueError(
        f"grid_power={power:g} with {steps} steps: the step from t = {t0:.3f} to {t1:.3f} is unstable "
        f"(h·λ = {worst:.2f} >= 2) and would amplify the noise; use at least {hi} steps, or grid_power=1"
    )


def _fixed_steps(
    score: ScoreFn, sde: DriftSDE, y: Tensor, steps: int, power: float
) -> tuple[int, _Counted, list[float]]:
    """The checked step count, the counted score and the time grid from 1 to ``t_eps``."""
    grid = time_grid(sde, steps, power)
    check_stable_grid(sde, steps, power)
    return len(grid) - 1, _Counted(score, y), grid


class _Counted:
    """Wrap the score so every call is counted, receives a ``(B,)`` time tensor and is checked.

    A score with NaN or infinity raises ``ValueError`` naming the evaluation and its time
    (at once on the CPU; at the end, through :meth:`check`, on an accelerator).
    """

    def __init__(self, score: ScoreFn, y: Tensor) -> None:
        self.score, self.y, self.nfe = score, y, 0
        self._times: list[float] = []
        self.watch = FiniteWatch(
            "the score model", lambda n: f"evaluation {n + 1} (t = {self._times[n]:.4f})"
        )

    def __call__(self, x: Tensor, t: float) -> Tensor:
        self.nfe += 1
        self._times.append(t)
        tt = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
        out = self.score(x, self.y, tt)
        self.watch.update(self.nfe - 1, out)
        return out

    def check(self) -> None:
        """Raise if some evaluation was not finite (see :class:`solvers.common.finite.FiniteWatch`)."""
        self.watch.check()


def euler_maruyama(
    score: ScoreFn,
    sde: DriftSDE,
    y: Tensor,
    x: Tensor,
    *,
    steps: int = 100,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    grid_power: float = 1.0,
) -> tuple[Tensor, SamplerInfo]:
    r"""Euler--Maruyama on the reverse SDE, ``steps`` steps from 1 to :math:`t_\varepsilon`.

    On the times :math:`t_i` of :func:`time_grid` (uniform by default), with
    :math:`h_i = t_i - t_{i+1}`:

    .. math::

        x_{i+1} = x_i - h_i\,\big[f(x_i, y, t_i) - g(t_i)^2 s(x_i, y, t_i)\big]
                  + g(t_i)\sqrt{h_i}\, z_i,

    except that the last step omits the noise (it returns the noise-free mean at
    :math:`t_\varepsilon`). One score evaluation per step.

    Parameters
    ----------
    score, sde, y, x
        As every sampler takes them (see the module).
    steps : int
        Number of steps :math:`N` (= NFE).
    generator : torch.Generator, optional
        Source of the noise.
    callback : callable, optional
        As every sampler takes it; it returns ``(x, SamplerInfo)`` as every sampler does.
    grid_power : float
        The exponent :math:`p` of :func:`time_grid` (1: uniform steps).
    """
    steps, f, ts = _fixed_steps(score, sde, y, steps, grid_power)
    for i in range(steps):
        t, h = ts[i], ts[i] - ts[i + 1]
        g = sde.diffusion(t)
        rev = sde.drift(x, y, t) - (g * g) * f(x, t)
        x = x - h * rev
        if i < steps - 1:
            x = x + (g * h**0.5) * randn(x.shape, x, generator)
        if callback is not None:
            callback(i, ts[i + 1], x)
    f.check()
    return x, SamplerInfo(nfe=f.nfe, steps=steps)


def euler_heun(
    score: ScoreFn,
    sde: DriftSDE,
    y: Tensor,
    x: Tensor,
    *,
    steps: int = 100,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    grid_power: float = 1.0,
) -> tuple[Tensor, SamplerInfo]:
    r"""Improved Euler (Heun) for SDEs after A. J. Roberts (2012), two score evaluations per step.

    With the reverse drift :math:`a(x, t) = -[f(x, y, t) - g(t)^2 s(x, y, t)]`,
    :math:`\Delta W = \sqrt h\, z` and a random sign :math:`S = \pm 1`:

    .. math::

        K_1 &= h\,a(x_i, t_i) + g(t_i)\,(\Delta W - S\sqrt h), \\
        K_2 &= h\,a(x_i + K_1, t_{i+1}) + g(t_{i+1})\,(\Delta W + S\sqrt h), \\
        x_{i+1} &= x_i + \tfrac12 (K_1 + K_2).

    The last step is noise-free (:math:`\Delta W = S = 0`, the deterministic Heun step), so the
    output is the mean at :math:`t_\varepsilon`.

    Parameters
    ----------
    score, sde, y, x
        As every sampler takes them (see the module).
    steps : int
        Number of steps (NFE is twice this).
    generator : torch.Generator, optional
        Source of the noise and the signs.
    callback : callable, optional
        As every sampler takes it; it returns ``(x, SamplerInfo)`` as every sampler does.
    grid_power : float
        The exponent :math:`p` of :func:`time_grid` (1: uniform steps).
    """
    steps, f, ts = _fixed_steps(score, sde, y, steps, grid_power)

    def a(xx: Tensor, t: float) -> Tensor:
        g = sde.diffusion(t)
        return (g * g) * f(xx, t) - sde.drift(xx, y, t)

    for i in range(steps):
        t0, t1 = ts[i], ts[i + 1]
        h = t0 - t1
        g0, g1 = sde.diffusion(t0), sde.diffusion(t1)
        if i < steps - 1:
            sh = h**0.5
            dw = sh * randn(x.shape, x, generator)
            sign = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
            k1 = h * a(x, t0) + g0 * (dw - sh * sign)
            k2 = h * a(x + k1, t1) + g1 * (dw + sh * sign)
        else:
            k1 = h * a(x, t0)
            k2 = h * a(x + k1, t1)
        x = x + 0.5 * (k1 + k2)
        if callback is not None:
            callback(i, t1, x)
    f.check()
    return x, SamplerInfo(nfe=f.nfe, steps=steps)


# Dormand--Prince 5(4) tableau (the RK45 pair of scipy.integrate.solve_ivp)
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
_E = (-71 / 57600, 0.0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40)
_SAFETY, _MIN_FACTOR, _MAX_FACTOR, _ERR_EXP = 0.9, 0.2, 10.0, -1 / 5


def _rms(v: Tensor) -> float:
    return float(v.pow(2).mean().sqrt())


def probability_flow(
    score: ScoreFn,
    sde: DriftSDE,
    y: Tensor,
    x: Tensor,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    max_nfe: int = 10_000,
    callback: Callback | None = None,
) -> tuple[Tensor, SamplerInfo]:
    r"""Probability-flow ODE :math:`\dot x = f - \tfrac12 g^2 s` by adaptive Dormand--Prince RK45.

    Integrates from :math:`t = 1` to :math:`t_\varepsilon` with the step-size control of
    :func:`scipy.integrate.solve_ivp` (``method="RK45"``): error
    :math:`\lVert h\,K^\top E / (a + r\max(|x|, |x_{\rm new}|))\rVert_{\rm RMS} \le 1` over the
    whole batch, safety 0.9, step factors in :math:`[0.2, 10]`, the same initial-step heuristic,
    and the first-same-as-last property. NFE is ``2 + 6 × (attempted steps)``, identical to
    scipy's ``nfev`` for the same problem. The ODE is deterministic, so the result is the
    image at :math:`t_\varepsilon` transported from ``x``.

    Parameters
    ----------
    score, sde, y, x
        As every sampler takes them (see the module).
    rtol, atol : float
        Relative and absolute tolerances (the paper uses equal values, 1e-3 by default).
    max_nfe : int
        Give up (``RuntimeError``) after this many score evaluations.
    callback : callable, optional
        ``callback(i, t, x)`` after every accepted step.

    Returns
    -------
    (torch.Tensor, SamplerInfo)
        The final state and the statistics (``nfe``, accepted ``steps``, ``rejected``).
    """
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, int | float) and tol > 0):
            raise ValueError(f"{name} must be a positive number, got {tol!r}")
    f = _Counted(score, y)

    def fun(t: float, xx: Tensor) -> Tensor:
        g = sde.diffusion(t)
        return sde.drift(xx, y, t) - (0.5 * g * g) * f(xx, t)

    t, t_end = 1.0, sde.t_eps
    direction = -1.0
    span = t - t_end
    info = SamplerInfo()
    k0 = fun(t, x)
    if span == 0.0:
        return x, SamplerInfo(nfe=f.nfe)
    # initial step (Hairer, Norsett & Wanner, as in scipy's select_initial_step)
    scale = atol + x.abs() * rtol
    d0, d1 = _rms(x / scale), _rms(k0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, span)
    k1 = fun(t + direction * h0, x + (direction * h0) * k0)
    d2 = _rms((k1 - k0) / scale) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1 / 5)
    h_abs = min(100 * h0, h1, span)
    eps = 1e-12
    i = 0
    while t > t_end:
        rejected_here = False
        while True:
            if f.nfe >= max_nfe:
                raise RuntimeError(f"probability_flow: no convergence within max_nfe={max_nfe}")
            h = direction * h_abs
            t_new = t + h
            if direction * (t_new - t_end) > 0:
                t_new = t_end
            h = t_new - t
            h_abs = abs(h)
            ks = [k0]
            for s in range(1, 6):
                dx = sum((a_ * k_ for a_, k_ in zip(_A[s], ks, strict=True)), torch.zeros_like(x))
                ks.append(fun(t + _C[s] * h, x + h * dx))
            x_new = x + h * sum((b_ * k_ for b_, k_ in zip(_B, ks, strict=True)), torch.zeros_like(x))
            k_new = fun(t_new, x_new)
            ks.append(k_new)
            err = h * sum((e_ * k_ for e_, k_ in zip(_E, ks, strict=True) if e_ != 0.0), torch.zeros_like(x))
            scale = atol + torch.maximum(x.abs(), x_new.abs()) * rtol
            err_norm = _rms(err / scale)
            if not math.isfinite(err_norm):
                f.check()  # names the evaluation that was not finite
                raise ValueError(f"probability_flow: the state is no longer finite at t = {t:.4f}")
            if err_norm < 1:
                factor = _MAX_FACTOR if err_norm == 0 else min(_MAX_FACTOR, _SAFETY * err_norm**_ERR_EXP)
                if rejected_here:
                    factor = min(1.0, factor)
                h_abs *= factor
                break
            h_abs *= max(_MIN_FACTOR, _SAFETY * err_norm**_ERR_EXP)
            rejected_here = True
            info.rejected += 1
            if h_abs < eps:
                raise RuntimeError("probability_flow: step size underflow")
        t, x, k0 = t_new, x_new, k_new
        info.steps += 1
        if callback is not None:
            callback(i, t, x)
        i += 1
        if t <= t_end:
            break
    info.nfe = f.nfe
    return x, info


#: Sampler names accepted by ``solvers.driftrec(sampler=...)``.
SAMPLERS = {"euler_maruyama": euler_maruyama, "euler_heun": euler_heun, "ode": probability_flow}
