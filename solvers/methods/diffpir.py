r"""DiffPIR: denoising diffusion models for plug-and-play image restoration (Zhu et al., 2023).

DiffPIR splits each reverse step into the prior's denoising and a data subproblem, as
half-quadratic splitting does in plug-and-play restoration. At timestep :math:`t` (VP iterate
:math:`x_t`, model range :math:`[-1, 1]`, VE noise level
:math:`\bar\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}`):

1. the prior's estimate
   :math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta(x_t, t))/\sqrt{\bar\alpha_t}`
   (clipped to the data range);
2. the data subproblem (the paper's eq. 12, the proximal step of the data term)

   .. math::

       \hat x_0' = \operatorname*{arg\,min}_x\ \|y - Hx\|^2 + \rho_t \|x - \hat x_0\|^2,
       \qquad \rho_t = \lambda \frac{\sigma_y^2}{\bar\sigma_t^2},

   the MAP estimate for :math:`y = Hx + \sigma_y z` under the prior :math:`\mathcal N(\hat x_0,
   \bar\sigma_t^2/\lambda)`, written as the paper writes it (its eq. 11,
   :math:`\tfrac{1}{2\sigma_y^2}\|y - Hx\|^2 + \tfrac{\lambda}{2\bar\sigma_t^2}\|x - \hat x_0\|^2`,
   multiplied by :math:`2\sigma_y^2`);
3. re-noising to the next timestep :math:`t'` with the mix ζ of the noise that takes
   :math:`\hat x_0'` to :math:`x_t` and fresh noise:

   .. math::

       \hat\epsilon = \frac{x_t - \sqrt{\bar\alpha_t}\,\hat x_0'}{\sqrt{1-\bar\alpha_t}}, \qquad
       x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0' + \sqrt{1-\bar\alpha_{t'}}
           \big(\sqrt{1-\zeta}\,\hat\epsilon + \sqrt{\zeta}\, z\big).

**The exact data step, for every SVD operator.** With :math:`H = U\Sigma V^\top`, the spectral
coordinates :math:`\bar x = V^\top x` and the spectral measurement
:math:`\bar y = \Sigma^+ U^\top y` (:func:`solvers.common.measurements.spectral_measurement`),
the subproblem separates into one scalar problem per coordinate,
:math:`\min_{\bar x_i} s_i^2 (\bar y_i - \bar x_i)^2 + \rho_t (\bar x_i - \bar{\hat x}_{0,i})^2`
(up to terms without :math:`x`), whose solution is

.. math::

    \bar x_i' = \bar{\hat x}_{0,i} + w_i\,(\bar y_i - \bar{\hat x}_{0,i}), \qquad
    w_i = \begin{cases} \dfrac{s_i^2}{s_i^2 + \rho_t} & s_i > 0, \\ 0 & s_i = 0, \end{cases}

and :math:`\hat x_0' = V \bar x'`. One formula for every operator that exposes its SVD
(blur, super-resolution, inpainting, colorization, third-party ones): no per-task closed
form, no FFT special case, and no singular value divided by where it is zero. The units
cancel: the problem is the same in :math:`[0, 1]` or in the model range, so :math:`\rho_t` is
formed, as in the reference implementation, from :math:`\sigma_y` in :math:`[0, 1]` units and
:math:`\bar\sigma_t` of the model range. (For the noise of the model range, :math:`2\sigma_y`, the
same :math:`\rho_t` is the MAP weight with :math:`\lambda/4`: the papers' λ is this convention's.)

**Noiseless measurements.** :math:`\sigma_y = 0` gives :math:`\rho_t = 0` and :math:`w_i = 1` on every
measured coordinate: the step is the exact projection of :math:`\hat x_0` onto
:math:`\{x : Hx = y\}` (its null-space part kept). The last step returns the projected
:math:`\hat x_0'` itself, so a noiseless result satisfies :math:`H\hat x = y` to floating-point
precision. The result is therefore not clipped to :math:`[0, 1]` (clipping would undo the
consistency); only the prior's estimates are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

import opkit
from opkit.params import check_non_negative, check_one_of, check_positive, check_unit
from solvers.common import Progress, SolveInfo, check_common, check_operator_kind, normal_, repeat_rows
from solvers.common.finite import FiniteWatch, working_dtype
from solvers.common.measurements import linear_measurement, spectral_measurement
from solvers.common.memory import heap_reuse
from solvers.priors import check_prior, predict_eps, quadratic_timesteps, renoise, uniform_timesteps

__all__ = ["DIFFPIR_ACCEPTS", "DIFFPIR_TASKS", "diffpir", "diffpir_settings"]

#: λ for super-resolution (see :data:`DIFFPIR_TASKS`).
SR_LAMBDA = 7.0

#: Operator kinds DiffPIR takes: those with an SVD (the data step is solved exactly in it).
DIFFPIR_ACCEPTS = ("svd",)

#: Settings per registered operator name, ``{"lam": λ, "zeta": ζ}``, from the reference
#: implementation (github.com/yuanzhi-zhu/DiffPIR at 111d26e, the experiment loops of
#: ``main_ddpir.py``): deblurring λ = 7, ζ = 0.3 (the config's 1 and 0.1 times 7 and 3); inpainting
#: λ = 1, ζ = 1; 4× super-resolution (``main_ddpir_sisr.py``) ζ = 0.25 with λ swept over 2..12,
#: λ = SR_LAMBDA here, a value inside that sweep (deblurring's), not tuned on the bundled prior
#: (one point of such a sweep is in docs/solvers/diffpir.rst). Other operators get the
#: signature's defaults (deblurring's λ = 7, ζ = 0.3).
DIFFPIR_TASKS: dict[str, dict[str, float]] = {
    "sr_block": {"lam": SR_LAMBDA, "zeta": 0.25},
    "sr_bicubic": {"lam": SR_LAMBDA, "zeta": 0.25},
    "blur": {"lam": 7.0, "zeta": 0.3},
    "conv2d": {"lam": 7.0, "zeta": 0.3},
    "inpaint": {"lam": 1.0, "zeta": 1.0},
}

#: Timestep grids by name (``skip``).
SKIPS = ("quad", "uniform")


def diffpir_settings(model: Any, op: opkit.Operator[Any]) -> dict[str, Any]:
    """DiffPIR's settings for an operator: the reference implementation's λ and ζ for its task.

    DiffPIR's registry entry carries this function (:attr:`opkit.SolverEntry.settings`), so the
    command line and a comparison table run each task with the paper's settings and no special
    case; a caller's keywords go on top. The prior's own tuned settings (``ddrm_settings.json``)
    are DDRM's and are not used.

    Parameters
    ----------
    model : prior or None
        The prior (unused: the settings depend on the task only).
    op : opkit.Operator
        The operator; its registered name picks the row of :data:`DIFFPIR_TASKS`.

    Returns
    -------
    dict
        ``{"lam": ..., "zeta": ...}``, or ``{}`` for an operator without a row.
    """
    return dict(DIFFPIR_TASKS.get(op.name or "", {}))


@heap_reuse()
def diffpir(
    op: opkit.Operator[Any],
    y: Any,
    model: Any,
    *,
    steps: int = 100,
    num_samples: int = 1,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    callback: Any = None,
    progress: bool | None = None,
    return_info: bool = False,
    sigma_y: float = 0.0,
    lam: float = 7.0,
    zeta: float = 0.3,
    skip: str = "quad",
    clip_x0: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Tensor | tuple[Tensor, SolveInfo]:
    r"""Restore images from measurements ``y = H x + σ_y z`` with DiffPIR.

    See the module documentation for the step. Each step costs one model evaluation and one
    ``Vᵀ`` and ``V`` of the operator; everything constant (``Σ⁺Uᵀy``) is computed once.

    Defaults follow the paper and its reference implementation: 100 steps on the quadratic
    grid (:func:`solvers.priors.quadratic_timesteps`), and the task's λ and ζ
    (:data:`DIFFPIR_TASKS`, through :func:`diffpir_settings` when called from the registry;
    deblurring's λ = 7, ζ = 0.3 otherwise).

    Parameters
    ----------
    op : opkit.SVDOperator
        A linear operator with its SVD (any other kind: ``TypeError``).
    y : torch.Tensor
        ``(B, ...)`` measurements.
    model : prior
        A diffusion prior (:mod:`solvers.priors`): ``alphas_cumprod`` and
        ``__call__(x_t, t) -> ε`` (VP, data in ``[-1, 1]``).
    steps : int
        Model evaluations (paper: 100).
    num_samples : int
        Samples per measurement, drawn as one batch and averaged.
    generator : torch.Generator or sequence of torch.Generator, optional
        Source of all randomness; may live on another device than ``y``. A sequence of ``B``
        generators draws the noise of measurement ``b`` from generator ``b`` only (its result
        is then the one it gets restored alone).
    callback : callable, optional
        ``callback(step, t, x_t, x0_pred)`` after every step: the timestep, the model's VP input
        and the data-consistent estimate :math:`\hat x_0'` mapped to ``[0, 1]``.
    progress : bool, optional
        Show a tqdm progress bar; by default only when stderr is a terminal.
    return_info : bool
        Also return a :class:`~solvers.common.SolveInfo` (with the individual samples).
    sigma_y : float
        Measurement noise σ_y in ``[0, 1]`` image units; 0 makes the data step a projection.
    lam : float
        λ > 0, the weight of the prior in the data subproblem,
        :math:`\rho_t = \lambda\sigma_y^2/\bar\sigma_t^2`.
    zeta : float
        ζ in ``[0, 1]``: the share of fresh noise when re-noising (0: the predicted noise only,
        deterministic after the start; 1: fresh noise only).
    skip : {"quad", "uniform"}
        The timestep grid: the reference implementation's quadratic one
        (:func:`~solvers.priors.quadratic_timesteps`) or DDRM's uniform one
        (:func:`~solvers.priors.uniform_timesteps`).
    clip_x0 : bool
        Clip the prior's estimate :math:`\hat x_0` to the data range before the data step.
    model_kwargs : mapping, optional
        Extra keyword arguments for every model call; a tensor whose first axis is the batch is
        repeated for the samples.

    Returns
    -------
    torch.Tensor or (torch.Tensor, SolveInfo)
        The restored images ``(B, C, H, W)`` (the mean of the samples), not clipped: with
        ``sigma_y = 0`` each sample satisfies ``H x = y`` to floating-point precision.

    Raises
    ------
    TypeError
        For an operator without an SVD, or a model that does not follow the prior protocol.
    ValueError
        For bad parameters, measurements that do not fit ``op`` or are not finite, or a model
        that returns NaN or infinity.

    Examples
    --------
    >>> import opkit, torch
    >>> from solvers.oracles import OraclePrior
    >>> x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    >>> op = opkit.create("sr_block", shape=(3, 8, 8), factor=2)
    >>> out = diffpir(op, op(x), OraclePrior(x), steps=5)
    >>> bool(torch.allclose(out, x))
    True
    """
    check_operator_kind("diffpir", op, DIFFPIR_ACCEPTS)
    assert isinstance(op, opkit.SVDOperator)
    alphas = check_prior(model)
    check_common(steps, num_samples)
    sigma_y = check_non_negative("sigma_y", sigma_y)
    lam = check_positive("lam", lam)
    zeta = check_unit("zeta", zeta)
    check_one_of("skip", skip, SKIPS)
    grid = quadratic_timesteps if skip == "quad" else uniform_timesteps
    timesteps = grid(alphas.numel(), steps)
    abar = [float(alphas[t]) for t in timesteps]

    y = linear_measurement(op, y)
    out_dtype = y.dtype
    y = y.to(working_dtype(y.dtype))
    k, batch = num_samples, y.shape[0]
    # constants of the call: ȳ (model range) and the singular values, per coordinate
    ybar = spectral_measurement(op, y)
    ybar = ybar.repeat_interleave(k, dim=0) if k > 1 else ybar
    s2 = op.singulars_like(y).square()
    pos = s2 > 0
    kwargs = {key: repeat_rows(v, k, batch) for key, v in dict(model_kwargs or {}).items()}
    watch = FiniteWatch("the model", lambda i: f"step {i + 1} of {len(timesteps)} (timestep {timesteps[i]})")

    noise = normal_(torch.empty((batch * k, *op.shape), dtype=y.dtype, device=y.device), generator)
    x = noise.clone()  # x_T: pure noise at the first timestep
    x0p = x
    bar = Progress(len(timesteps), f"DiffPIR ({op.label})", progress)
    with torch.no_grad(), bar:
        for i, t in enumerate(timesteps):
            bar.start()
            a = abar[i]
            a_n = abar[i + 1] if i + 1 < len(abar) else 1.0
            eps = predict_eps(model, x, t, **kwargs)
            watch.update(i, eps)
            x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
            if clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
            # the data subproblem, exactly, per spectral coordinate
            rho = lam * sigma_y**2 * a / (1 - a)  # λ σ_y² / σ̄_t²
            w = torch.where(pos, s2 / (s2 + rho).clamp_min(torch.finfo(s2.dtype).tiny), torch.zeros_like(s2))
            x0bar = op.Vt(x0)
            x0p = op.V(x0bar + w * (ybar - x0bar))
            if callback is not None:
                callback(i, t, x.clone(), (x0p + 1.0) * 0.5)
            if a_n < 1.0:
                eps_hat = (x - math.sqrt(a) * x0p) / math.sqrt(1 - a)
                fresh, keep = math.sqrt(zeta * (1 - a_n)), math.sqrt((1 - zeta) * (1 - a_n))
                z = normal_(noise, generator) if fresh > 0 else None
                x = renoise(x0p, eps_hat, a_n, fresh, z, keep=keep)
            bar.tick()
    watch.check()
    samples = ((x0p + 1.0) * 0.5).view(batch, k, *op.shape)
    mean = samples.mean(dim=1) if k > 1 else samples[:, 0]
    mean, samples = mean.to(out_dtype), samples.to(out_dtype)
    if return_info:
        n = len(timesteps)
        return mean, SolveInfo(nfe=n, steps=n, samples=samples, extra={"timesteps": timesteps})
    return mean
