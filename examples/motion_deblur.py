"""Motion deblurring with DDRM: the 61×61 camera-shake kernel of DPS, σ_y = 0.05, against Wiener.

The field's motion-deblurring problem (DPS, DiffPIR, DAPS): a random camera-shake kernel of
61 × 61 pixels and intensity 0.5 (:func:`opkit.kernels.motion`, the ``motionblur`` recipe), a
circular blur (``conv2d``, whose exact real Fourier SVD DDRM uses) and Gaussian noise
σ_y = 0.05. The baselines are the blurred ``y`` and Wiener deconvolution with a gradient prior
(:math:`\\overline K Y / (|K|^2 + \\lambda |\\omega|^2)`) at the λ that is best *for this image*
(chosen with the ground truth: no real Wiener filter does better).

Prints PSNR/SSIM of every method and writes the blurred input, the restoration and a grid
(blurred | Wiener | DDRM | kernel | ground truth) into ``--out``.

Run::

    python examples/motion_deblur.py --out examples_out --size 256
"""

from __future__ import annotations

import torch
from _common import Scores, held_out_crop, label, parser, report, save_figures, score, tuned
from torch import Tensor

import opkit
import solvers
from opkit import kernels

KERNEL_SIZE, INTENSITY, SIGMA_Y = 61, 0.5, 0.05


def wiener_best(y: Tensor, transfer: Tensor, x: Tensor) -> Tensor:
    """Wiener deconvolution with a gradient prior at the λ (of 81 from 1e-6 to 1e2) best for ``x``."""
    h, w = y.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    grad = 4 * torch.sin(torch.pi * fy) ** 2 + 4 * torch.sin(torch.pi * fx) ** 2  # |ω|² of the Laplacian
    Y = torch.fft.rfft2(y.to(torch.float64))
    candidates = (
        torch.fft.irfft2(Y * transfer.conj() / (transfer.abs() ** 2 + lam * grad), s=(h, w)).clamp(0, 1)
        for lam in torch.logspace(-6, 2, 81).tolist()
    )
    return max(candidates, key=lambda c: score(c, x)["PSNR"]).to(y.dtype)


def main(argv: list[str] | None = None) -> dict[str, Scores]:
    """Run the example; returns ``{"motion_deblur": {method: {"PSNR", "SSIM"}}}``."""
    p = parser(__doc__)
    p.add_argument("--kernel-size", type=int, default=KERNEL_SIZE, help="kernel side (default 61, as DPS)")
    args = p.parse_args(argv)
    x = held_out_crop(args.photo, args.size)
    shape = tuple(x.shape[1:])
    prior = solvers.load_prior(args.model)
    g = torch.Generator().manual_seed(args.seed)  # one generator: kernel, noise and solver

    # --- the measurement: a seeded camera-shake kernel, circular blur, noise --------------------
    size = min(args.kernel_size, args.size)  # a kernel at most the image's size
    k = kernels.motion(size, INTENSITY, generator=g)
    blur = opkit.create("conv2d", shape=shape, kernel=k, threshold=0.0)  # the plain convolution
    y = blur(x) + SIGMA_Y * torch.randn(x.shape, generator=g)

    # --- DDRM on the same operator (its default threshold drops |K| < 3e-2) ---------------------
    op = opkit.create("conv2d", shape=shape, kernel=k)
    restored = solvers.ddrm(
        op, y, prior, **tuned(prior, "conv2d", args.steps), sigma_y=SIGMA_Y, generator=g, progress=False
    )

    wiener = wiener_best(y, blur.transfer, x)
    scores = {"blurred y": score(y, x), "Wiener (best λ)": score(wiener, x), "DDRM": score(restored, x)}
    report("motion_deblur", scores)
    panels = [
        (label("blurred y", scores), y),
        (label("Wiener", scores, "Wiener (best λ)"), wiener),
        (label("DDRM", scores), restored),
        (f"kernel {size}x{size}", (k / k.max())[None, None]),  # shown at the image's size
        ("ground truth", x),
    ]
    save_figures(args.out, "motion_deblur", y, restored, panels)
    return {"motion_deblur": scores}


if __name__ == "__main__":
    main()
