r"""Training DriftRec score models by conditional denoising score matching.

For a pair :math:`(x_0, y)` the forward SDE's perturbation kernel is
:math:`\mathcal N(\mu_t, \sigma_t^2 I)` (:mod:`solvers.sdes`), and the paper's σ-weighted loss
(eq. 15) is

.. math::

    \mathcal L(\theta) = \mathbb E_{t\sim\mathcal U(t_\varepsilon, 1),\,(x_0,y),\,z}
        \big\lVert \sigma_t\, s_\theta(x_t, y, t) + z \big\rVert^2,
    \qquad x_t = \mu_t(x_0, y) + \sigma_t z,

reported here as a mean over pixels (so an untrained network that outputs zero scores 1).

Pairs come from clean images and **any** opkit operator (never a plugin import):

* an :class:`~opkit.EncodeDecodeOperator` (JPEG, quantisation, ...):
  :math:`y = \mathrm{Decode}(\mathrm{Encode}(x_0))`;
* a :class:`~opkit.LinearOperator` whose output has the image's shape (denoise, blur, inpaint, ...):
  :math:`y = H x_0 + \sigma_y n`;
* a registered name, created through :func:`opkit.create` for the crop shape; with
  ``quality_range=(lo, hi)`` a quality is drawn per image and passed as the ``quality``
  parameter: uniformly (the paper draws JPEG qualities uniformly at every step), or with
  ``quality_draw="log"`` log-uniformly, :math:`q = \lfloor e^{u} \rfloor` with
  :math:`u \sim \mathcal U(\ln lo, \ln(hi + 1))`, which weighs the low qualities, where the
  artifacts are strong, more (from 1 to 100: half of the draws at 1..9, a quarter at 10..31).

Optimisation follows the paper: AdamW (learning rate 1e-4), an exponential moving average of the
weights with decay 0.999 (used for inference), random crops. Checkpoints are diffusers-style
directories (:mod:`solvers.sdes.score_models`) that also hold the raw weights, the optimizer state, the
step, the loss history and the random generators, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

import opkit
from opkit.files import atomic_directory
from opkit.operators import per_sample
from opkit.params import check_positive_int
from solvers.common import randn
from solvers.common.data import as_image_list, random_crops
from solvers.common.state import STATE_JSON, STATE_NAME, ema_update, load_state, read_safetensors, save_state
from solvers.sdes.forward import DriftSDE, get_sde
from solvers.sdes.score_models import RAW_WEIGHTS_NAME, WEIGHTS_NAME, ScoreModel

__all__ = ["QUALITY_DRAWS", "PairMaker", "TrainResult", "dsm_loss", "random_crops", "train_driftrec"]


#: How :class:`PairMaker` draws a quality per image in ``quality_range``.
QUALITY_DRAWS = ("uniform", "log")


class PairMaker:
    """Make corrupted images ``y`` from clean ones with any opkit operator.

    Parameters
    ----------
    operator : opkit.Operator or str
        An operator built for the crop shape, or a registered name (created through
        :func:`opkit.create` for each image shape met, with ``params``).
    sigma_y : float
        Standard deviation of the Gaussian noise added after a linear operator (image units).
    quality_range : (int, int), optional
        Draw ``quality`` in ``[lo, hi]`` per image (needs a registered name).
    quality_draw : str
        ``"uniform"`` or ``"log"`` (log-uniform, see the module docstring).
    params : dict, optional
        Further factory parameters for a registered name.

    Notes
    -----
    An :class:`~opkit.EncodeDecodeOperator` gives ``y = pinv(forward(x0))`` (decode of encode);
    a linear operator must map images to images of the same shape.
    """

    def __init__(
        self,
        operator: opkit.Operator[Any] | str,
        *,
        sigma_y: float = 0.0,
        quality_range: tuple[int, int] | None = None,
        quality_draw: str = "uniform",
        params: dict[str, Any] | None = None,
    ) -> None:
        if not (isinstance(sigma_y, int | float) and sigma_y >= 0):
            raise ValueError(f"sigma_y must be a non-negative number, got {sigma_y!r}")
        if quality_range is not None:
            lo, hi = quality_range
            if not (isinstance(lo, int) and isinstance(hi, int) and lo <= hi):
                raise ValueError(f"quality_range must be two integers lo <= hi, got {quality_range!r}")
            if not (isinstance(lo, int) and lo >= 1):
                raise ValueError(f"quality_range must start at 1 or more, got {quality_range!r}")
            if not isinstance(operator, str):
                raise ValueError("quality_range needs the operator as a registered name (e.g. 'jpeg')")
        if quality_draw not in QUALITY_DRAWS:
            raise ValueError(f"quality_draw must be one of {QUALITY_DRAWS}, got {quality_draw!r}")
        if not isinstance(operator, str | opkit.Operator):
            raise ValueError(f"operator must be an opkit.Operator or a registered name, got {operator!r}")
        self.operator = operator
        self.sigma_y = float(sigma_y)
        self.quality_range = quality_range
        self.quality_draw = quality_draw
        self.params = dict(params or {})
        self._cache: dict[tuple[Any, ...], opkit.Operator[Any]] = {}

    @property
    def operator_name(self) -> str | None:
        """The registered name of the operator (``None`` for an operator made by hand)."""
        if isinstance(self.operator, str):
            return self.operator
        name = getattr(self.operator, "name", None)
        return name if isinstance(name, str) and name else None

    def _op(self, shape: tuple[int, int, int], quality: int | None) -> opkit.Operator[Any]:
        if isinstance(self.operator, opkit.Operator):
            if tuple(self.operator.shape) != tuple(shape):
                raise ValueError(
                    f"operator is built for shape {self.operator.shape}, crops have shape {shape}"
                )
            return self.operator
        key = (shape, quality)
        op = self._cache.get(key)
        if op is None:
            extra = {} if quality is None else {"quality": quality}
            op = opkit.create(self.operator, shape=shape, **self.params, **extra)
            self._cache[key] = op
        return op

    def _apply(self, op: opkit.Operator[Any], x0: Tensor, generator: torch.Generator | None) -> Tensor:
        if isinstance(op, opkit.EncodeDecodeOperator):
            y = op.decode(op(x0))
        elif isinstance(op, opkit.LinearOperator):
            if tuple(op.out_shape) != tuple(op.shape):
                raise ValueError(
                    f"DriftRec needs image-shaped measurements; {op!r} maps to {tuple(op.out_shape)}"
                )
            y = op(x0)
        else:
            raise ValueError(f"unsupported operator type {type(op).__name__}")
        if self.sigma_y > 0:
            y = y + self.sigma_y * randn(y.shape, y, generator)
        return y.to(dtype=x0.dtype)

    def __call__(
        self,
        x0: Tensor,
        *,
        generator: torch.Generator | None = None,
        quality_generator: torch.Generator | None = None,
    ) -> Tensor:
        """Corrupt a batch ``x0`` (``(B, C, H, W)`` in ``[0, 1]``).

        Parameters
        ----------
        x0 : torch.Tensor
            Clean images.
        generator : torch.Generator, optional
            Source of the measurement noise (on ``x0``'s device).
        quality_generator : torch.Generator, optional
            CPU generator for the per-image qualities.

        Returns
        -------
        torch.Tensor
            ``y``, like ``x0``.
        """
        shape = tuple(x0.shape[1:])
        if self.quality_range is None:
            return self._apply(self._op(shape, None), x0, generator)  # type: ignore[arg-type]
        lo, hi = self.quality_range
        if self.quality_draw == "uniform":
            q = torch.randint(lo, hi + 1, (x0.shape[0],), generator=quality_generator)
        else:
            u = torch.rand((x0.shape[0],), generator=quality_generator, dtype=torch.float64)
            logs = math.log(lo) + u * (math.log(hi + 1) - math.log(lo))
            q = logs.exp().floor().long().clamp(lo, hi)
        y = torch.empty_like(x0)
        for qq in torch.unique(q).tolist():  # one call per distinct quality, not per pixel
            sel = (q == qq).nonzero().flatten().to(x0.device)
            y[sel] = self._apply(self._op(shape, int(qq)), x0[sel], generator)  # type: ignore[arg-type]
        return y


def dsm_loss(
    model: torch.nn.Module, sde: DriftSDE, x0: Tensor, y: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """σ-weighted denoising score matching loss :math:`\\lVert\\sigma_t s_\\theta(x_t, y, t) + z\\rVert^2`.

    Parameters
    ----------
    model : torch.nn.Module
        Score model ``model(x_t, y, t)``.
    sde : DriftSDE
        The forward SDE (``t ~ U(t_eps, 1)``).
    x0, y : torch.Tensor
        Clean and corrupted batches ``(B, C, H, W)``.
    generator : torch.Generator, optional
        Source of ``t`` and ``z`` (on ``x0``'s device).

    Returns
    -------
    torch.Tensor
        The scalar loss (mean over batch and pixels), each sample weighted by
        ``model.loss_weight(t)`` where the model has one (:class:`ScoreModel` does).
    """
    b = x0.shape[0]
    u = torch.rand((b,), generator=generator, device=x0.device, dtype=x0.dtype)
    t = sde.t_eps + (1.0 - sde.t_eps) * u
    x_t, z = sde.marginal_sample(x0, y, t, generator)
    sigma = per_sample(sde.std(t), x0)
    err = (sigma * model(x_t, y, t) + z).pow(2)
    weight = getattr(model, "loss_weight", None)
    if weight is None:
        return err.mean()
    return (err * per_sample(weight(t).to(err.dtype), err)).mean()


@dataclass
class TrainResult:
    """Outcome of :func:`train_driftrec`.

    Attributes
    ----------
    model : ScoreModel
        The EMA model (eval mode): use this one for sampling.
    raw : ScoreModel
        The raw trained model.
    losses : list of float
        Loss of every step since the start (resumed runs included).
    step : int
        Steps done.
    """

    model: ScoreModel
    raw: ScoreModel
    losses: list[float] = field(default_factory=list)
    step: int = 0


def _save_checkpoint(
    path: Path,
    raw: ScoreModel,
    ema: ScoreModel,
    opt: torch.optim.Optimizer,
    step: int,
    losses: list[float],
    gens: dict[str, torch.Generator],
) -> None:
    # atomically: the whole checkpoint folder is replaced in one step, never half written
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(path) as tmp:
        ema.write_files(tmp, raw_state=raw.unet.state_dict())
        save_state(tmp / STATE_NAME, tmp / STATE_JSON, opt, gens, {"step": step, "losses": losses})


def _load_checkpoint(
    path: Path, raw: ScoreModel, ema: ScoreModel, opt: torch.optim.Optimizer, gens: dict[str, torch.Generator]
) -> tuple[int, list[float]]:
    raw.unet.load_state_dict(read_safetensors(path / RAW_WEIGHTS_NAME))
    ema.unet.load_state_dict(read_safetensors(path / WEIGHTS_NAME))
    meta = load_state(path / STATE_NAME, path / STATE_JSON, opt, gens)
    return int(meta["step"]), [float(v) for v in meta["losses"]]


def train_driftrec(
    images: Tensor | Sequence[Tensor],
    operator: opkit.Operator[Any] | str | PairMaker,
    *,
    model: ScoreModel | None = None,
    sde: DriftSDE | str = "ouve",
    size: str = "tiny",
    steps: int = 1000,
    batch_size: int = 8,
    crop_size: int | tuple[int, int] = 64,
    lr: float = 1e-4,
    weight_decay: float = 1e-2,
    ema_decay: float = 0.999,
    sigma_y: float = 0.0,
    quality_range: tuple[int, int] | None = None,
    quality_draw: str = "uniform",
    operator_params: dict[str, Any] | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a conditional score model on pairs made from clean images and an operator.

    Parameters
    ----------
    images : torch.Tensor or sequence of torch.Tensor
        Clean images in ``[0, 1]``: ``(N, C, H, W)`` or a list of ``(C, H, W)`` of any sizes.
    operator : opkit.Operator, str or PairMaker
        The corruption (see :class:`PairMaker`); e.g. ``"jpeg"`` with ``quality_range=(1, 100)``.
    model : ScoreModel, optional
        Model to train (its ``sde`` is used); by default a fresh ``size`` preset. Its
        ``trained_on`` becomes the operator's registered name (:attr:`PairMaker.operator_name`),
        which the saved model records, and its tuned ``settings`` are dropped (they were chosen
        for other weights).
    sde : DriftSDE or str
        Forward SDE of a fresh model.
    size : str
        Preset of a fresh model (``"tiny"``, ``"small"``, ``"paper"``).
    steps : int
        Total optimisation steps (a resumed run continues up to this number).
    batch_size : int
        Crops per step.
    crop_size : int or (int, int)
        Crop size.
    lr, weight_decay : float
        AdamW parameters (paper: learning rate 1e-4).
    ema_decay : float
        Decay of the weight moving average (paper: 0.999).
    sigma_y : float
        Noise added after a linear operator.
    quality_range : (int, int), optional
        Per-image quality for a registered name.
    quality_draw : str
        How the quality is drawn: ``"uniform"`` or ``"log"`` (see :class:`PairMaker`).
    operator_params : dict, optional
        Extra factory parameters for a registered name.
    seed : int
        Seeds the fresh model, the crops, the qualities, ``t`` and ``z``.
    device : torch.device or str, optional
        Where to train (default: the model's device, else CPU).
    checkpoint_dir : path, optional
        Directory of the checkpoint (written every ``checkpoint_every`` steps and at the end).
    checkpoint_every : int
        Checkpoint period in steps (0: only at the end).
    resume : bool
        Continue from ``checkpoint_dir`` if it holds a checkpoint.
    progress : bool
        Show a tqdm progress bar with the running loss.

    Returns
    -------
    TrainResult
        EMA model, raw model, loss history and step count.
    """
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir")
    ims = as_image_list(images)
    if model is None:
        model = ScoreModel.from_preset(size, get_sde(sde), seed=seed)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(dev).train()
    the_sde = model.sde
    maker = (
        operator
        if isinstance(operator, PairMaker)
        else PairMaker(
            operator,
            sigma_y=sigma_y,
            quality_range=quality_range,
            quality_draw=quality_draw,
            params=operator_params,
        )
    )
    model.trained_on = maker.operator_name  # what the model restores from now on
    model.settings = {}  # sampler settings tuned for earlier weights no longer apply
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    gens = {"cpu": torch.Generator().manual_seed(seed), "device": torch.Generator(dev).manual_seed(seed + 1)}
    start: int = 0
    losses: list[float] = []
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume and ckpt is not None and (ckpt / STATE_JSON).is_file():
        start, losses = _load_checkpoint(ckpt, model, ema, opt, gens)
        model.to(dev)
        ema.to(dev)
    bar = tqdm(total=steps, initial=start, disable=not progress, desc="driftrec", dynamic_ncols=True)
    ema_params = list(ema.parameters())
    params = list(model.parameters())
    for step in range(start, steps):
        x0 = random_crops(ims, crop_size, batch_size, gens["cpu"]).to(dev)
        with torch.no_grad():
            y = maker(x0, generator=gens["device"], quality_generator=gens["cpu"])
        loss = dsm_loss(model, the_sde, x0, y, gens["device"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema_params, params, ema_decay)
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if ckpt is not None and checkpoint_every and (step + 1) % checkpoint_every == 0:
            _save_checkpoint(ckpt, model, ema, opt, step + 1, losses, gens)
    bar.close()
    if ckpt is not None:
        _save_checkpoint(ckpt, model, ema, opt, steps, losses, gens)
    model.eval()
    return TrainResult(model=ema, raw=model, losses=losses, step=max(steps, start))
