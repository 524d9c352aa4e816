"""The noise schedules and timestep grids of the DDPM and DDRM papers."""

from __future__ import annotations

import torch
from torch import Tensor

from opkit.params import check_positive_int

__all__ = ["BETA_END", "BETA_START", "linear_alphas_cumprod", "uniform_timesteps"]


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
