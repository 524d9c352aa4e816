r"""DriftRec: blind restoration by a task-adapted conditional diffusion (Welker et al.).

The forward SDE (:mod:`solvers.sdes`) drifts a clean image toward its corrupted version ``y``
while adding noise; a conditional score model learns :math:`\nabla\log p_t(x_t\mid y)`
(:mod:`solvers.training`), and restoration runs the reverse process from
:math:`x_1 = y + \sigma_1 z` down to :math:`t_\varepsilon` (:mod:`solvers.samplers`). The
corruption operator is never needed at inference: the method is blind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, overload

import torch
from einops import reduce, repeat
from torch import Tensor

from solvers._finite import check_finite, working_dtype
from solvers.samplers import SAMPLERS, SamplerInfo, euler_heun, euler_maruyama, probability_flow
from solvers.score_models import ScoreModel
from solvers.sdes import DriftSDE, get_sde

__all__ = ["DEFAULT_DRIFTREC_DIR", "color_correct", "driftrec", "load_driftrec"]

#: Where the bundled default DriftRec JPEG model lives (``solvers/weights/driftrec``).
DEFAULT_DRIFTREC_DIR = Path(__file__).resolve().parent / "weights" / "driftrec"

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


def _resolve_sde(sde: str | DriftSDE, model: Any) -> DriftSDE:
    model_sde = getattr(model, "sde", None)
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


@overload
def driftrec(
    y: Tensor,
    model: ScoreFn,
    *,
    sde: str | DriftSDE = ...,
    sampler: str = ...,
    steps: int = ...,
    num_samples: int = ...,
    color_correction: bool = ...,
    generator: torch.Generator | None = ...,
    callback: Callable[[int, float, Tensor], None] | None = ...,
    tol: float = ...,
    rtol: float | None = ...,
    atol: float | None = ...,
    return_info: Literal[False] = ...,
) -> Tensor: ...
@overload
def driftrec(
    y: Tensor,
    model: ScoreFn,
    *,
    sde: str | DriftSDE = ...,
    sampler: str = ...,
    steps: int = ...,
    num_samples: int = ...,
    color_correction: bool = ...,
    generator: torch.Generator | None = ...,
    callback: Callable[[int, float, Tensor], None] | None = ...,
    tol: float = ...,
    rtol: float | None = ...,
    atol: float | None = ...,
    return_info: Literal[True],
) -> tuple[Tensor, SamplerInfo]: ...
def driftrec(
    y: Tensor,
    model: ScoreFn,
    *,
    sde: str | DriftSDE = "ouve",
    sampler: str = "euler_maruyama",
    steps: int = 100,
    num_samples: int = 1,
    color_correction: bool = True,
    generator: torch.Generator | None = None,
    callback: Callable[[int, float, Tensor], None] | None = None,
    tol: float = 1e-3,
    rtol: float | None = None,
    atol: float | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, SamplerInfo]:
    r"""Blind restoration of corrupted images ``y`` with a DriftRec score model.

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
    y : torch.Tensor
        Corrupted images ``(B, C, H, W)`` in ``[0, 1]``, finite; the output follows its device and
        dtype (float16 and bfloat16 are computed in float32).
    model : callable
        ``model(x_t, y, t)`` returning the score, ``t`` a float tensor ``(B,)``.
    sde : str or DriftSDE
        ``"ouve"``, ``"tsdve"``, ``"cosve"``, an SDE object, or ``"model"`` for the model's own
        ``sde`` attribute. A model that carries an SDE refuses a different one.
    sampler : str
        ``"euler_maruyama"`` (``steps`` NFE), ``"euler_heun"`` (``2 × steps`` NFE) or ``"ode"``
        (adaptive RK45 probability flow; NFE depends on the tolerance).
    steps : int
        Steps of the SDE samplers (paper: 100); ignored by ``"ode"``.
    num_samples : int
        Samples per image, drawn as one batch and averaged.
    color_correction : bool
        Shift each channel's mean to ``y``'s (paper, section V).
    generator : torch.Generator, optional
        Source of all randomness (on ``y``'s device).
    callback : callable, optional
        ``callback(i, t, x)`` after every step, ``x`` being the whole (repeated) batch.
    tol : float
        ODE tolerance used for both ``rtol`` and ``atol`` unless they are given.
    rtol, atol : float, optional
        ODE tolerances.
    return_info : bool
        Also return the :class:`~solvers.samplers.SamplerInfo` (NFE, steps, rejected steps).

    Returns
    -------
    torch.Tensor or (torch.Tensor, SamplerInfo)
        The restored images ``(B, C, H, W)``, and the statistics if asked.

    Raises
    ------
    ValueError
        For bad arguments, a ``y`` with NaN or infinity, or a model that returns NaN or infinity
        (the message names the evaluation).
    """
    if not isinstance(y, Tensor) or y.ndim != 4 or not y.is_floating_point():
        raise ValueError(f"y must be a floating (B, C, H, W) tensor, got {getattr(y, 'shape', type(y))}")
    check_finite("y", y)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not callable(model):
        raise ValueError("model must be callable as model(x_t, y, t)")
    the_sde = _resolve_sde(sde, model)
    if not the_sde.std(the_sde.t_eps) > 0:
        raise ValueError("the SDE's t_eps must give sigma(t_eps) > 0 for sampling")
    out_dtype = y.dtype
    y = y.to(working_dtype(y.dtype))  # half precision: compute in float32
    yy = repeat(y, "b c h w -> (b m) c h w", m=num_samples) if num_samples > 1 else y
    with torch.no_grad():
        x = the_sde.prior_sample(yy, generator)
        if sampler == "ode":
            r = tol if rtol is None else rtol
            a = tol if atol is None else atol
            out, info = probability_flow(model, the_sde, yy, x, rtol=r, atol=a, callback=callback)
        elif sampler == "euler_heun":
            out, info = euler_heun(model, the_sde, yy, x, steps=steps, generator=generator, callback=callback)
        else:
            out, info = euler_maruyama(
                model, the_sde, yy, x, steps=steps, generator=generator, callback=callback
            )
        if num_samples > 1:
            out = reduce(out, "(b m) c h w -> b c h w", "mean", m=num_samples)
        if color_correction:
            out = color_correct(out, y)
    out = out.to(out_dtype)
    return (out, info) if return_info else out


def load_driftrec(
    path: str | os.PathLike[str],
    *,
    ema: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> ScoreModel:
    """Load a DriftRec score model saved as a diffusers-style directory (safetensors only).

    Parameters
    ----------
    path : str or path-like
        A directory written by :meth:`~solvers.score_models.ScoreModel.save_pretrained` or by
        :func:`~solvers.training.train_driftrec`. ``"default"`` loads the JPEG model bundled with
        the package (:data:`DEFAULT_DRIFTREC_DIR`; see the model card in the documentation).
    ema : bool
        Load the EMA weights (default) rather than the raw training weights.
    device, dtype : optional
        Placement of the model.

    Returns
    -------
    ScoreModel
        The model in eval mode; its ``sde`` attribute is the SDE it was trained for.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a model directory.
    ValueError
        For ``"default"`` in an installation without the bundled model.
    """
    if isinstance(path, str) and path == "default":
        path = DEFAULT_DRIFTREC_DIR
        if not (path / "config.json").is_file():
            raise ValueError(
                "load_driftrec('default'): no default DriftRec model is bundled in this installation "
                f"(expected {path}); train one with solvers.training.train_driftrec "
                "(or scripts/train_default_driftrec.py) and pass its directory"
            )
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"DriftRec model directory not found: {p}")
    return ScoreModel.from_pretrained(p, ema=ema, device=device, dtype=dtype)
