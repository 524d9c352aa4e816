"""Noisy super-resolution and noisy deblurring with DDRM, against the simple baselines.

Two linear problems on a held-out photograph, each with Gaussian measurement noise added to
``y`` and passed to DDRM as ``sigma_y`` (in ``[0, 1]`` image units):

* ``sr_x4``: 4× block-average super-resolution (``sr_block``, factor 4), σ_y = 0.05, compared
  with bicubic upsampling of ``y`` and with the pseudo-inverse ``H†y``;
* ``deblur``: separable Gaussian blur (``blur``, kernel ``gaussian``, σ = 2 px), σ_y = 0.02,
  compared with the blurred ``y`` itself and with ``H†y`` (which amplifies the noise).

Prints PSNR/SSIM of every method and writes, per problem, before/after PNGs and a grid
(input | DDRM | ground truth) into ``--out``.

Run::

    python examples/sr_deblur_noisy.py --out examples_out --size 256 --steps 20
"""

from __future__ import annotations

import torch
from _common import Scores, bicubic, held_out_crop, label, parser, report, save_figures, score, tuned

import opkit
import solvers

SR_FACTOR, SR_SIGMA_Y = 4, 0.05
BLUR_SIGMA, BLUR_SIGMA_Y = 2.0, 0.02


def main(argv: list[str] | None = None) -> dict[str, Scores]:
    """Run the example; returns ``{"sr_x4": {...}, "deblur": {...}}`` of ``{method: {"PSNR", "SSIM"}}``."""
    args = parser(__doc__).parse_args(argv)
    x = held_out_crop(args.photo, args.size)
    shape = tuple(x.shape[1:])
    prior = solvers.load_prior(args.model)
    g = torch.Generator().manual_seed(args.seed)  # one generator: noise and solver, reproducible
    results: dict[str, Scores] = {}

    # --- 4× super-resolution with noise -------------------------------------------------------
    op = opkit.create("sr_block", shape=shape, factor=SR_FACTOR)
    clean = op(x)  # (1, 3, S/4, S/4) block means
    y = clean + SR_SIGMA_Y * torch.randn(clean.shape, generator=g)
    restored = solvers.ddrm(
        op, y, prior, **tuned(prior, "sr_block", args.steps), sigma_y=SR_SIGMA_Y, generator=g, progress=False
    )
    scores = {
        "bicubic": score(bicubic(y, x.shape[-2:]), x),
        "H†y": score(op.pinv(y), x),
        "DDRM": score(restored, x),
    }
    report("sr_x4", scores)
    panels = [(label("y (4x), bicubic", scores, "bicubic"), y), (label("DDRM", scores), restored)]
    panels.append(("ground truth", x))
    save_figures(args.out, "sr_x4", y, restored, panels)
    results["sr_x4"] = scores

    # --- Gaussian deblurring with noise --------------------------------------------------------
    op = opkit.create("blur", shape=shape, kernel="gaussian", sigma=BLUR_SIGMA)
    y = op(x) + BLUR_SIGMA_Y * torch.randn(x.shape, generator=g)
    restored = solvers.ddrm(
        op, y, prior, **tuned(prior, "blur", args.steps), sigma_y=BLUR_SIGMA_Y, generator=g, progress=False
    )
    scores = {"blurred y": score(y, x), "H†y": score(op.pinv(y), x), "DDRM": score(restored, x)}
    report("deblur", scores)
    panels = [(label("blurred y", scores), y), (label("DDRM", scores), restored), ("ground truth", x)]
    save_figures(args.out, "deblur", y, restored, panels)
    results["deblur"] = scores
    return results


if __name__ == "__main__":
    main()
