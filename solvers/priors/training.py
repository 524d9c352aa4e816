r"""Training an unconditional diffusion prior (DDPM, ε-prediction) for DDRM.

The network learns :math:`\epsilon_\theta(x_t, t)` for the variance-preserving forward process

.. math::

    x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon,
    \qquad x_0 \in [-1, 1],\ \epsilon \sim \mathcal N(0, I),\ t \sim \mathcal U\{0, \dots, T-1\},

with the loss :math:`\lVert \epsilon_\theta(x_t, t) - \epsilon \rVert^2` (Ho et al. 2020), the
1000-step linear-β schedule :math:`\beta_t \in [10^{-4}, 0.02]` that DDRM assumes, AdamW and an
exponential moving average of the weights (used for inference). Training data are random crops of
clean images mixed with freshly drawn dead-leaves images (:mod:`solvers.common.data`).

The output directory follows the diffusers pipeline layout that :func:`solvers.load_prior` reads:
``unet/`` (EMA weights, safetensors) and ``scheduler/``; ``training_state.*`` beside them hold the
raw weights, the optimizer, the step, the loss history and the random generators, so a run resumes
where it stopped and continues bit for bit.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from opkit.files import atomic_directory
from opkit.images import to_grey
from opkit.operators import per_sample
from solvers.common import randn
from solvers.common.data import dead_leaves, random_crops
from solvers.common.state import STATE_JSON, STATE_NAME, WEIGHTS_NAME, ema_update, load_state, save_state
from solvers.priors.schedules import BETA_END, BETA_START, linear_alphas_cumprod

__all__ = ["PRIOR_PRESETS", "build_prior_unet", "prior_loss", "sample_timesteps", "train_prior"]

#: UNet2DModel configurations by name (all fully convolutional except the attention blocks).
PRIOR_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "block_out_channels": (16, 32),
        "down_block_types": ("DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D"),
        "layers_per_block": 1,
        "norm_num_groups": 8,
    },
    "small": {
        "block_out_channels": (32, 64, 96, 128),
        "down_block_types": ("DownBlock2D",) * 4,
        "up_block_types": ("UpBlock2D",) * 4,
        "layers_per_block": 1,
        "norm_num_groups": 16,
    },
    "base": {
        "block_out_channels": (64, 128, 128, 256),
        "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
        "layers_per_block": 2,
        "norm_num_groups": 32,
    },
}

_STATE, _STATE_JSON = STATE_NAME, STATE_JSON
_RAW = "raw_unet.safetensors"


def build_prior_unet(preset: str = "small", *, sample_size: int = 64, seed: int = 0, **overrides: Any) -> Any:
    """A fresh ``diffusers.UNet2DModel`` ε-network (3 channels in and out).

    Parameters
    ----------
    preset : str
        A key of :data:`PRIOR_PRESETS`.
    sample_size : int
        Nominal training size (the network is fully convolutional and runs at any size divisible
        by ``2**(levels - 1)``).
    seed : int
        Seed of the initial weights.
    **overrides
        Replace preset entries (e.g. ``block_out_channels``).

    Returns
    -------
    diffusers.UNet2DModel
        The network.
    """
    from diffusers import UNet2DModel

    if preset not in PRIOR_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRIOR_PRESETS)}")
    cfg = {**PRIOR_PRESETS[preset], **overrides}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(sample_size=sample_size, in_channels=3, out_channels=3, **cfg)


def sample_timesteps(
    b: int, num_timesteps: int, generator: torch.Generator, focus: tuple[int, float] | None = None
) -> Tensor:
    r"""Training timesteps: uniform on ``[0, T)``, or a mixture that trains a range harder.

    With ``focus = (t_hi, p)`` each timestep is drawn uniformly from ``[0, t_hi]`` with
    probability ``p`` and uniformly from ``[0, T)`` otherwise, so the density on the low range
    (the one DDRM-JPEG and late-start runs use) is :math:`p/(t_\text{hi}+1) + (1-p)/T`.

    Parameters
    ----------
    b : int
        Batch size.
    num_timesteps : int
        ``T``.
    generator : torch.Generator
        Source of randomness (its device is used).
    focus : (int, float), optional
        ``(t_hi, p)`` with ``0 <= t_hi < T`` and ``0 <= p <= 1``.

    Returns
    -------
    torch.Tensor
        ``(b,)`` long tensor on the generator's device.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> t = sample_timesteps(1000, 1000, g, focus=(299, 1.0))
    >>> int(t.max()) <= 299
    True
    """
    dev = generator.device
    t = torch.randint(0, num_timesteps, (b,), generator=generator, device=dev)
    if focus is None:
        return t
    t_hi, p = focus
    if not (0 <= int(t_hi) < num_timesteps and 0.0 <= float(p) <= 1.0):
        raise ValueError(f"focus must be (t_hi, p), 0 <= t_hi < {num_timesteps}, 0 <= p <= 1; got {focus}")
    low = torch.randint(0, int(t_hi) + 1, (b,), generator=generator, device=dev)
    pick = torch.rand(b, generator=generator, device=dev) < float(p)
    return torch.where(pick, low, t)


def prior_loss(
    net: Any,
    x0: Tensor,
    alphas_cumprod: Tensor,
    generator: torch.Generator,
    focus: tuple[int, float] | None = None,
) -> Tensor:
    r"""The DDPM ε-loss of a batch of clean images ``x0`` in ``[0, 1]``.

    Parameters
    ----------
    net : diffusers.UNet2DModel
        ε-network.
    x0 : torch.Tensor
        ``(B, 3, H, W)`` clean images in ``[0, 1]`` (mapped to ``[-1, 1]`` here).
    alphas_cumprod : torch.Tensor
        :math:`\bar\alpha`, length ``T``, on ``x0``'s device.
    generator : torch.Generator
        Draws ``t`` and ``ε`` (on ``x0``'s device).
    focus : (int, float), optional
        Train the timesteps up to ``t_hi`` harder (see :func:`sample_timesteps`).

    Returns
    -------
    torch.Tensor
        Scalar mean squared error over all pixels.
    """
    b = x0.shape[0]
    m = 2.0 * x0 - 1.0
    t = sample_timesteps(b, alphas_cumprod.numel(), generator, focus)
    eps = randn(x0.shape, x0, generator)
    a = per_sample(alphas_cumprod[t], x0)
    x_t = a.sqrt() * m + (1 - a).sqrt() * eps
    pred = net(x_t, t, return_dict=False)[0]
    return (pred - eps).pow(2).mean()


def _save(
    folder: Path,
    raw: Any,
    ema: Any,
    opt: torch.optim.Optimizer,
    step: int,
    losses: list[float],
    gens: dict[str, torch.Generator],
    extra: dict[str, Any],
) -> None:
    from diffusers import DDPMScheduler

    # atomically: the whole run folder is replaced in one step, never half written
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(folder) as out:
        ema.save_pretrained(str(out / "unet"), safe_serialization=True)
        DDPMScheduler(
            num_train_timesteps=1000, beta_start=BETA_START, beta_end=BETA_END, beta_schedule="linear"
        ).save_pretrained(str(out / "scheduler"))
        save_file({k: v.detach().cpu().contiguous() for k, v in raw.state_dict().items()}, str(out / _RAW))
        save_state(out / _STATE, out / _STATE_JSON, opt, gens, {"step": step, "losses": losses, **extra})


def _load(
    out: Path, raw: Any, ema: Any, opt: torch.optim.Optimizer, gens: dict[str, torch.Generator]
) -> tuple[int, list[float], dict[str, Any]]:
    raw.load_state_dict(load_file(str(out / _RAW)))
    ema.load_state_dict(load_file(str(out / "unet" / WEIGHTS_NAME)))
    meta = load_state(out / _STATE, out / _STATE_JSON, opt, gens)
    return int(meta["step"]), [float(v) for v in meta["losses"]], meta


def train_prior(
    out_dir: str | Path,
    images: Sequence[Tensor],
    *,
    preset: str = "small",
    steps: int = 1000,
    batch_size: int = 16,
    crop_size: int = 64,
    lr: float = 2e-4,
    warmup: int = 200,
    ema_decay: float = 0.999,
    dead_leaves_fraction: float = 0.25,
    grey_fraction: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint_every: int = 250,
    resume: bool = True,
    progress: bool = True,
    max_seconds: float | None = None,
    init_from: str | Path | None = None,
    focus: tuple[int, float] | None = None,
) -> dict[str, Any]:
    """Train (or resume training) a DDPM prior and save it where :func:`solvers.load_prior` reads it.

    Parameters
    ----------
    out_dir : str or Path
        Output directory (pipeline layout, see the module docstring).
    images : sequence of torch.Tensor
        Clean training images ``(3, H, W)`` or ``(1, 3, H, W)`` in ``[0, 1]``, each at least
        ``crop_size``.
    preset : str
        Network preset (:data:`PRIOR_PRESETS`); ignored when resuming.
    steps : int
        Total optimisation steps (a resumed run continues up to this number).
    batch_size, crop_size : int
        Crops per step and their side.
    lr : float
        AdamW learning rate after a linear warm-up of ``warmup`` steps.
    warmup : int
        Warm-up steps.
    ema_decay : float
        Decay of the weight average (with the usual ``(1 + k)/(10 + k)`` ramp at the start).
    grey_fraction : float
        Share of the photograph crops turned grey (Rec. 601 luma in all three channels), so
        that the prior knows greyscale photographs and keeps them grey.
    dead_leaves_fraction : float
        Share of each batch drawn as dead-leaves images.
    seed : int
        Seeds the weights, the crops, the dead leaves, ``t`` and ``ε``.
    device : str or torch.device
        Where to train.
    checkpoint_every : int
        Save every this many steps (and at the end).
    resume : bool
        Continue from ``out_dir`` if it holds a checkpoint.
    progress : bool
        Show a progress bar with the running loss.
    max_seconds : float, optional
        Stop (after saving) once this much wall time has passed; rerun to continue.
    init_from : str or Path, optional
        Start a new run from the weights of a saved prior (a directory :func:`solvers.load_prior`
        reads, e.g. the bundled default) instead of a fresh network; ``preset`` is then ignored.
        A run that resumes from its own checkpoint ignores it.
    focus : (int, float), optional
        Train the low timesteps harder: ``(t_hi, p)`` as in :func:`sample_timesteps`.

    Returns
    -------
    dict
        ``{"step", "losses", "seconds", "parameters"}``.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be positive")
    for name, share in (("dead_leaves_fraction", dead_leaves_fraction), ("grey_fraction", grey_fraction)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {share!r}")
    out = Path(out_dir)
    dev = torch.device(device)
    resuming = resume and (out / _STATE_JSON).is_file()
    if resuming:
        from diffusers import UNet2DModel

        raw = UNet2DModel.from_pretrained(
            str(out / "unet"), use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False
        )
    elif init_from is not None:
        from diffusers import UNet2DModel

        src = Path(init_from)
        raw = UNet2DModel.from_pretrained(
            str(src / "unet" if (src / "unet").is_dir() else src),
            use_safetensors=True,
            local_files_only=True,
            low_cpu_mem_usage=False,
        )
    else:
        raw = build_prior_unet(preset, sample_size=crop_size, seed=seed)
    raw = raw.to(dev).train()
    ema = copy.deepcopy(raw).eval().requires_grad_(False)
    opt = torch.optim.AdamW(raw.parameters(), lr=lr, weight_decay=0.0)
    gens = {"cpu": torch.Generator().manual_seed(seed), "device": torch.Generator(dev).manual_seed(seed + 1)}
    start, losses, seconds = 0, [], 0.0
    if resuming:
        start, losses, meta = _load(out, raw, ema, opt, gens)
        seconds = float(meta.get("seconds", 0.0))
    alphas = linear_alphas_cumprod().to(dev, torch.float32)
    n_leaves = round(batch_size * dead_leaves_fraction)
    params, ema_params = list(raw.parameters()), list(ema.parameters())
    n_params = sum(p.numel() for p in params)
    t0 = time.perf_counter()
    bar = tqdm(total=steps, initial=start, disable=not progress, desc="prior", dynamic_ncols=True)
    step = start
    for step in range(start, steps):
        parts = []
        if batch_size - n_leaves > 0:
            crops = random_crops(images, crop_size, batch_size - n_leaves, gens["cpu"], flips=True)
            if grey_fraction > 0:
                grey = torch.rand(crops.shape[0], generator=gens["cpu"]) < grey_fraction
                luma = to_grey(crops).expand_as(crops)
                crops = torch.where(grey.view(-1, 1, 1, 1), luma, crops)
            parts.append(crops)
        if n_leaves:
            parts.append(dead_leaves(n_leaves, crop_size, generator=gens["cpu"]))
        x0 = torch.cat(parts).to(dev, torch.float32)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(1, warmup))
        loss = prior_loss(raw, x0, alphas, gens["device"], focus)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        ema_update(ema_params, params, decay)
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        elapsed = seconds + time.perf_counter() - t0
        done = step + 1
        if checkpoint_every and done % checkpoint_every == 0:
            _save(out, raw, ema, opt, done, losses, gens, {"seconds": elapsed, "preset": preset})
        if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
            break
    bar.close()
    done = min(step + 1, steps) if steps > start else start
    elapsed = seconds + time.perf_counter() - t0
    _save(out, raw, ema, opt, done, losses, gens, {"seconds": elapsed, "preset": preset})
    return {"step": done, "losses": losses, "seconds": elapsed, "parameters": n_params}
