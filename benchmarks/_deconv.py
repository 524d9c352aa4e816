r"""The field's deblurring problems (61×61 kernels, σ_y = 0.05) and their oracle-tuned Wiener baseline.

DPS, DiffPIR and DAPS evaluate deblurring with two 61×61 kernels on 256² images and noise
σ_y = 0.05: a Gaussian of σ = 3 px and a motion kernel of intensity 0.5 drawn per image with the
``motionblur`` recipe (:func:`opkit.kernels.motion`). Here the blur is the circular ``conv2d``
(its own model: the measurement is made by the operator DDRM inverts, with ``threshold=0``, i.e.
the plain circular convolution), plus Gaussian noise.

The baseline is **Wiener deconvolution at its best regularisation for each image** (an oracle:
it picks λ with the clean image),

.. math::

   \hat x_\lambda = \mathrm{irFFT2}\Big(\frac{\overline{K}\, Y}{|K|^2 + \lambda}\Big), \qquad
   \lambda^\star = \arg\max_{\lambda \in \Lambda} \mathrm{PSNR}(\mathrm{clip}(\hat x_\lambda), x),

over a log-spaced grid :math:`\Lambda` of 61 values from 1e-5 to 1 (refined once around the best
by 21 values between its neighbours), which no real Wiener filter can beat without knowing ``x``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import opkit
from opkit import kernels
from opkit.metrics import psnr

#: Measurement noise of the field's deblurring benchmarks, in [0, 1] image units.
SIGMA_Y = 0.05
#: The Wiener regularisations tried first.
LAMBDAS = torch.logspace(-5, 0, 61, dtype=torch.float64)


def deblur_kernel(task: str, g: torch.Generator) -> Tensor:
    """The 61×61 kernel of ``task``: ``"gauss61"`` (σ = 3) or ``"motion61"`` (intensity 0.5, seeded by g)."""
    if task == "gauss61":
        return kernels.gaussian(61, 3.0)
    if task == "motion61":
        seed = int(torch.randint(0, 2**31 - 1, (), generator=g, device=g.device))
        return kernels.motion(61, 0.5, generator=torch.Generator().manual_seed(seed))
    raise ValueError(f"unknown deblurring task {task!r}")


def wiener(y: Tensor, transfer: Tensor, lam: float) -> Tensor:
    r"""Wiener (Tikhonov) deconvolution :math:`\overline K Y / (|K|^2 + \lambda)` of a circular blur."""
    h, w = y.shape[-2:]
    k = transfer.to(device=y.device)
    filt = k.conj() / (k.abs().square() + lam)
    return torch.fft.irfft2(torch.fft.rfft2(y.to(torch.float64)) * filt, s=(h, w)).to(y.dtype)


def oracle_wiener(y: Tensor, transfer: Tensor, x: Tensor) -> tuple[Tensor, float]:
    """The Wiener restoration with the best PSNR against ``x`` over :data:`LAMBDAS`, refined once."""

    def score(lam: float) -> float:
        return float(psnr(wiener(y, transfer, lam).clamp(0, 1), x)[0])

    grid = [float(v) for v in LAMBDAS]
    scores = [score(v) for v in grid]
    i = max(range(len(grid)), key=scores.__getitem__)
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    fine = torch.logspace(torch.log10(torch.tensor(lo)), torch.log10(torch.tensor(hi)), 21).tolist()
    best = max([*fine, grid[i]], key=score)
    return wiener(y, transfer, best).clamp(0, 1), best


def deblur_problem(task: str, x: Tensor, g: torch.Generator) -> dict[str, Any]:
    """Blur ``x`` ``(1, C, H, W)`` with the task's kernel (circular), add σ_y noise from ``g``.

    Returns
    -------
    dict
        ``op`` (the ``conv2d`` operator DDRM uses, default threshold), ``y``, ``kernel``,
        ``baseline`` (the oracle Wiener restoration) and ``lam`` (its λ).
    """
    k = deblur_kernel(task, g)
    shape = tuple(x.shape[1:])
    exact = opkit.create("conv2d", shape=shape, kernel=k, threshold=0.0)
    y = exact(x)
    y = y + SIGMA_Y * torch.randn(y.shape, generator=g, dtype=y.dtype, device=y.device)
    base, lam = oracle_wiener(y, exact.transfer, x)
    op = opkit.create("conv2d", shape=shape, kernel=k)
    return {"op": op, "y": y, "kernel": k, "baseline": base, "lam": lam}
