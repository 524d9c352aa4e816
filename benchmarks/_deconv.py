r"""The field's deblurring problems (61×61 kernels, σ_y = 0.05) and their oracle-tuned Wiener baseline.

DPS, DiffPIR and DAPS evaluate deblurring with two 61×61 kernels on 256² images and noise
σ_y = 0.05: a Gaussian of σ = 3 px and a motion kernel of intensity 0.5 drawn per image with the
``motionblur`` recipe (:func:`opkit.kernels.motion`). Here the blur is the circular ``conv2d``
(its own model: the measurement is made by the operator DDRM inverts, with ``threshold=0``, i.e.
the plain circular convolution), plus Gaussian noise.

The baseline is **Wiener deconvolution at its best regularisation for each image** (an oracle:
it picks the regulariser with the clean image),

.. math::

   \hat x_{\lambda, R} = \mathrm{irFFT2}\Big(\frac{\overline{K}\, Y}{|K|^2 + \lambda R}\Big), \qquad
   (\lambda^\star, R^\star) = \arg\max_{\lambda \in \Lambda,\, R}
   \mathrm{PSNR}(\mathrm{clip}(\hat x_{\lambda, R}), x),

with two noise-to-signal models: :math:`R = 1` (a flat spectrum, Tikhonov) and
:math:`R_\omega = 4\sin^2(\pi f_y) + 4\sin^2(\pi f_x)`, the symbol of the discrete Laplacian
(the :math:`1/|\omega|^2` power spectrum of natural images: Wiener with a gradient prior, which
keeps the mean and is by far the stronger of the two on photographs), and :math:`\Lambda` 81
log-spaced values from 1e-6 to 1e2, refined once around the best by 21 values between its
neighbours. No real Wiener filter can beat it without knowing ``x``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

import opkit
from opkit import kernels
from opkit.metrics import psnr
from opkit_cli.tasks import PRESETS

#: Measurement noise of the field's deblurring benchmarks, in [0, 1] image units (the presets'
#: ``gauss_deblur`` and ``motion_deblur`` of :mod:`opkit_cli.tasks`, shared with ``opkit eval --task``).
SIGMA_Y = PRESETS["gauss_deblur"].sigma_y
#: The Wiener regularisation weights tried first.
LAMBDAS = torch.logspace(-6, 2, 81, dtype=torch.float64)
#: The noise-to-signal models ``R`` of :func:`wiener`.
REGULARISERS = ("flat", "gradient")


def deblur_kernel(task: str, g: torch.Generator) -> Tensor:
    """The 61×61 kernel of ``task``: ``"gauss61"`` (σ = 3) or ``"motion61"`` (intensity 0.5, seeded by g)."""
    if task == "gauss61":
        p = PRESETS["gauss_deblur"].params(61, 61)
        return kernels.gaussian(p["size"], p["sigma"])
    if task == "motion61":
        seed = int(torch.randint(0, 2**31 - 1, (), generator=g, device=g.device))
        p = PRESETS["motion_deblur"].params(61, 61, seed)
        return kernels.motion(p["size"], p["intensity"], generator=torch.Generator().manual_seed(seed))
    raise ValueError(f"unknown deblurring task {task!r}")


def _regulariser(kind: str, h: int, w: int) -> Tensor:
    if kind == "flat":
        return torch.ones((h, w // 2 + 1), dtype=torch.float64)
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    return 4 * torch.sin(torch.pi * fy).square() + 4 * torch.sin(torch.pi * fx).square()


def wiener(y: Tensor, transfer: Tensor, lam: float, regulariser: str = "gradient") -> Tensor:
    r"""Wiener deconvolution :math:`\overline K Y / (|K|^2 + \lambda R)` of a circular blur.

    ``regulariser`` is ``"flat"`` (:math:`R = 1`) or ``"gradient"`` (:math:`R` the discrete
    Laplacian's symbol).
    """
    h, w = y.shape[-2:]
    k = transfer.to(device=y.device)
    reg = _regulariser(regulariser, h, w).to(y.device)
    filt = k.conj() / (k.abs().square() + lam * reg)
    return torch.fft.irfft2(torch.fft.rfft2(y.to(torch.float64)) * filt, s=(h, w)).to(y.dtype)


def oracle_wiener(y: Tensor, transfer: Tensor, x: Tensor) -> tuple[Tensor, float, str]:
    """The Wiener restoration with the best PSNR against ``x``: over :data:`REGULARISERS` and λ.

    Returns
    -------
    (torch.Tensor, float, str)
        The restoration (clipped to [0, 1]), its λ and its regulariser.
    """
    best: tuple[float, float, str] = (-math.inf, 0.0, "flat")
    for reg in REGULARISERS:

        def score(lam: float, reg: str = reg) -> float:
            return float(psnr(wiener(y, transfer, lam, reg).clamp(0, 1), x)[0])

        grid = LAMBDAS.tolist()
        scores = [score(v) for v in grid]
        i = max(range(len(grid)), key=scores.__getitem__)
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        fine = torch.logspace(math.log10(lo), math.log10(hi), 21, dtype=torch.float64).tolist()
        lam = max([*fine, grid[i]], key=score)
        best = max(best, (score(lam), lam, reg))
    _, lam, reg = best
    return wiener(y, transfer, lam, reg).clamp(0, 1), lam, reg


def deblur_problem(task: str, x: Tensor, g: torch.Generator) -> dict[str, Any]:
    """Blur ``x`` ``(1, C, H, W)`` with the task's kernel (circular), add σ_y noise from ``g``.

    Returns
    -------
    dict
        ``op`` (the ``conv2d`` operator DDRM uses, default threshold), ``y``, ``kernel``,
        ``baseline`` (the oracle Wiener restoration), ``lam`` and ``regulariser`` (its choice).
    """
    k = deblur_kernel(task, g)
    shape = tuple(x.shape[1:])
    exact = opkit.create("conv2d", shape=shape, kernel=k, threshold=0.0)
    y = exact(x)
    y = y + SIGMA_Y * torch.randn(y.shape, generator=g, dtype=y.dtype, device=y.device)
    base, lam, reg = oracle_wiener(y, exact.transfer, x)
    op = opkit.create("conv2d", shape=shape, kernel=k)
    return {"op": op, "y": y, "kernel": k, "baseline": base, "lam": lam, "regulariser": reg}
