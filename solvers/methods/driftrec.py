r"""DriftRec: blind restoration by a task-adapted conditional diffusion (Welker et al.).

The forward SDE (:mod:`solvers.sdes`) drifts a clean image toward its corrupted version ``y``
while adding noise; a conditional score model learns :math:`\nabla\log p_t(x_t\mid y)`
(:mod:`solvers.sdes.training`), and restoration runs the reverse process from
:math:`x_1 = y + \sigma_1 z` down to :math:`t_\varepsilon` (:mod:`solvers.sdes.samplers`). The
corruption operator is never needed at inference: the method is blind.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from einops import reduce, repeat
from torch import Tensor

import opkit
from opkit.solver import KINDS
from solvers.common import Progress, callback_arity, check_batch, check_common, check_operator_kind
from solvers.common.finite import check_finite, working_dtype
from solvers.common.memory import heap_reuse
from solvers.sdes.forward import DriftSDE, get_sde
from solvers.sdes.samplers import (
    SAMPLERS,
    SamplerInfo,
    check_grid_power,
    check_stable_grid,
    probability_flow,
)

__all__ = ["color_correct", "driftrec", "driftrec_fits", "driftrec_settings"]

ScoreFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def color_correct(x: Tensor, y: Tensor) -> Tensor:
    """Shift each channel of ``x`` so its spatial mean equals that of ``y``.

    .. math:: x_c \\leftarrow x_c - \\overline{x_c} + \\overline{y_c}

    Parameters
    ----------
    x, y : torch.Tensor
        Restored and corrupted images ``(B, C, H, W)``.

    Returns
    -------
    torch.Tensor
        The corrected ``x``.
    """
    return x - x.mean(dim=(-2, -1), keepdim=True) + y.mean(dim=(-2, -1), keepdim=True)


def _resolve_sde(sde: str | DriftSDE | None, model: Any) -> DriftSDE:
    model_sde = getattr(model, "sde", None)
    if sde is None:
        return model_sde if isinstance(model_sde, DriftSDE) else get_sde("ouve")
    if isinstance(sde, str) and sde.lower() == "model":
        if not isinstance(model_sde, DriftSDE):
            raise ValueError("sde='model' needs a model with an `sde` attribute")
        return model_sde
    resolved = get_sde(sde)
    if isinstance(model_sde, DriftSDE) and model_sde != resolved:
        raise ValueError(
            f"the model was trained for {model_sde!r} but sde={resolved!r} was requested; pass "
            f"sde='model' (or the model's SDE)"
        )
    return resolved


class _ScoreCache:
    """The score model, counted, remembering its last evaluation.

    The contract's callback wants the clean-image estimate at the state a step reached; that
    needs the score there, which the next step evaluates anyway: asking for it twice costs one
    evaluation.
    """

    def __init__(self, model: ScoreFn) -> None:
        self.model, self.calls = model, 0
        self._key: tuple[Tensor, float] | None = None
        self._val: Tensor | None = None

    def __call__(self, x: Tensor, y: Tensor, t: Tensor) -> Tensor:
        t0 = float(t.reshape(-1)[0])
        if self._key is not None and self._key[0] is x and self._key[1] == t0 and self._val is not None:
            return self._val
        out = self.model(x, y, t)
        self.calls += 1
        self._key, self._val = (x, t0), out
        return out


def _degraded_image(op: opkit.Operator[Any], y: Any) -> Tensor:
    """The image DriftRec starts from: ``Decode(y)`` for an encode/decode pair; for a linear
    operator ``y`` itself if it is an image of ``op``'s shape (denoising, inpainting, blur), else
    ``H†y`` (e.g. super-resolution)."""
    coded = isinstance(op, opkit.EncodeDecodeOperator)
    if not coded and isinstance(y, Tensor) and y.ndim == 4 and tuple(y.shape[1:]) == tuple(op.shape):
        return y
    try:
        op.check_measurement(y)
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"y does not fit {op.label}: {exc}") from None
    image = op.decode(y) if coded else op.pinv(y)
    if not isinstance(image, Tensor) or tuple(image.shape[1:]) != tuple(op.shape):
        raise ValueError(f"y does not fit {op.label}: it gives an image of shape {_shape(image)}")
    return image


def _shape(v: Any) -> Any:
    return tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__


def driftrec_fits(model: Any, op: Any) -> str:
    """Why a DriftRec ``model`` cannot restore ``op``, or ``""`` (:attr:`opkit.SolverEntry.fits`).

    A blind model restores the degradation its training pairs showed it. A model that records
    it (``model.trained_on``, :class:`~solvers.sdes.score_models.ScoreModel`) fits the operators
    of that registered name only, whatever their parameters (every JPEG quality); a model or an
    operator without a name fits everything.

    Parameters
    ----------
    model : object
        The score model.
    op : opkit.Operator
        The operator.

    Returns
    -------
    str
        ``"its model is trained on jpeg only"``, or ``""``.
    """
    trained = getattr(model, "trained_on", None)
    name = getattr(op, "name", None)
    if not trained or not name or name == trained:
        return ""
    return f"its model is trained on {trained} only"


def driftrec_settings(model: Any, op: Any) -> dict[str, Any]:
    """The keywords a DriftRec model ships for ``op`` (:attr:`opkit.SolverEntry.settings`).

    What ``model.settings`` holds for the operator's registered name (``driftrec.json``'s
    ``"settings"``, tuned on validation photographs; :class:`~solvers.sdes.score_models.ScoreModel`),
    else nothing: the defaults of :func:`driftrec`'s signature.

    Parameters
    ----------
    model : object or None
        The score model (``None`` before it is loaded).
    op : opkit.Operator
        The operator.

    Returns
    -------
    dict
        Keywords of :func:`driftrec`, e.g. ``{"grid_power": 0.5}``.
    """
    tuned = getattr(model, "settings", None) or {}
    name = getattr(op, "name", None)
    return dict(tuned.get(name, {})) if name else {}


@heap_reuse()
def driftrec(
    op: Any = None,
    y: Any = None,
    model: Any = None,
    *,
    steps: int = 100,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    callback: Callable[..., Any] | None = None,
    progress: bool | None = None,
    return_info: bool = False,
    sde: str | DriftSDE | None = None,
    sampler: str = "euler_maruyama",
    grid_power: float = 1.0,
    color_correction: bool = True,
    tol: float = 1e-3,
    rtol: float | None = None,
    atol: float | None = None,
) -> Tensor | tuple[Tensor, SamplerInfo]:
    r"""Blind restoration of corrupted images with a DriftRec score model.

    Called like every solver, ``driftrec(op, y, model)`` (:class:`opkit.solver.Solver`), or in
    the older blind form ``driftrec(y, model)`` with the degraded images themselves. With an
    operator, the degraded image is ``y`` when it is an image of ``op``'s shape, else
    ``Decode(y)`` for an encode/decode pair and ``H†y`` for a linear operator; the operator is
    used for nothing else (the method is blind).

    Draws :math:`x_1 = y + \sigma_1 z` and integrates the reverse process to :math:`t_\varepsilon`
    with the chosen sampler; the SDE samplers' last step is noise-free, so the output is the mean
    at :math:`t_\varepsilon`. With ``num_samples = M`` the batch is repeated ``M`` times, sampled
    as one batch and averaged:

    .. math:: \hat x = \frac1M \sum_{m=1}^M x^{(m)}_{t_\varepsilon}, \qquad
              \hat x_c \leftarrow \hat x_c - \overline{\hat x_c} + \overline{y_c}
              \ \text{(colour correction, per channel)}.

    The result is not clipped to ``[0, 1]``.

    Parameters
    ----------
    op : opkit.Operator or torch.Tensor
        The degradation; or, in the blind form, the corrupted images ``y``.
    y : measurement or callable
        Its measurement (in the blind form: the model).
    model : callable
        ``model(x_t, y, t)`` returning the score, ``t`` a float tensor ``(B,)``.
    steps : int
        Steps of the SDE samplers (paper: 100); ignored by ``"ode"``.
    num_samples : int
        Samples per image, drawn as one batch and averaged.
    generator : torch.Generator, optional
        Source of all randomness; may live on another device than ``y``.
    callback : callable, optional
        ``callback(step, t, x_t, x0_pred)`` after every step: the time reached, the state there
        (the whole repeated batch) and the clean-image estimate from the score there,
        :math:`\hat x_0 = (x_t + \sigma_t^2 s - (1 - e^{-\Phi(t)}) y) / e^{-\Phi(t)}` (Tweedie's
        formula for the perturbation kernel). A callback of three arguments gets the older
        ``callback(i, t, x)``.
    progress : bool, optional
        Show a tqdm progress bar; by default only when stderr is a terminal.
    return_info : bool
        Also return the :class:`~solvers.sdes.samplers.SamplerInfo` (NFE, steps, rejected steps).
    sde : str or DriftSDE, optional
        ``"ouve"``, ``"tsdve"``, ``"cosve"``, an SDE object, or ``"model"`` for the model's own
        ``sde`` attribute. A model that carries an SDE refuses a different one. By default the
        model's own SDE, or OUVE for a model without one.
    sampler : str
        ``"euler_maruyama"`` (``steps`` NFE), ``"euler_heun"`` (``2 × steps`` NFE) or ``"ode"``
        (adaptive RK45 probability flow; NFE depends on the tolerance).
    grid_power : float
        Where the SDE samplers' steps fall: :math:`t_i = t_\varepsilon + (1 - t_\varepsilon)
        (1 - i/N)^p` (:func:`~solvers.sdes.samplers.time_grid`); 1 is the paper's uniform grid,
        smaller values put more steps near :math:`t = 1`. Ignored by ``"ode"``.
    color_correction : bool
        Shift each channel's mean to ``y``'s (paper, section V).
    tol : float
        ODE tolerance used for both ``rtol`` and ``atol`` unless they are given.
    rtol, atol : float, optional
        ODE tolerances.

    Returns
    -------
    torch.Tensor or (torch.Tensor, SamplerInfo)
        The restored images ``(B, C, H, W)``, and the statistics if asked.

    Raises
    ------
    TypeError
        For an ``op`` that is not an operator, or a model that is not callable.
    ValueError
        For bad arguments, a ``y`` with NaN or infinity, or a model that returns NaN or infinity
        (the message names the evaluation), or a ``grid_power`` whose grid has an unstable
        step at this many steps (the message names the fewest stable steps).

    Warns
    -----
    UserWarning
        When the model records the operator it was trained on and ``op`` is another one
        (:func:`driftrec_fits`): the result is unlikely to be a restoration.
    """
    if isinstance(op, Tensor):  # the blind form driftrec(y, model)
        if model is not None:
            raise TypeError("driftrec(y, model) takes two arguments; with three, the first is the operator")
        op, y, model = None, op, y
    if op is None:  # driftrec(y, model) or driftrec(y=..., model=...)
        image = y
    else:
        check_operator_kind("driftrec", op, KINDS)
        image = _degraded_image(op, y)
    y = image
    if not isinstance(y, Tensor) or y.ndim != 4 or not y.is_floating_point():
        raise ValueError(f"y must be a floating (B, C, H, W) tensor, got {getattr(y, 'shape', type(y))}")
    check_batch(y.shape[0])
    check_finite("y", y)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}")
    check_common(steps, num_samples)
    grid_power = check_grid_power(grid_power)
    if not callable(model):
        raise TypeError(f"model must be callable as model(x_t, y, t), got {type(model).__name__}")
    misfit = driftrec_fits(model, op) if op is not None else ""
    if misfit:
        warnings.warn(
            f"driftrec on {op.name}: {misfit}; a blind model restores the degradation it learned",
            stacklevel=2,
        )
    the_sde = _resolve_sde(sde, model)
    if not the_sde.std(the_sde.t_eps) > 0:
        raise ValueError("the SDE's t_eps must give sigma(t_eps) > 0 for sampling")
    if sampler != "ode":
        check_stable_grid(the_sde, steps, grid_power)  # before any work; the samplers check too
    out_dtype = y.dtype
    y = y.to(working_dtype(y.dtype))  # half precision: compute in float32
    yy = repeat(y, "b c h w -> (b m) c h w", m=num_samples) if num_samples > 1 else y
    score = _ScoreCache(model)
    bar = Progress(steps if sampler != "ode" else 0, "DriftRec", progress)
    if bar.bar is not None and sampler == "ode":
        bar.bar.total = None
    new_style = callback is not None and callback_arity(callback) >= 4

    def on_step(i: int, t: float, x: Tensor) -> None:
        if callback is not None:
            if new_style:
                tt = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
                s = score(x, yy, tt)
                w = the_sde.mean_weight(t)
                x0 = (x + the_sde.std(t) ** 2 * s - (1.0 - w) * yy) / w
                callback(i, t, x, x0)
            else:
                callback(i, t, x)
        bar.tick()

    with torch.no_grad(), bar:
        x = the_sde.prior_sample(yy, generator)
        if sampler == "ode":
            r = tol if rtol is None else rtol
            a = tol if atol is None else atol
            out, info = probability_flow(score, the_sde, yy, x, rtol=r, atol=a, callback=on_step)
        else:  # the fixed-step samplers
            out, info = SAMPLERS[sampler](
                score,
                the_sde,
                yy,
                x,
                steps=steps,
                generator=generator,
                callback=on_step,
                grid_power=grid_power,
            )
        info.nfe = score.calls
        if num_samples > 1:
            out = reduce(out, "(b m) c h w -> b c h w", "mean", m=num_samples)
        if color_correction:
            out = color_correct(out, y)
    out = out.to(out_dtype)
    return (out, info) if return_info else out
