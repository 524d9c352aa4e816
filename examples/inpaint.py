"""Inpainting with DDRM: half of the pixels missing at random, plus a missing box.

The ``inpaint`` operator keeps the pixels where ``mask`` is True and zeroes the others; its SVD
is the mask itself (singular values 1 on kept pixels, 0 on missing ones), so DDRM copies the
kept pixels and the prior invents the rest. The baseline is ``H†y``: the kept pixels, black
elsewhere. Prints PSNR/SSIM of both and writes before/after PNGs and a grid
(masked input | DDRM | ground truth) into ``--out``.

Run::

    python examples/inpaint.py --out examples_out --size 256 --steps 20
"""

from __future__ import annotations

import torch
from _common import Scores, held_out_crop, label, parser, report, save_figures, score, tuned

import opkit
import solvers

MISSING = 0.5  # fraction of pixels dropped at random


def make_mask(size: int, generator: torch.Generator) -> torch.Tensor:
    """``(size, size)`` bool, True = kept: 50% random pixels missing, and a centred box of side size/4."""
    keep = torch.rand(size, size, generator=generator) >= MISSING
    lo, hi = size * 3 // 8, size * 5 // 8
    keep[lo:hi, lo:hi] = False
    return keep


def main(argv: list[str] | None = None) -> dict[str, Scores]:
    """Run the example; returns ``{"inpaint": {method: {"PSNR", "SSIM"}}}``."""
    args = parser(__doc__).parse_args(argv)
    x = held_out_crop(args.photo, args.size)
    g = torch.Generator().manual_seed(args.seed)
    mask = make_mask(args.size, g)
    op = opkit.create("inpaint", shape=tuple(x.shape[1:]), mask=mask)  # one mask for all channels
    y = op(x)  # the image, zeros where missing

    prior = solvers.load_prior(args.model)
    restored = solvers.ddrm(op, y, prior, **tuned(prior, "inpaint", args.steps), generator=g, progress=False)

    scores = {"H†y": score(op.pinv(y), x), "DDRM": score(restored, x)}
    report("inpaint", scores)
    panels = [(label("masked y", scores, "H†y"), y), (label("DDRM", scores), restored), ("ground truth", x)]
    save_figures(args.out, "inpaint", y, restored, panels)
    print(f"inpaint: {100 * (1 - float(mask.float().mean())):.1f}% of the pixels missing")
    return {"inpaint": scores}


if __name__ == "__main__":
    main()
