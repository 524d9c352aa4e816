r"""DDRM: denoising diffusion restoration for any operator with an SVD or an encode/decode pair.

Two update rules, chosen by the operator's type:

**Linear operators** (:class:`opkit.SVDOperator`, ``H = U Σ Vᵀ``) use the spectral DDRM of
Kawar et al. (2022), eqs. 7–8, in the variance-exploding (VE) form. With images mapped to the
model range (:math:`x \mapsto 2x - 1`), measurement noise :math:`\sigma = 2\sigma_y` there, the
spectral coordinates :math:`\bar x = V^\top x`, the spectral measurement
:math:`\bar y = \Sigma^\dagger U^\top y` and the denoiser's prediction
:math:`\bar x_\theta = V^\top \hat x_0(x_{t+1})`, one step from noise level :math:`\sigma_{t+1}`
to :math:`\sigma_t` draws, for every coordinate :math:`i` independently,

.. math::

    \bar x_t^{(i)} \sim \begin{cases}
    \mathcal N\big(\bar x_\theta^{(i)} + \sqrt{1-\eta^2}\,\sigma_t
        \frac{\bar x_{t+1}^{(i)} - \bar x_\theta^{(i)}}{\sigma_{t+1}},\ \eta^2\sigma_t^2\big)
        & s_i = 0, \\
    \mathcal N\big(\bar x_\theta^{(i)} + \sqrt{1-\eta^2}\,\sigma_t
        \frac{\bar y^{(i)} - \bar x_\theta^{(i)}}{\sigma / s_i},\ \eta^2\sigma_t^2\big)
        & \sigma_t < \sigma / s_i, \\
    \mathcal N\big((1-\eta_b)\bar x_\theta^{(i)} + \eta_b \bar y^{(i)},\
        \sigma_t^2 - \eta_b^2\sigma^2 / s_i^2\big) & \sigma_t \ge \sigma / s_i,
    \end{cases}

and the start (eq. 7) is :math:`\mathcal N(\bar y^{(i)}, \sigma_T^2 - \sigma^2/s_i^2)` on measured
coordinates and :math:`\mathcal N(0, \sigma_T^2)` on the null space. A VP model sees
:math:`x^\text{VP}_t = \sqrt{\bar\alpha_t}\, x_t` with :math:`\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}`
(paper, appendix B); the last update goes to :math:`\sigma = 0`.

**Encode/decode operators** (:class:`opkit.EncodeDecodeOperator`: JPEG, quantization, any
third-party pair) use the update of Kawar, Song, Ermon & Elad (2022), in the VP form:

.. math::

    x'_t &= f - \operatorname{Decode}(\operatorname{Encode}(f)) + \operatorname{Decode}(y),
    \qquad f = \hat x_0(x_{t+1}), \\
    x_t &= \sqrt{\bar\alpha_t}\big(\eta_b x'_t + (1-\eta_b) f\big)
        + \sqrt{1-\bar\alpha_t}\big(\eta\,\epsilon_t + (1-\eta)\,\epsilon_\theta\big),

started at :math:`t = 300` from :math:`\sqrt{\bar\alpha_t}\operatorname{Decode}(y) +
\sqrt{1-\bar\alpha_t}\,\epsilon`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

import opkit
from opkit.params import check_non_negative, check_unit
from solvers.common import Progress, SolveInfo, check_common, repeat_rows
from solvers.common import normal_ as _normal_
from solvers.common.finite import FiniteWatch, working_dtype
from solvers.common.measurements import decoded_measurement, linear_measurement, spectral_measurement
from solvers.common.memory import heap_reuse
from solvers.priors import check_prior, predict_eps, uniform_timesteps

__all__ = ["DDRM_DEFAULTS", "ddrm", "ddrm_settings"]

#: Paper defaults per operator kind: ``(eta, eta_b, t_start)``; ``t_start=None`` is the full schedule.
DDRM_DEFAULTS: dict[str, tuple[float, float, int | None]] = {
    "svd": (0.85, 1.0, None),
    "encode_decode": (1.0, 0.4, 300),
}

Callback = Callable[[int, int, Tensor, Tensor], Any]


def ddrm_settings(model: Any, op: opkit.Operator[Any]) -> dict[str, Any]:
    """DDRM's settings for a prior and an operator: the paper's defaults, then the prior's own.

    The defaults of :data:`DDRM_DEFAULTS` for the operator's kind; then what the prior ships
    for the operator's registered name in ``prior.settings`` (``ddrm_settings.json`` of a model
    folder, tuned on validation photographs; :func:`solvers.load_prior`). DDRM's registry entry
    carries this function, so callers such as the command line need not know DDRM.

    Parameters
    ----------
    model : prior or None
        The prior (``None`` before it is loaded: the defaults alone).
    op : opkit.Operator
        The operator.

    Returns
    -------
    dict
        Keywords of :func:`ddrm` (``eta``, ``eta_b``, ``t_start``, and any of ``steps``,
        ``num_samples`` the prior ships).
    """
    kind = "encode_decode" if isinstance(op, opkit.EncodeDecodeOperator) else "svd"
    eta, eta_b, t_start = DDRM_DEFAULTS[kind]
    out: dict[str, Any] = {"eta": eta, "eta_b": eta_b, "t_start": t_start}
    tuned = getattr(model, "settings", None) or {}
    out.update(tuned.get(op.name, {}) if op.name else {})
    return out


@heap_reuse()
def ddrm(
    op: opkit.Operator[Any],
    y: Any,
    model: Any,
    *,
    steps: int = 20,
    eta: float | None = None,
    eta_b: float | None = None,
    sigma_y: float = 0.0,
    t_start: int | None = None,
    num_samples: int = 1,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    callback: Callback | None = None,
    progress: bool | None = None,
    return_info: bool = False,
    return_samples: bool = False,
    clip_x0: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
    calibrate: bool = True,
) -> Tensor | tuple[Tensor, Any]:
    r"""Restore images from measurements ``y = H(x)`` with a diffusion prior (DDRM).

    Dispatches on the operator's type: an :class:`opkit.SVDOperator` runs the spectral DDRM
    of the paper (all three cases of eq. 8, noisy or not), an :class:`opkit.EncodeDecodeOperator`
    runs DDRM-JPEG (``f − Decode(Encode(f)) + Decode(y)`` and its η/η_b mix). See the module
    documentation for the update rules.

    Defaults follow the papers and depend on the kind (``None`` selects them):

    ==================  ======  ======  ==============================================
    kind                η       η_b     start
    ==================  ======  ======  ==============================================
    SVD (linear)        0.85    1.0     full schedule, :math:`t = 950` for 20 steps
    encode/decode       1.0     0.4     :math:`t = 300`, from ``Decode(y)`` plus noise
    ==================  ======  ======  ==============================================

    with 20 model calls uniformly skipped over the prior's schedule (the papers use the
    1000-step linear β schedule of DDPM, :func:`solvers.priors.linear_alphas_cumprod`).

    Parameters
    ----------
    op : opkit.SVDOperator or opkit.EncodeDecodeOperator
        The degradation, built for images of shape ``(C, H, W)``.
    y : torch.Tensor or measurement
        ``(B, ...)`` measurements: ``H x + σ_y z`` for a linear operator (a batch of different
        measurements is fine), ``Encode(x)`` for an encode/decode pair (checked with the
        operator's ``check_measurement``: codes made with other settings are refused).
        float16 and bfloat16 measurements are computed in float32; the result has their dtype.
    model : prior
        Any object with ``alphas_cumprod`` and ``__call__(x_t, t, **kwargs) -> ε`` for VP inputs
        with data in ``[-1, 1]`` (see :mod:`solvers.priors`); ``t`` is passed as a ``(B,)`` long
        tensor.
    steps : int
        Number of model calls (timesteps, see :func:`solvers.priors.uniform_timesteps`).
    eta : float, optional
        η in ``[0, 1]``: the share of fresh noise in each step.
    eta_b : float, optional
        η_b in ``[0, 1]``: the weight of the measurement in each step.
    sigma_y : float
        Standard deviation of the measurement noise in ``[0, 1]`` image units (linear operators
        only; an encode/decode measurement is noiseless, ``sigma_y > 0`` is an error there).
    t_start : int, optional
        First timestep. ``None`` runs the kind's default; an integer starts an SDEdit-style
        partial run from ``H† y`` plus noise of that level (eq. 7 for a linear operator,
        ``Decode(y)`` plus noise for an encode/decode pair).
    num_samples : int
        Samples drawn per measurement, as one batch of ``B · num_samples``, and averaged.
    generator : torch.Generator or sequence of torch.Generator, optional
        Source of all the randomness (reproducible runs); may live on another device than ``y``.
        A sequence of ``B`` generators, one per measurement, draws the noise of measurement
        ``b`` from generator ``b`` only: each restoration is then the one ``b`` alone would get
        with its generator, whatever the batch it is restored in.
    callback : callable, optional
        ``callback(i, t, x_t, x0_pred)`` after every model call ``i = 0, …, steps-1`` at timestep
        ``t``: ``x_t`` is the model's VP input (model range) and ``x0_pred`` the denoised
        prediction mapped to ``[0, 1]``, both of batch ``B · num_samples`` (the samples of
        measurement ``b`` in rows ``b·num_samples … (b+1)·num_samples − 1``).
    progress : bool, optional
        Show a tqdm progress bar with the time per step; by default only when stderr is a
        terminal.
    return_info : bool
        Also return a :class:`~solvers.common.SolveInfo` (model evaluations, steps, and the
        individual samples in its ``samples``).
    return_samples : bool
        Also return the individual samples (the older form of ``return_info``).
    clip_x0 : bool
        Clip the denoised prediction to the data range ``[-1, 1]`` (DDPM practice).
    model_kwargs : mapping, optional
        Extra keyword arguments for every model call, e.g. ``{"class_labels": labels}``; a
        tensor whose first axis is the batch ``B`` is repeated for the samples.
    calibrate : bool
        For an encode/decode pair, pass each sample and their mean through
        :meth:`opkit.EncodeDecodeOperator.calibrate` (JPEG: colours no paler than the decode's).
        ``False`` returns DDRM's own result (with an oracle prior, exactly the truth).

    Returns
    -------
    torch.Tensor or tuple
        The restored images ``(B, C, H, W)`` in ``[0, 1]`` (the mean of the samples); with
        ``return_info`` also the :class:`~solvers.common.SolveInfo`, else with
        ``return_samples`` also the samples ``(B, num_samples, C, H, W)``.

    Raises
    ------
    TypeError
        For an operator that is neither an SVD operator nor an encode/decode pair, or a model
        that does not follow the prior protocol.
    ValueError
        For measurements that do not fit the operator, contain NaN or infinity, or bad
        parameters (the message names them); for a model that returns NaN or infinity (the
        message names the step).

    Notes
    -----
    Per step the linear solver applies ``V`` once (to form the model input from the spectral
    iterate) and ``Vᵀ`` once (to the prediction); ``Σ⁺Uᵀy`` and everything else constant is
    computed once per call. The paper assumes :math:`\sigma_T \ge \sigma/s_i` for every
    :math:`s_i > 0`; coordinates violating it at the start (tiny singular values with noise, or a
    low ``t_start``) start from the case-2 rule of eq. 8 with a zero prediction.

    Examples
    --------
    >>> import opkit, torch
    >>> from solvers.oracles import OraclePrior
    >>> x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    >>> op = opkit.create("denoise", shape=(3, 8, 8))
    >>> out = ddrm(op, op(x), OraclePrior(x), steps=5)
    >>> bool(torch.allclose(out, x))
    True
    """
    if isinstance(op, opkit.SVDOperator):
        kind = "svd"
    elif isinstance(op, opkit.EncodeDecodeOperator):
        kind = "encode_decode"
    else:
        raise TypeError(
            f"ddrm needs an opkit.SVDOperator (linear, with its SVD) or an opkit.EncodeDecodeOperator; "
            f"got {type(op).__name__}. Linear operators without an SVD (e.g. compositions A @ B) are "
            "not supported"
        )
    d_eta, d_eta_b, d_start = DDRM_DEFAULTS[kind]
    eta = d_eta if eta is None else check_unit("eta", eta)
    eta_b = d_eta_b if eta_b is None else check_unit("eta_b", eta_b)
    sigma_y = check_non_negative("sigma_y", sigma_y)
    alphas = check_prior(model)
    check_common(steps, num_samples)
    if t_start is None:
        t_start = d_start
    timesteps = uniform_timesteps(alphas.numel(), steps, t_start)  # validates steps and t_start
    abar = [float(alphas[t]) for t in timesteps]
    run = _Run(
        model=model,
        timesteps=timesteps,
        abar=abar,
        eta=eta,
        eta_b=eta_b,
        generator=generator,
        callback=callback,
        progress=progress,
        clip_x0=clip_x0,
        num_samples=num_samples,
        model_kwargs=dict(model_kwargs or {}),
        calibrate=calibrate,
    )
    with torch.no_grad():
        if kind == "svd":
            samples = run.svd(op, y, 2.0 * sigma_y)  # type: ignore[arg-type]
        else:
            if sigma_y > 0:
                raise ValueError(
                    "sigma_y must be 0 for an encode/decode operator: its measurement is a noiseless code"
                )
            samples = run.encode_decode(op, y)  # type: ignore[arg-type]
    b = samples.shape[0] // num_samples
    samples = samples.view(b, num_samples, *samples.shape[1:])
    if num_samples > 1:
        mean = samples.mean(dim=1)
        if kind != "svd" and calibrate:  # averaging pales what each sample's calibration set right
            mean = op.calibrate(mean, run.decoded)  # type: ignore[union-attr]
    else:
        mean = samples[:, 0].clone() if (return_samples or return_info) else samples[:, 0]
    if mean.dtype != run.out_dtype:  # half-precision measurements: computed in float32
        mean, samples = mean.to(run.out_dtype), samples.to(run.out_dtype)
    if return_info:
        n = len(timesteps)
        return mean, SolveInfo(nfe=n, steps=n, samples=samples, extra={"timesteps": timesteps})
    return (mean, samples) if return_samples else mean


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _inner_expand(c: Tensor, shape: torch.Size, inner: int = 256) -> Tensor:
    """``c`` (broadcastable to ``shape``) materialised along its innermost broadcast dimensions.

    Dimensions are expanded from the right until the contiguous inner block holds at least
    ``inner`` elements (or ``c`` covers ``shape``). The per-coordinate coefficients then stay
    small (``sr_block``'s ``(f, 1, f)`` becomes ``(f, W/f, f)``) while every elementwise update
    of the batch runs along a long contiguous inner loop instead of re-broadcasting a handful of
    values (measured 4x slower for ``sr_block``). The values are unchanged.
    """
    dims = [1] * (len(shape) - c.ndim) + list(c.shape)
    block = 1
    for d in range(len(shape) - 1, -1, -1):
        if block >= inner:
            break
        dims[d] = shape[d]
        block *= shape[d]
    return c.reshape([1] * (len(shape) - c.ndim) + list(c.shape)).expand(dims).contiguous()


class _Run:
    """One DDRM run: schedule, options and the two update loops."""

    def __init__(
        self,
        *,
        model: Any,
        timesteps: list[int],
        abar: list[float],
        eta: float,
        eta_b: float,
        generator: torch.Generator | Sequence[torch.Generator] | None,
        callback: Callback | None,
        progress: bool | None,
        clip_x0: bool,
        num_samples: int,
        model_kwargs: dict[str, Any],
        calibrate: bool,
    ) -> None:
        self.model = model
        self.timesteps = timesteps
        self.abar = abar
        self.eta, self.eta_b = eta, eta_b
        self.generator = generator
        self.callback = callback
        self.progress = progress
        self.clip_x0 = clip_x0
        self.k = num_samples
        self.model_kwargs = model_kwargs
        self.calibrate = calibrate
        self.out_dtype = torch.float32
        self.decoded = torch.empty(0)  # Decode(y) once per image, set by encode_decode
        n = len(timesteps)
        self.watch = FiniteWatch("the model", lambda i: f"step {i + 1} of {n} (timestep {timesteps[i]})")

    # -- shared pieces ------------------------------------------------------------------------
    def _bar(self, desc: str) -> Progress:
        return Progress(len(self.timesteps), desc, self.progress)

    def _eps(self, i: int, x_in: Tensor, t: int, kwargs: dict[str, Any]) -> Tensor:
        """The model's ε for step ``i`` (timestep ``t``), checked for shape and finiteness."""
        eps = predict_eps(self.model, x_in, t, **kwargs)
        self.watch.update(i, eps)
        return eps

    def _kwargs(self, batch: int) -> dict[str, Any]:
        return {k: repeat_rows(v, self.k, batch) for k, v in self.model_kwargs.items()}

    def _sigma(self, i: int) -> float:
        """VE noise level (model range) of the i-th timestep; 0 after the last one."""
        if i >= len(self.abar):
            return 0.0
        a = self.abar[i]
        return math.sqrt((1.0 - a) / a)

    # -- linear operators ---------------------------------------------------------------------
    def svd(self, op: opkit.SVDOperator, y: Tensor, sig: float) -> Tensor:
        """Spectral DDRM; ``sig`` is the measurement noise in the model range (2 σ_y)."""
        y = linear_measurement(op, y)
        self.out_dtype = y.dtype
        y = y.to(working_dtype(y.dtype))  # half precision: compute in float32
        k, eta, eta_b = self.k, self.eta, self.eta_b
        batch = y.shape[0]

        # Constants of the call: ȳ in the model range, ȳ_m = Σ⁺Uᵀ(2y − H1) = 2 s⁺ Uᵀy − [s>0] Vᵀ1.
        s = op.singulars_like(y)
        s_pinv = op.singulars_pinv_like(y)
        ybar = spectral_measurement(op, y)
        ybar = ybar.repeat_interleave(k, dim=0) if k > 1 else ybar.contiguous()
        # per-coordinate coefficients with a long contiguous inner extent (see _inner_expand)
        s, s_pinv = _inner_expand(s, ybar.shape[1:]), _inner_expand(s_pinv, ybar.shape[1:])
        pos = s > 0
        noise_lvl = sig * s_pinv  # σ/s_i on measured coordinates, 0 elsewhere
        pos_f = pos.to(s.dtype)
        null_f = 1.0 - pos_f
        one = torch.ones_like(s)
        has_null = bool((~pos).any())
        kwargs = self._kwargs(batch)

        # Start (eq. 7) at σ_T.
        sig_t = self._sigma(0)
        # contiguous buffers: normal_ and elementwise kernels are much slower on strided ones
        noise = _normal_(torch.empty(ybar.shape, dtype=y.dtype, device=y.device), self.generator)
        case2 = pos & (sig_t >= noise_lvl)
        case3 = pos & ~case2
        a_z = torch.where(pos, (sig_t**2 - noise_lvl.square()).clamp_min(0).sqrt(), torch.full_like(s, sig_t))
        a_y = case2.to(y.dtype)
        if bool(case3.any()):
            k3 = math.sqrt(1 - eta**2) * sig_t / torch.where(case3, noise_lvl, torch.ones_like(noise_lvl))
            a_z = torch.where(case3, torch.full_like(s, eta * sig_t), a_z)
            a_y = torch.where(case3, k3, a_y)
        xbar = torch.addcmul(ybar * a_y, noise, a_z)
        # Work buffers, reused every step: the model input, two predictions (ping-pong, so the
        # new iterate never overwrites the previous one it is computed from) and the noise.
        img_shape = (ybar.shape[0], *op.shape)
        buf_in = torch.empty(img_shape, dtype=y.dtype, device=y.device)
        buf_x0 = (torch.empty_like(buf_in), torch.empty_like(buf_in))

        bar = self._bar(f"DDRM ({op.label})")
        try:
            for i, t in enumerate(self.timesteps):
                bar.start()
                sqrt_a = math.sqrt(self.abar[i])
                sig_t, sig_n = self._sigma(i), self._sigma(i + 1)
                x = op.V(xbar)  # VE iterate, model range
                x_in = torch.mul(x, sqrt_a, out=buf_in)
                eps = self._eps(i, x_in, t, kwargs)
                x0 = torch.add(x, eps, alpha=-sig_t, out=buf_x0[i % 2])  # x0 = x − σ_t ε (Tweedie, VE)
                if self.clip_x0:
                    x0.clamp_(-1.0, 1.0)
                if self.callback is not None:
                    self.callback(i, t, x_in.clone(), (x0 + 1.0) * 0.5)
                x0bar = op.Vt(x0)

                # Per-coordinate coefficients of x̄' = a_p x̄θ + a_x x̄ + a_y ȳ + a_z z (s-shaped).
                c = math.sqrt(1 - eta**2) * sig_n / sig_t
                if sig > 0:
                    case2 = pos & (sig_n >= noise_lvl)
                    case3 = (pos & ~case2).to(s.dtype)
                    case2 = case2.to(s.dtype)
                    k3 = case3 * (math.sqrt(1 - eta**2) * sig_n) / torch.where(case3 > 0, noise_lvl, one)
                    a_y = case2 * eta_b + k3
                    var2 = (sig_n**2 - (eta_b * noise_lvl).square()).clamp_min(0)
                    a_z = case2 * var2.sqrt() + (1.0 - case2) * (eta * sig_n)
                else:
                    a_y = pos_f * eta_b
                    a_z = pos_f * sig_n + null_f * (eta * sig_n)
                a_p = pos_f * (1.0 - a_y) + null_f * (1.0 - c)

                new = x0bar.mul_(a_p).addcmul_(ybar, a_y)
                if has_null:
                    new.addcmul_(xbar, null_f * c)
                if sig_n > 0:
                    new.addcmul_(_normal_(noise, self.generator), a_z)
                xbar = new
                bar.tick()
        finally:
            bar.close()
        self.watch.check()
        out = op.V(xbar)
        return out.add_(1.0).mul_(0.5).clamp_(0.0, 1.0)

    # -- encode/decode pairs ------------------------------------------------------------------
    def encode_decode(self, op: opkit.EncodeDecodeOperator[Any], y: Any) -> Tensor:
        """DDRM-JPEG: the pseudo-inverse replaced by the decoder."""
        dec_y = decoded_measurement(op, y)
        self.out_dtype = dec_y.dtype
        dec_y = dec_y.to(working_dtype(dec_y.dtype))  # half precision: compute in float32
        k, eta, eta_b = self.k, self.eta, self.eta_b
        batch = dec_y.shape[0]
        dec_y = dec_y.repeat_interleave(k, dim=0) if k > 1 else dec_y.contiguous()
        kwargs = self._kwargs(batch)

        a0 = self.abar[0]
        noise = _normal_(torch.empty(dec_y.shape, dtype=dec_y.dtype, device=dec_y.device), self.generator)
        x_in = torch.add(2.0 * dec_y - 1.0, noise, alpha=math.sqrt((1 - a0) / a0)).mul_(math.sqrt(a0))
        buf_f, buf_f01 = torch.empty_like(noise), torch.empty_like(noise)
        bar = self._bar(f"DDRM-JPEG ({op.label})")
        mix = dec_y
        try:
            for i, t in enumerate(self.timesteps):
                bar.start()
                a = self.abar[i]
                a_n = self.abar[i + 1] if i + 1 < len(self.abar) else 1.0
                eps = self._eps(i, x_in, t, kwargs)
                f = torch.add(x_in, eps, alpha=-math.sqrt(1 - a), out=buf_f).mul_(1.0 / math.sqrt(a))
                if self.clip_x0:
                    f.clamp_(-1.0, 1.0)
                    if eta < 1.0:  # ε_θ consistent with the clipped prediction (paper's definition)
                        eps = (x_in - math.sqrt(a) * f) / math.sqrt(1 - a)
                f01 = torch.add(f, 1.0, out=buf_f01).mul_(0.5)
                if self.callback is not None:
                    self.callback(i, t, x_in.clone(), f01.clone())
                redec = op.decode(op.encode(f01))
                # η_b x' + (1 − η_b) f with x' = f − 2 Dec(Enc(f01)) + 2 Dec(y)  (model range)
                mix = f.add_(dec_y, alpha=2.0 * eta_b).add_(redec, alpha=-2.0 * eta_b)
                if a_n < 1.0:
                    _normal_(noise, self.generator)
                    if eta < 1.0:
                        noise.mul_(eta).add_(eps, alpha=1.0 - eta)
                    x_in = torch.mul(mix, math.sqrt(a_n), out=x_in).add_(noise, alpha=math.sqrt(1 - a_n))
                bar.tick()
        finally:
            bar.close()
        self.watch.check()
        # The statistics the code pins down but the prior biases (JPEG: the colours' strength).
        self.decoded = dec_y[::k]
        out = mix.add_(1.0).mul_(0.5).clamp_(0.0, 1.0)
        return op.calibrate(out, dec_y) if self.calibrate else out
