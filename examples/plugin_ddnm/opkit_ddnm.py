r"""DDNM as an opkit solver plugin: range–null space decomposition (Wang, Yu & Zhang, ICLR 2023).

For a linear operator ``H`` the clean-image estimate of every step is split into the part ``H``
sees and the part it does not; the first is replaced by what the measurement says:

.. math:: \hat x_0' = H^\dagger y + (I - H^\dagger H)\,\hat x_0,

and a DDIM step goes on from :math:`\hat x_0'` (noiseless measurements only). It needs only
``H`` and ``H†``, so it takes any linear operator, and the same diffusion priors as DDRM.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

import opkit
from solvers.common import Progress, SolveInfo, check_batch, check_common, check_operator_kind, normal_
from solvers.oracles import OraclePrior
from solvers.priors import uniform_timesteps


def ddnm(
    op: opkit.LinearOperator,
    y: Tensor,
    model: Any,
    *,
    steps: int = 50,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    callback: Any = None,
    progress: bool | None = None,
    return_info: bool = False,
    eta: float = 0.85,
) -> Tensor | tuple[Tensor, SolveInfo]:
    """Restore ``y = H x`` with DDNM (range–null space decomposition, DDIM steps).

    Parameters
    ----------
    op : opkit.LinearOperator
        Any linear operator (``H`` and ``H†`` are used).
    y : torch.Tensor
        Noiseless measurements ``(B, ...)``.
    model : prior
        ``alphas_cumprod`` and ``model(x_t, t) -> ε`` (VP, data in ``[-1, 1]``).
    steps, num_samples, generator, callback, progress, return_info
        The solver contract (:mod:`opkit.solver`).
    eta : float
        DDIM's η in ``[0, 1]``.

    Returns
    -------
    torch.Tensor or (torch.Tensor, SolveInfo)
        The restored images in ``[0, 1]``.
    """
    check_operator_kind("ddnm", op, ("linear",))
    if not callable(model) or not hasattr(model, "alphas_cumprod"):
        raise TypeError(
            f"ddnm needs a diffusion prior (alphas_cumprod, model(x_t, t)), got {type(model).__name__}"
        )
    check_common(steps, num_samples)
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise ValueError("y must be a floating tensor")
    op.check_measurement(y)
    check_batch(y.shape[0])
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y contains NaN or infinity")
    alphas = model.alphas_cumprod
    timesteps = uniform_timesteps(len(alphas), steps)
    k, b = num_samples, y.shape[0]
    yk = y.repeat_interleave(k, dim=0)
    hh1 = op.pinv(op(torch.ones((1, *op.shape), dtype=y.dtype, device=y.device)))  # H†H 1
    range_part = 2.0 * op.pinv(yk) - hh1  # H†y_m with y_m = 2y - H1 (model range)
    x = normal_(torch.empty_like(range_part), generator)
    with Progress(len(timesteps), f"DDNM ({op.label})", progress) as bar, torch.no_grad():
        for i, t in enumerate(timesteps):
            bar.start()
            a = float(alphas[t])
            a_n = float(alphas[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
            eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
            if not bool(torch.isfinite(eps).all()):
                raise ValueError(f"the model returned NaN or infinity at step {i + 1}")
            x0 = ((x - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
            x0 = range_part + x0 - 2.0 * op.pinv(op((x0 + 1) / 2)) + hh1  # H†y_m + (I - H†H) x̂0
            if callback is not None:
                callback(i, t, x.clone(), (x0 + 1) / 2)
            if a_n < 1.0:
                e = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
                c1 = eta * math.sqrt((1 - a_n) / (1 - a) * (1 - a / a_n))
                x = math.sqrt(a_n) * x0 + math.sqrt(max(1 - a_n - c1 * c1, 0.0)) * e
                x = x + c1 * normal_(torch.empty_like(x), generator)
            else:
                x = x0
            bar.tick()
    samples = ((x + 1) / 2).clamp(0, 1).view(b, k, *op.shape)
    out = samples.mean(dim=1)
    return (out, SolveInfo(nfe=len(timesteps), steps=len(timesteps), samples=samples)) if return_info else out


@opkit.hookimpl
def opkit_register_solvers(registry: Any) -> None:
    """Register ``ddnm``: any linear operator, a diffusion prior."""
    registry.add_solver(
        "ddnm",
        ddnm,
        accepts=("linear",),
        model="prior",
        description="DDNM (Wang et al. 2023): range-null space decomposition, any linear operator",
        oracle=OraclePrior,
    )
