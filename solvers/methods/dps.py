r"""DPS: diffusion posterior sampling (Chung, Kim, Mccann, Klasky & Ye, ICLR 2023).

DPS follows DDPM's reverse process and corrects every step with the gradient of the
measurement residual of the denoiser's estimate, back-propagated through the network. At
timestep :math:`t` (VP iterate :math:`x_t`, model range :math:`[-1, 1]`):

1. the estimate
   :math:`\hat x_0(x_t) = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta(x_t, t))/\sqrt{\bar\alpha_t}`
   (clipped to the data range), kept on the autograd graph;
2. DDPM's ancestral step to the next timestep :math:`t'`,

   .. math::

       x'_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{t'} - c_t^2}\;\hat\epsilon
           + c_t z, \qquad
       c_t = \sqrt{\tfrac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}
             \big(1 - \bar\alpha_t/\bar\alpha_{t'}\big)},

   with :math:`\hat\epsilon = (x_t - \sqrt{\bar\alpha_t}\,\hat x_0)/\sqrt{1-\bar\alpha_t}`: the DDPM
   posterior :math:`q(x_{t'} \mid x_t, \hat x_0)` (for :math:`t' = t - 1` the paper's step; for
   fewer steps, the posterior of the uniformly respaced chain, :func:`solvers.priors.renoise`);
3. the measurement step

   .. math::

       x_{t'} = x'_{t'} - \zeta_t\, \nabla_{x_t} \tfrac12 \|r(x_t)\|^2
              = x'_{t'} - \zeta'\, \nabla_{x_t} \|r(x_t)\|,
       \qquad \zeta_t = \frac{\zeta'}{\|r(x_t)\|},

   with the residual :math:`r = y - H\hat x_0(x_t)` (model range) for a linear operator and
   :math:`r = \operatorname{codes}(y) - \tilde E(\hat x_0(x_t))` for an encode/decode pair, where
   :math:`\tilde E` is the pair's differentiable relaxation
   (:meth:`opkit.EncodeDecodeOperator.relaxed_codes`; JPEG and quantization: the coefficients
   before rounding). The gradient is a vector–Jacobian product through the network
   (:func:`solvers.priors.predict_eps` with ``grad=True``):
   :math:`\nabla_{x_t}\|r\| = (\partial \hat x_0/\partial x_t)^\top g`, with
   :math:`g = -H^\top r/\|r\|` (the operator's adjoint: the operator itself need not be
   differentiable) or, for a pair, :math:`g = \nabla_{\hat x_0}\|r\|` by autograd through the
   relaxation. The norm is each measurement's own (one per row of the batch, so that the
   images of a batch do not interact), and a zero residual gives a zero step: :math:`r/\|r\|`
   is taken as 0 there, the limit the guard :math:`\zeta_t = \zeta'/\|r\|` needs.

The paper's Algorithm 1 writes the step as :math:`\zeta_t \nabla\|r\|^2` with
:math:`\zeta_t = \zeta'/\|r\|`, twice the step above for the same :math:`\zeta'`; its reference
implementation takes :math:`\zeta'\nabla\|r\|` (``scale`` in its configurations), and its
per-task values of :math:`\zeta'` are of that form, so this module follows it. The update does not
use :math:`\sigma_y`: the Gaussian likelihood's :math:`1/\sigma_y^2` is what :math:`\zeta'` replaces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

import opkit
from opkit.params import check_non_negative
from solvers.common import Progress, SolveInfo, check_common, check_operator_kind, normal_, repeat_rows
from solvers.common.finite import FiniteWatch, check_finite, working_dtype
from solvers.common.measurements import decoded_measurement, linear_measurement
from solvers.common.memory import heap_reuse
from solvers.priors import ancestral_std, check_prior, predict_eps, renoise, uniform_timesteps

__all__ = ["DPS_ACCEPTS", "DPS_TASKS", "dps", "dps_settings"]

#: Operator kinds DPS takes: every linear operator, and encode/decode pairs that offer a
#: differentiable relaxation (others are refused with ``TypeError`` when called).
DPS_ACCEPTS = ("linear", "encode_decode")

#: The reference implementation's step ζ′ per registered operator name, ``{"zeta": ζ′}``
#: (github.com/DPS2022/diffusion-posterior-sampling, ``configs/*_config.yaml``: super-resolution,
#: Gaussian and motion deblurring 0.3, inpainting 0.5); other operators get the signature's 0.3.
DPS_TASKS: dict[str, dict[str, float]] = {
    "sr_block": {"zeta": 0.3},
    "sr_bicubic": {"zeta": 0.3},
    "blur": {"zeta": 0.3},
    "conv2d": {"zeta": 0.3},
    "inpaint": {"zeta": 0.5},
}


def dps_settings(model: Any, op: opkit.Operator[Any]) -> dict[str, Any]:
    """DPS's settings for an operator: the reference implementation's ζ′ for its task.

    DPS's registry entry carries this function (:attr:`opkit.SolverEntry.settings`), so that the
    command line and a comparison table run each task with the paper's step and no special case.

    Parameters
    ----------
    model : prior or None
        The prior (unused).
    op : opkit.Operator
        The operator; its registered name picks the row of :data:`DPS_TASKS`.

    Returns
    -------
    dict
        ``{"zeta": ...}``, or ``{}`` for an operator without a row.
    """
    return dict(DPS_TASKS.get(op.name or "", {}))


@heap_reuse()
def dps(
    op: opkit.Operator[Any],
    y: Any,
    model: Any,
    *,
    steps: int = 1000,
    num_samples: int = 1,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    callback: Any = None,
    progress: bool | None = None,
    return_info: bool = False,
    sigma_y: float = 0.0,
    zeta: float = 0.3,
    clip_x0: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Tensor | tuple[Tensor, SolveInfo]:
    r"""Restore images from measurements ``y = H(x)`` with diffusion posterior sampling (DPS).

    See the module documentation for the step. Each step costs one model evaluation with
    autograd and one backward pass through the network (about three forward passes), and keeps
    the network's activations for the whole batch of ``B · num_samples`` until the backward
    pass: peak memory grows in proportion to the batch (measured in :doc:`/solvers/dps`).

    The paper runs all 1000 timesteps; ``steps`` below that skips uniformly
    (:func:`solvers.priors.uniform_timesteps`) with the ancestral step of the respaced chain and
    the same ζ′, so DPS can be compared with other solvers at equal network calls.

    Parameters
    ----------
    op : opkit.LinearOperator or opkit.EncodeDecodeOperator
        Any linear operator (it uses ``H`` and ``Hᵀ``), or an encode/decode pair with a
        differentiable relaxation (:meth:`~opkit.EncodeDecodeOperator.relaxed_codes`).
    y : torch.Tensor or measurement
        ``(B, ...)`` measurements.
    model : prior
        A diffusion prior (:mod:`solvers.priors`), differentiable in ``x_t`` (a
        :class:`~solvers.priors.UNetPrior` is called through its ``eps_with_grad``).
    steps : int
        Model evaluations (paper: 1000, every timestep).
    num_samples : int
        Samples per measurement, drawn as one batch and averaged.
    generator : torch.Generator or sequence of torch.Generator, optional
        Source of all randomness; may live on another device than ``y``. A sequence of ``B``
        generators draws the noise of measurement ``b`` from generator ``b`` only.
    callback : callable, optional
        ``callback(step, t, x_t, x0_pred)`` after every step: the timestep, the model's VP input
        and the estimate :math:`\hat x_0(x_t)` mapped to ``[0, 1]``.
    progress : bool, optional
        Show a tqdm progress bar; by default only when stderr is a terminal.
    return_info : bool
        Also return a :class:`~solvers.common.SolveInfo` (with the individual samples).
    sigma_y : float
        Measurement noise in ``[0, 1]`` units. DPS's step does not use it (ζ′ stands for the
        likelihood's weight); it is taken, and checked, so that every solver of a comparison is
        called alike. Must be 0 for an encode/decode pair.
    zeta : float
        ζ′ ≥ 0, the step size of the measurement step (the reference's ``scale``; 0 turns DPS
        into unconditional DDPM sampling).
    clip_x0 : bool
        Clip :math:`\hat x_0` to the data range in each step (the reference does) and the result
        to ``[0, 1]``.
    model_kwargs : mapping, optional
        Extra keyword arguments for every model call.

    Returns
    -------
    torch.Tensor or (torch.Tensor, SolveInfo)
        The restored images ``(B, C, H, W)`` (the mean of the samples).

    Raises
    ------
    TypeError
        For an operator that is neither linear nor an encode/decode pair with a relaxation, or a
        model that does not follow the prior protocol.
    ValueError
        For bad parameters, measurements that do not fit ``op`` or are not finite, or a model
        that returns NaN or infinity.

    Examples
    --------
    >>> import opkit, torch
    >>> from solvers.oracles import OraclePrior
    >>> x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    >>> op = opkit.create("sr_block", shape=(3, 8, 8), factor=2)
    >>> out = dps(op, op(x), OraclePrior(x), steps=5)
    >>> bool(torch.allclose(out, x))
    True
    """
    kind = check_operator_kind("dps", op, DPS_ACCEPTS)
    alphas = check_prior(model)
    check_common(steps, num_samples)
    sigma_y = check_non_negative("sigma_y", sigma_y)
    zeta = check_non_negative("zeta", zeta)
    timesteps = uniform_timesteps(alphas.numel(), steps)
    abar = [float(alphas[t]) for t in timesteps]
    k = num_samples
    if kind == "encode_decode":
        if sigma_y > 0:
            raise ValueError(
                "sigma_y must be 0 for an encode/decode operator: its measurement is a noiseless code"
            )
        like = decoded_measurement(op, y)  # type: ignore[arg-type]
        residual: _Residual = _CodeResidual(op, y, like, k)  # type: ignore[arg-type]
    else:
        like = linear_measurement(op, y)  # type: ignore[arg-type]
        residual = _LinearResidual(op, like, k)  # type: ignore[arg-type]
    out_dtype = like.dtype
    wdt = working_dtype(like.dtype)
    batch = like.shape[0]
    kwargs = {key: repeat_rows(v, k, batch) for key, v in dict(model_kwargs or {}).items()}
    watch = FiniteWatch("the model", lambda i: f"step {i + 1} of {len(timesteps)} (timestep {timesteps[i]})")

    noise = normal_(torch.empty((batch * k, *op.shape), dtype=wdt, device=like.device), generator)
    x = noise.clone()  # x_T: pure noise
    bar = Progress(len(timesteps), f"DPS ({op.label})", progress)
    with bar:
        for i, t in enumerate(timesteps):
            bar.start()
            a = abar[i]
            a_n = abar[i + 1] if i + 1 < len(abar) else 1.0
            x_in = x.detach().requires_grad_(True)
            with torch.enable_grad():
                eps = predict_eps(model, x_in, t, grad=True, **kwargs)
                if not eps.requires_grad:
                    raise TypeError(
                        f"dps needs a prior differentiable in x_t, but {type(model).__name__} returned ε "
                        "without autograd (a prior that runs its network without it offers eps_with_grad, "
                        "see solvers.priors.predict_eps)"
                    )
                watch.update(i, eps.detach())
                x0 = (x_in - math.sqrt(1 - a) * eps) / math.sqrt(a)
                if clip_x0:
                    x0 = x0.clamp(-1.0, 1.0)
                g0 = residual.gradient(x0.detach())
                (grad,) = torch.autograd.grad(x0, x_in, grad_outputs=g0)
            x0 = x0.detach()
            if callback is not None:
                callback(i, t, x_in.detach().clone(), (x0 + 1.0) * 0.5)
            eps_hat = (x_in.detach() - math.sqrt(a) * x0) / math.sqrt(1 - a)
            fresh = ancestral_std(a, a_n) if a_n < 1.0 else 0.0
            x = renoise(x0, eps_hat, a_n, fresh, normal_(noise, generator) if fresh > 0 else None)
            x = x - zeta * grad
            bar.tick()
    watch.check()
    samples = ((x + 1.0) * 0.5).detach()
    if clip_x0:
        samples = samples.clamp(0.0, 1.0)
    samples = samples.view(batch, k, *op.shape)
    mean = samples.mean(dim=1) if k > 1 else samples[:, 0]
    mean, samples = mean.to(out_dtype), samples.to(out_dtype)
    if return_info:
        n = len(timesteps)
        return mean, SolveInfo(nfe=n, steps=n, samples=samples, extra={"timesteps": timesteps})
    return mean


def _unit_rows(r: Tensor) -> Tensor:
    """``r / ‖r‖`` per row (first axis), and 0 for a row whose norm is 0 (the guarded step)."""
    norm = r.flatten(1).norm(dim=1).view(-1, *([1] * (r.ndim - 1)))
    return torch.where(norm > 0, r / norm.clamp_min(torch.finfo(r.dtype).tiny), torch.zeros_like(r))


class _Residual:
    """The gradient ``g = ∇_{x̂0} ‖r(x̂0)‖`` of one call's measurement residual (model range)."""

    def gradient(self, x0: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class _LinearResidual(_Residual):
    """``r = y − H x̂0`` (in ``[0, 1]`` units: the direction is the model range's): ``g = −Hᵀ r/‖r‖``."""

    def __init__(self, op: opkit.LinearOperator, y: Tensor, k: int) -> None:
        self.op = op
        y = y.to(working_dtype(y.dtype))
        self.y = y.repeat_interleave(k, dim=0) if k > 1 else y

    def gradient(self, x0: Tensor) -> Tensor:
        r = self.y - self.op.forward((x0 + 1.0) * 0.5)
        return -self.op.adjoint(_unit_rows(r))


class _CodeResidual(_Residual):
    """``r = codes(y) − relaxed(x̂0)``: ``g`` by autograd through the pair's relaxation."""

    def __init__(self, op: opkit.EncodeDecodeOperator[Any], y: Any, dec_y: Tensor, k: int) -> None:
        probe = op.relaxed_codes(dec_y)
        if probe is None:
            raise TypeError(
                f"dps needs a differentiable relaxation of {op.label}'s encoder "
                f"(EncodeDecodeOperator.relaxed_codes); {type(op).__name__} has none"
            )
        codes = op.codes(y)
        if not isinstance(probe, Tensor) or probe.shape != codes.shape:
            raise ValueError(
                f"{op.label}.relaxed_codes returned {tuple(getattr(probe, 'shape', ()))}, not the shape "
                f"{tuple(codes.shape)} of its codes"
            )
        codes = codes.to(working_dtype(dec_y.dtype))
        check_finite("the codes of y", codes)
        self.op = op
        self.codes = codes.repeat_interleave(k, dim=0) if k > 1 else codes

    def gradient(self, x0: Tensor) -> Tensor:
        leaf = x0.detach().requires_grad_(True)
        with torch.enable_grad():
            relaxed = self.op.relaxed_codes((leaf + 1.0) * 0.5)
            assert relaxed is not None
            r = self.codes - relaxed.to(self.codes.dtype)
            (g,) = torch.autograd.grad(r, leaf, grad_outputs=_unit_rows(r.detach()))
        return g
