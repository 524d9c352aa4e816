r"""ΠGDM: pseudoinverse-guided diffusion (Song, Vahdat, Mardani & Kautz, ICLR 2023).

ΠGDM approximates the denoising posterior by a Gaussian around the denoiser's estimate,
:math:`p(x_0 \mid x_t) \approx \mathcal N(\hat x_0(x_t), r_t^2 I)`, so that the measurement
likelihood becomes Gaussian too,

.. math::

    p_t(y \mid x_t) \approx \mathcal N\big(H\hat x_0,\ r_t^2 H H^\top + \sigma^2 I\big),

and its score is a vector–Jacobian product through the denoiser,

.. math::

    \nabla_{x_t}\log p_t(y \mid x_t) \approx
    \Big(\frac{\partial \hat x_0}{\partial x_t}\Big)^{\!\top} g, \qquad
    g = H^\top\big(r_t^2 H H^\top + \sigma^2 I\big)^{-1}(y - H\hat x_0).

With the SVD :math:`H = U\Sigma V^\top` the inverse is diagonal,
:math:`g = V\,\frac{s^2}{r_t^2 s^2 + \sigma^2}\,(\bar y - V^\top \hat x_0)` on the measured
coordinates (:math:`\bar y = \Sigma^+ U^\top y`); noiseless, this is
:math:`g = H^\dagger(y - H\hat x_0)/r_t^2`, which needs only ``H`` and ``H†`` and so works for any
linear operator. For an encode/decode pair (JPEG, quantization) the paper replaces ``H†`` by the
decoder: :math:`g = (D(y) - D(E(\hat x_0)))/r_t^2` with :math:`E, D` = Encode, Decode.

Following the paper, :math:`r_t^2 = \sigma_t^2/(1 + \sigma_t^2) = 1 - \bar\alpha_t` (data of unit
variance; :math:`\sigma_t` the VE noise level). The guided clean-image estimate is Tweedie's
formula with the guided score (VE form, model range :math:`[-1, 1]`):

.. math::

    \hat x_0^{\,y} = \hat x_0 + \sigma_t^2 \Big(\frac{\partial \hat x_0}{\partial x_t}\Big)^{\!\top} g,

and the step is DDIM's (Song, Meng & Ermon) with that estimate and the matching noise
:math:`\hat\epsilon = (x_t - \sqrt{\bar\alpha_t}\,\hat x_0^{\,y})/\sqrt{1-\bar\alpha_t}`:

.. math::

    x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0^{\,y} + c_1 z + c_2 \hat\epsilon, \quad
    c_1 = \eta\sqrt{\tfrac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}
          \big(1-\tfrac{\bar\alpha_t}{\bar\alpha_{t'}}\big)},
    \quad c_2 = \sqrt{1-\bar\alpha_{t'}-c_1^2}.

(The paper's Algorithm 1 adds the guidance to the unguided DDIM step with the weight
:math:`\sqrt{\bar\alpha_t}`; the form above is the same guided score used consistently in the
estimate and the noise, which makes the sampler exact for a Gaussian prior of unit variance, where
the Gaussian approximation holds exactly.) With ``η = 1`` the step is DDPM's ancestral step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

import opkit
from opkit.params import check_non_negative, check_unit
from solvers.common import (
    Progress,
    SolveInfo,
    check_common,
    check_operator_kind,
    normal_,
    repeat_rows,
)
from solvers.common.finite import FiniteWatch, working_dtype
from solvers.common.measurements import decoded_measurement, linear_measurement, spectral_measurement
from solvers.common.memory import heap_reuse
from solvers.priors import ancestral_std, check_prior, predict_eps, renoise, uniform_timesteps

__all__ = ["PIGDM_ACCEPTS", "pigdm"]

#: Operator kinds ΠGDM takes: SVD operators (noisy or not), any linear operator (noiseless),
#: encode/decode pairs (noiseless).
PIGDM_ACCEPTS = ("svd", "linear", "encode_decode")


@heap_reuse()
def pigdm(
    op: opkit.Operator[Any],
    y: Any,
    model: Any,
    *,
    steps: int = 100,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    callback: Any = None,
    progress: bool | None = None,
    return_info: bool = False,
    sigma_y: float = 0.0,
    eta: float = 1.0,
    t_start: int | None = None,
    clip_x0: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
    calibrate: bool = True,
) -> Tensor | tuple[Tensor, SolveInfo]:
    r"""Restore images from measurements ``y = H(x)`` with pseudoinverse-guided diffusion (ΠGDM).

    See the module documentation for the update. Each step costs one model evaluation and one
    backward pass through the model (the vector–Jacobian product).

    Parameters
    ----------
    op : opkit.Operator
        An SVD operator (noisy or not), any other linear operator (noiseless: it uses ``H`` and
        ``H†``), or an encode/decode pair (it uses ``Encode`` and ``Decode``).
    y : torch.Tensor or measurement
        ``(B, ...)`` measurements.
    model : prior
        A diffusion prior as for :func:`solvers.ddrm`: ``alphas_cumprod`` and
        ``__call__(x_t, t) -> ε`` (VP, data in ``[-1, 1]``), differentiable in ``x_t``.
    steps : int
        Model evaluations, uniformly skipped over the prior's schedule (paper: 100).
    num_samples : int
        Samples per measurement, drawn as one batch and averaged.
    generator : torch.Generator, optional
        Source of all randomness; may live on another device than ``y``.
    callback : callable, optional
        ``callback(step, t, x_t, x0_pred)`` after every step: the timestep, the model's VP input
        and the guided estimate :math:`\hat x_0^{\,y}` mapped to ``[0, 1]``.
    progress : bool, optional
        Show a tqdm progress bar; by default only when stderr is a terminal.
    return_info : bool
        Also return a :class:`~solvers.common.SolveInfo` (with the individual samples).
    sigma_y : float
        Measurement noise in ``[0, 1]`` image units (SVD operators only).
    eta : float
        DDIM's η in ``[0, 1]``; 1 is the ancestral (DDPM) step.
    t_start : int, optional
        First timestep; ``None`` runs the whole schedule from pure noise, an integer starts from
        ``H†y`` (or ``Decode(y)``) plus noise of that level.
    clip_x0 : bool
        Clip the guided estimate to the data range in each step and the result to ``[0, 1]``.
    model_kwargs : mapping, optional
        Extra keyword arguments for every model call.
    calibrate : bool
        For an encode/decode pair, pass each sample and their mean through
        :meth:`opkit.EncodeDecodeOperator.calibrate` (JPEG: colours no paler than the decode's).
        ``False`` returns ΠGDM's own result.

    Returns
    -------
    torch.Tensor or (torch.Tensor, SolveInfo)
        The restored images ``(B, C, H, W)`` (the mean of the samples).

    Raises
    ------
    TypeError
        For an operator of another kind or a model that does not follow the prior protocol.
    ValueError
        For bad parameters, ``sigma_y > 0`` without an SVD, measurements that do not fit ``op``
        or are not finite, or a model that returns NaN or infinity.

    Examples
    --------
    >>> import opkit, torch
    >>> from solvers.oracles import OraclePrior
    >>> x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    >>> op = opkit.create("sr_block", shape=(3, 8, 8), factor=2)
    >>> out = pigdm(op, op(x), OraclePrior(x), steps=5)
    >>> bool(torch.allclose(out, x))
    True
    """
    kind = check_operator_kind("pigdm", op, PIGDM_ACCEPTS)
    alphas = check_prior(model)
    check_common(steps, num_samples)
    sigma_y = check_non_negative("sigma_y", sigma_y)
    eta = check_unit("eta", eta)
    if sigma_y > 0 and kind != "svd":
        raise ValueError(f"sigma_y > 0 needs an operator with an SVD; {op.label} is {kind.replace('_', '/')}")
    timesteps = uniform_timesteps(alphas.numel(), steps, t_start)
    abar = [float(alphas[t]) for t in timesteps]

    # The measurement, once: everything the guidance needs that does not depend on the iterate.
    if kind == "encode_decode":
        like = decoded_measurement(op, y)  # type: ignore[arg-type]
    else:
        like = linear_measurement(op, y)  # type: ignore[arg-type]
    out_dtype = like.dtype
    wdt = working_dtype(like.dtype)
    k = num_samples
    batch = like.shape[0]
    img_shape = (batch * k, *op.shape)
    guide = _Guide(op, kind, y, like.to(wdt), 2.0 * sigma_y, k)
    kwargs = {key: repeat_rows(v, k, batch) for key, v in dict(model_kwargs or {}).items()}
    watch = FiniteWatch("the model", lambda i: f"step {i + 1} of {len(timesteps)} (timestep {timesteps[i]})")

    # Start: pure noise for the whole schedule, else H†y (Decode(y)) plus noise of level t_start.
    noise = normal_(torch.empty(img_shape, dtype=wdt, device=like.device), generator)
    a0 = abar[0]
    if t_start is None:
        x = noise.clone()
    else:
        start = guide.back_projection()
        x = math.sqrt(a0) * start + math.sqrt(1 - a0) * noise
    x0g = x
    bar = Progress(len(timesteps), f"ΠGDM ({op.label})", progress)
    with bar:
        for i, t in enumerate(timesteps):
            bar.start()
            a = abar[i]
            a_n = abar[i + 1] if i + 1 < len(abar) else 1.0
            x_in = x.detach().requires_grad_(True)
            with torch.enable_grad():
                eps = predict_eps(model, x_in, t, **kwargs)
                watch.update(i, eps.detach())
                x0 = (x_in - math.sqrt(1 - a) * eps) / math.sqrt(a)
                r2 = 1.0 - a  # r_t² = σ_t²/(1 + σ_t²)
                g = guide.vector(x0.detach(), r2)
                (vjp,) = torch.autograd.grad(x0, x_in, grad_outputs=g)
            sig2 = (1 - a) / a  # VE σ_t²; ∂x̂0/∂x_VE = √ᾱ ∂x̂0/∂x_VP
            x0g = x0.detach() + sig2 * math.sqrt(a) * vjp
            if clip_x0:
                x0g = x0g.clamp(-1.0, 1.0)
            if callback is not None:
                callback(i, t, x_in.detach().clone(), (x0g + 1.0) * 0.5)
            if a_n < 1.0:
                eps_g = (x_in.detach() - math.sqrt(a) * x0g) / math.sqrt(1 - a)
                c1 = ancestral_std(a, a_n, eta)
                x = renoise(x0g, eps_g, a_n, c1, normal_(noise, generator) if c1 > 0 else None)
            else:
                x = x0g
            bar.tick()
    watch.check()
    samples = ((x0g + 1.0) * 0.5).detach()
    if clip_x0:
        samples = samples.clamp(0.0, 1.0)
    if kind == "encode_decode" and calibrate:  # what the code pins down (JPEG: the colours' strength)
        samples = op.calibrate(samples, like.to(samples.dtype).repeat_interleave(k, dim=0))
    samples = samples.view(batch, k, *op.shape)
    mean = samples.mean(dim=1) if k > 1 else samples[:, 0]
    if kind == "encode_decode" and calibrate and k > 1:  # averaging pales the calibrated samples
        mean = op.calibrate(mean, like.to(mean.dtype))
    mean, samples = mean.to(out_dtype), samples.to(out_dtype)
    if return_info:
        n = len(timesteps)
        return mean, SolveInfo(nfe=n, steps=n, samples=samples, extra={"timesteps": timesteps})
    return mean


class _Guide:
    """The guidance vector ``g`` of one call (model range), with its constants computed once."""

    def __init__(self, op: Any, kind: str, y: Any, like: Tensor, sig: float, k: int) -> None:
        self.op, self.kind, self.sig, self.k = op, kind, sig, k
        if kind == "svd":
            s = op.singulars_like(like)
            self.s2 = s.square()
            self.pos = (s > 0).to(like.dtype)
            # ȳ = Σ⁺Uᵀ(2y − H1) in the model range, repeated for the samples
            ybar = spectral_measurement(op, like)
            self.ybar = ybar.repeat_interleave(k, dim=0) if k > 1 else ybar
        elif kind == "linear":
            self.y = like.repeat_interleave(k, dim=0) if k > 1 else like
        else:
            self.dec_y = like.repeat_interleave(k, dim=0) if k > 1 else like

    def back_projection(self) -> Tensor:
        """``H†y`` (``Decode(y)``) in the model range, for a start at ``t_start``."""
        if self.kind == "svd":
            return self.op.V(self.ybar)
        if self.kind == "linear":
            return 2.0 * self.op.pinv(self.y) - 1.0
        return 2.0 * self.dec_y - 1.0

    def vector(self, x0: Tensor, r2: float) -> Tensor:
        """``g = Hᵀ(r² H Hᵀ + σ² I)⁻¹(y − H x̂0)`` for the estimate ``x0`` (model range)."""
        if self.kind == "svd":
            w = self.pos * self.s2 / (r2 * self.s2 + self.sig**2).clamp_min(torch.finfo(x0.dtype).tiny)
            return self.op.V(w * (self.ybar - self.op.Vt(x0)))
        x01 = (x0 + 1.0) * 0.5
        if self.kind == "linear":
            # H†(y_m − H x̂0) = 2 H†(y − H x̂01) in the model range
            return (2.0 / r2) * self.op.pinv(self.y - self.op.forward(x01))
        redec = self.op.decode(self.op.encode(x01.clamp(0.0, 1.0)))
        return (2.0 / r2) * (self.dec_y - redec)
