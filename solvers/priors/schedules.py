"""The noise schedules, the timestep grids and the reverse VP step of the DDPM-based solvers.

* :func:`linear_alphas_cumprod` -- DDPM's linear β schedule;
* :func:`uniform_timesteps` -- DDRM's uniform skipping (also ΠGDM's and DPS's step budget);
* :func:`quadratic_timesteps` -- DiffPIR's quadratic skipping, dense near the data;
* :func:`renoise` and :func:`ancestral_std` -- the step from a clean-image estimate back to a
  noisier timestep that ΠGDM, DiffPIR and DPS share (DDIM's form; DDPM's ancestral step at η = 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from opkit.params import check_positive_int

__all__ = [
    "BETA_END",
    "BETA_START",
    "ancestral_std",
    "linear_alphas_cumprod",
    "quadratic_timesteps",
    "renoise",
    "uniform_timesteps",
]


#: The linear β schedule of DDPM that DDRM assumes: β from 1e-4 to 0.02 over 1000 steps.
BETA_START, BETA_END = 1e-4, 0.02


def linear_alphas_cumprod(
    num_timesteps: int = 1000, beta_start: float = BETA_START, beta_end: float = BETA_END
) -> Tensor:
    r"""Cumulative products of the linear β schedule of DDPM (the DDRM papers' default).

    .. math::

        \beta_t = \beta_\text{start} + \frac{t}{T-1} (\beta_\text{end} - \beta_\text{start}), \qquad
        \bar\alpha_t = \prod_{s=0}^{t} (1 - \beta_s), \qquad t = 0, \dots, T-1.

    Parameters
    ----------
    num_timesteps : int
        ``T`` (1000 in DDPM).
    beta_start, beta_end : float
        First and last β, with ``0 < beta_start <= beta_end < 1``.

    Returns
    -------
    torch.Tensor
        ``(T,)`` float64 tensor, strictly decreasing, in ``(0, 1)``.

    Raises
    ------
    ValueError
        For a bad ``num_timesteps`` or β range.

    Examples
    --------
    >>> a = linear_alphas_cumprod()
    >>> a.shape, round(float(a[0]), 6)
    (torch.Size([1000]), 0.9999)
    """
    check_positive_int("num_timesteps", num_timesteps)
    if not (0.0 < beta_start <= beta_end < 1.0):
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def uniform_timesteps(num_timesteps: int, steps: int, t_start: int | None = None) -> list[int]:
    r"""The model timesteps a DDRM run visits, in decreasing order (one model call each).

    * ``t_start=None`` -- the DDRM paper's uniform skipping over the whole schedule:
      :math:`t_k = k \lfloor T / \text{steps} \rfloor` for :math:`k = \text{steps}-1, \dots, 0`
      (``T = 1000``, 20 steps: ``950, 900, …, 50, 0``).
    * ``t_start=S`` -- an SDEdit-style partial run: ``steps`` integers uniformly spaced from
      ``S`` down to ``0``, both included, :math:`t_k = \operatorname{round}(k S / (\text{steps}-1))`
      (``S = 300``, 20 steps: ``300, 284, …, 16, 0``).

    The last update of every run goes from the last timestep to noise level zero.

    Parameters
    ----------
    num_timesteps : int
        ``T``, the length of the prior's schedule.
    steps : int
        Number of model calls, ``1 <= steps <= T``.
    t_start : int, optional
        First timestep, ``steps - 1 <= t_start <= T - 1``.

    Returns
    -------
    list of int
        Strictly decreasing timesteps, ``steps`` of them.

    Raises
    ------
    ValueError
        If the numbers do not fit.

    Examples
    --------
    >>> uniform_timesteps(1000, 4)
    [750, 500, 250, 0]
    >>> uniform_timesteps(1000, 4, t_start=300)
    [300, 200, 100, 0]
    """
    check_positive_int("num_timesteps", num_timesteps)
    check_positive_int("steps", steps)
    if steps > num_timesteps:
        raise ValueError(f"steps must be at most the prior's {num_timesteps} timesteps, got {steps}")
    if t_start is None:
        skip = num_timesteps // steps
        return [k * skip for k in range(steps - 1, -1, -1)]
    if isinstance(t_start, bool) or not isinstance(t_start, int):
        raise ValueError(f"t_start must be an integer timestep, got {t_start!r}")
    if not steps - 1 <= t_start <= num_timesteps - 1:
        raise ValueError(
            f"t_start must lie in [steps - 1, T - 1] = [{steps - 1}, {num_timesteps - 1}], got {t_start}"
        )
    if steps == 1:
        return [t_start]
    ts = [round(k * t_start / (steps - 1)) for k in range(steps - 1, -1, -1)]
    return ts


def quadratic_timesteps(num_timesteps: int, steps: int) -> list[int]:
    r"""DiffPIR's quadratic timestep grid: coarse at high noise, dense near the data.

    The reference implementation of DiffPIR (``skip_type="quad"``) visits the noise levels
    :math:`\bar\sigma` of the indices :math:`s_k = \lfloor T \sqrt{k / (n - 1)} \rfloor`,
    :math:`k = 0, \dots, n-1` (the last one moved to :math:`T - 1`), counted from the noisy end,
    i.e. the timesteps :math:`t_k = T - 1 - s_k`: from :math:`T - 1` down to ``0``. Where the
    rounding would visit a timestep twice (many steps), each timestep is raised to one above the
    next, :math:`t_k = \max(T - 1 - s_k,\ t_{k+1} + 1)`, so that exactly ``steps`` distinct
    timesteps are visited (for ``steps = T``: all of them).

    Parameters
    ----------
    num_timesteps : int
        ``T``, the length of the prior's schedule.
    steps : int
        Number of model calls, ``1 <= steps <= T``.

    Returns
    -------
    list of int
        Strictly decreasing timesteps from ``T - 1`` (``steps = 1``: only ``T - 1``) to ``0``.

    Raises
    ------
    ValueError
        If the numbers do not fit.

    Examples
    --------
    >>> quadratic_timesteps(1000, 5)
    [999, 499, 292, 133, 0]
    """
    check_positive_int("num_timesteps", num_timesteps)
    check_positive_int("steps", steps)
    if steps > num_timesteps:
        raise ValueError(f"steps must be at most the prior's {num_timesteps} timesteps, got {steps}")
    big_t = num_timesteps
    if steps == 1:
        return [big_t - 1]
    seq = [int(math.sqrt(k / (steps - 1)) * big_t) for k in range(steps)]
    seq[-1] = big_t - 1
    ts = [big_t - 1 - s for s in seq]
    for k in range(steps - 2, -1, -1):  # strictly decreasing: at least one above the next
        ts[k] = max(ts[k], ts[k + 1] + 1)
    return ts


def ancestral_std(a: float, a_next: float, eta: float = 1.0) -> float:
    r"""The fresh-noise coefficient of DDIM's step from :math:`\bar\alpha_t` to :math:`\bar\alpha_{t'}`.

    .. math::

        c = \eta \sqrt{\frac{1 - \bar\alpha_{t'}}{1 - \bar\alpha_t}
            \Big(1 - \frac{\bar\alpha_t}{\bar\alpha_{t'}}\Big)}

    (Song, Meng & Ermon, eq. 16). With :math:`\eta = 1` and :math:`t' = t - 1` it is the standard
    deviation of DDPM's posterior :math:`q(x_{t-1} \mid x_t, x_0)`, the ancestral step (and, with
    :math:`t'` further away, the posterior of the respaced chain).

    Parameters
    ----------
    a, a_next : float
        :math:`\bar\alpha_t < \bar\alpha_{t'} \le 1`.
    eta : float
        η in ``[0, 1]``.

    Returns
    -------
    float
        :math:`c`; 0 for :math:`\bar\alpha_{t'} = 1` (the step to the data).
    """
    return eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))


def renoise(
    x0: Tensor, eps: Tensor, a_next: float, fresh: float, noise: Tensor | None, *, keep: float | None = None
) -> Tensor:
    r"""The VP iterate at :math:`\bar\alpha_{t'}` from a clean estimate, its noise and fresh noise.

    .. math::

        x_{t'} = \sqrt{\bar\alpha_{t'}}\, \hat x_0
            + \sqrt{1 - \bar\alpha_{t'} - c^2}\; \hat\epsilon + c\, z,

    the form of DDIM's step: ΠGDM and DPS take :math:`c` from :func:`ancestral_std` (η = 1:
    DDPM's ancestral step), DiffPIR :math:`c = \sqrt{\zeta (1 - \bar\alpha_{t'})}` (its mix ζ of
    fresh and predicted noise). The variance of the noise part is :math:`1 - \bar\alpha_{t'}`
    whatever :math:`c`, for independent unit :math:`\hat\epsilon` and :math:`z`.

    Parameters
    ----------
    x0 : torch.Tensor
        :math:`\hat x_0`, model range.
    eps : torch.Tensor
        :math:`\hat\epsilon`, the noise that takes :math:`\hat x_0` to the current iterate.
    a_next : float
        :math:`\bar\alpha_{t'}`.
    fresh : float
        :math:`c \ge 0` (clipped so that the square root stays real).
    noise : torch.Tensor or None
        :math:`z`, standard normal; only read when ``fresh > 0`` (the caller draws it only then,
        so that a deterministic step consumes no randomness).
    keep : float, optional
        The coefficient of :math:`\hat\epsilon` when the caller has it in closed form (DiffPIR:
        :math:`\sqrt{(1-\zeta)(1-\bar\alpha_{t'})}`, exactly 0 for ζ = 1, where the difference
        :math:`1 - \bar\alpha_{t'} - c^2` would leave a rounding residue); by default
        :math:`\sqrt{1 - \bar\alpha_{t'} - c^2}`.

    Returns
    -------
    torch.Tensor
        :math:`x_{t'}`.
    """
    if keep is None:
        keep = math.sqrt(max(1 - a_next - fresh * fresh, 0.0))
    x = math.sqrt(a_next) * x0 + keep * eps
    if fresh > 0:
        if noise is None:
            raise ValueError("renoise needs the noise z for fresh > 0")
        x = x + fresh * noise
    return x
