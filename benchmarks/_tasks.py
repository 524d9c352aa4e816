"""The restoration tasks the benchmarks and the tuning script share, and their scores.

Each task degrades a clean image and names its baseline (what a user has without a restoration)
and the operator whose tuned settings the bundled prior ships (``ddrm_settings.json``):

==============  =============================================================  ==================
task            degradation                                                    baseline
==============  =============================================================  ==================
``jpeg5/10/30`` JPEG at quality 5, 10 or 30 (4:2:0, libjpeg's standard tables)  libjpeg's decode
``sr4``         4× block averaging, noise σ_y = 0.05                            bicubic of ``y``
``deblur``      Gaussian blur σ = 2 px, noise σ_y = 0.02                        the blurred image
``colorize``    the channel mean                                                the grey image
``inpaint``     half the pixels missing at random and a central box of side/4   ``H†y``
``motion61``    61×61 motion blur (intensity 0.5, circular), σ_y = 0.05          Wiener, oracle λ
``gauss61``     61×61 Gaussian blur (σ = 3 px, circular), σ_y = 0.05             Wiener, oracle λ
==============  =============================================================  ==================

The degradations are those of the gallery's examples (``examples/``); ``motion61`` and
``gauss61`` are the deblurring problems of DPS, DiffPIR and DAPS (:mod:`_deconv`), whose baseline
is Wiener deconvolution at its best λ for each image; their kernels and σ_y are read from the
presets of ``opkit eval --task`` (:data:`opkit_cli.tasks.PRESETS`). :func:`preset_problem` makes
any of those presets (``sr4``, ``gauss_deblur``, ``motion_deblur``, ``box_inpaint``,
``random_inpaint``, ``colorize``, ``jpeg10``, ``cs25``), with the baseline ``H†y`` (a linear
operator) or libjpeg's decode, so the benchmarks and the command line share one definition of the
field's tasks; :func:`make_problem` takes the preset names that are not in :data:`TASKS` (a name
in both, ``sr4`` say, is this module's task: 4× block averaging, the key of the tuned settings).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

import opkit
from opkit.metrics import bef, psnr, psnr_b, ssim
from opkit_cli.tasks import PRESETS, degrade

from _deconv import SIGMA_Y, deblur_problem  # isort: skip  (a sibling script module)

TASKS = ("jpeg5", "jpeg10", "jpeg30", "sr4", "deblur", "colorize", "inpaint", "motion61", "gauss61")
#: The registered operator behind each task (the key of the prior's tuned settings).
OPERATOR = {
    "jpeg5": "jpeg",
    "jpeg10": "jpeg",
    "jpeg30": "jpeg",
    "sr4": "sr_block",
    "deblur": "blur",
    "colorize": "colorize",
    "inpaint": "inpaint",
    "motion61": "conv2d",
    "gauss61": "conv2d",
}
BASELINE = {
    "jpeg5": "JPEG decode",
    "jpeg10": "JPEG decode",
    "jpeg30": "JPEG decode",
    "sr4": "bicubic",
    "deblur": "blurred input",
    "colorize": "grey input",
    "inpaint": "H†y",
    "motion61": "Wiener (oracle λ)",
    "gauss61": "Wiener (oracle λ)",
}


class Problem(NamedTuple):
    """One degraded image: the operator, the measurement, the baseline image and σ_y."""

    op: Any
    y: Any
    baseline: Tensor
    sigma_y: float


def centre_crop(x: Tensor, size: int) -> Tensor:
    """The central ``size × size`` window (or the largest multiple of 16 that fits)."""
    h, w = x.shape[-2:]
    s = min(size, h - h % 16, w - w % 16)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def inpaint_mask(h: int, w: int, seed: int = 0) -> Tensor:
    """``(h, w)`` bool, True = kept: half the pixels missing at random, and a central box."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(h, w, generator=g) >= 0.5
    bh, bw = h // 4, w // 4
    mask[(h - bh) // 2 : (h - bh) // 2 + bh, (w - bw) // 2 : (w - bw) // 2 + bw] = False
    return mask


def make_problem(task: str, x: Tensor, g: torch.Generator) -> Problem:
    """Degrade the clean ``x`` ``(1, C, H, W)`` for ``task``; the noise comes from ``g``."""
    shape = tuple(x.shape[1:])
    if task in PRESETS and task not in TASKS:
        return preset_problem(task, x, g)
    if task.startswith("jpeg"):
        op = opkit.create("jpeg", shape=shape, quality=int(task[4:]))
        y = op(x)
        return Problem(op, y, op.decode(y, mode="libjpeg"), 0.0)
    if task == "sr4":
        op = opkit.create("sr_block", shape=shape, factor=4)
        clean = op(x)
        y = clean + 0.05 * torch.randn(clean.shape, generator=g, dtype=x.dtype, device=x.device)
        base = torch.nn.functional.interpolate(y, size=shape[1:], mode="bicubic", align_corners=False)
        return Problem(op, y, base, 0.05)
    if task == "deblur":
        op = opkit.create("blur", shape=shape, kernel="gaussian", sigma=2.0)
        y = op(x) + 0.02 * torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)
        return Problem(op, y, y, 0.02)
    if task == "colorize":
        op = opkit.create("colorize", shape=shape)
        y = op(x)
        return Problem(op, y, y.expand(-1, 3, -1, -1), 0.0)
    if task == "inpaint":
        op = opkit.create("inpaint", shape=shape, mask=inpaint_mask(*shape[1:]))
        y = op(x)
        return Problem(op, y, op.pinv(y), 0.0)
    if task in ("motion61", "gauss61"):
        pb = deblur_problem(task, x, g)
        return Problem(pb["op"], pb["y"], pb["baseline"], SIGMA_Y)
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def preset_problem(task: str, x: Tensor, g: torch.Generator, seed: int = 0) -> Problem:
    """The named preset ``task`` of ``opkit eval --task`` (:mod:`opkit_cli.tasks`) on ``x``."""
    op, y, _ = degrade(task, x, seed, g)
    base = op.display(y) if isinstance(op, opkit.EncodeDecodeOperator) else op.pinv(y)
    return Problem(op, y, base, PRESETS[task].sigma_y)


def block_mean_error(x: Tensor, ref: Tensor) -> float:
    """RMS error of the 8×8 block means (per channel): the low-frequency, colour-blotch error."""
    pool = torch.nn.functional.avg_pool2d
    return float((pool(x, 8) - pool(ref, 8)).pow(2).mean().sqrt())


def scores(x: Tensor, ref: Tensor) -> dict[str, float]:
    """PSNR, SSIM, PSNR-B, BEF and the block-mean error of ``x`` (clipped to [0, 1])."""
    x = x.clamp(0, 1).to(ref.dtype)
    return {
        "psnr": float(psnr(x, ref)[0]),
        "ssim": float(ssim(x, ref)[0]),
        "psnr_b": float(psnr_b(x, ref)[0]),
        "bef": float(bef(x)[0]),
        "block": block_mean_error(x, ref),
    }
