"""Colorization of a greyscale image with DDRM.

The ``colorize`` operator keeps one channel, the mean of R, G and B (``weights`` sets other
weights); its SVD is one singular value per pixel along the weight direction, so DDRM keeps the
measured grey level exactly and lets the prior fill in the two chroma directions. The baseline is
the pseudo-inverse ``H†y``, the grey image itself. Prints PSNR/SSIM of both and writes
before/after PNGs and a grid (grey input | DDRM | ground truth) into ``--out``.

Run::

    python examples/colorize.py --out examples_out --size 256 --steps 20
"""

from __future__ import annotations

import torch
from _common import Scores, held_out_crop, label, parser, report, save_figures, score, tuned

import opkit
import solvers


def main(argv: list[str] | None = None) -> dict[str, Scores]:
    """Run the example; returns ``{"colorize": {method: {"PSNR", "SSIM"}}}``."""
    args = parser(__doc__).parse_args(argv)
    x = held_out_crop(args.photo, args.size)
    op = opkit.create("colorize", shape=tuple(x.shape[1:]))  # weights 1/3 each: the channel mean
    y = op(x)  # (1, 1, S, S)
    baseline = op.pinv(y)  # the grey image in all three channels

    prior = solvers.load_prior(args.model)
    g = torch.Generator().manual_seed(args.seed)
    restored = solvers.ddrm(op, y, prior, **tuned(prior, "colorize", args.steps), generator=g, progress=False)

    scores = {"H†y (grey)": score(baseline, x), "DDRM": score(restored, x)}
    report("colorize", scores)
    panels = [
        (label("grey", scores, "H†y (grey)"), y),
        (label("DDRM", scores), restored),
        ("ground truth", x),
    ]
    save_figures(args.out, "colorize", y, restored, panels)
    return {"colorize": scores}


if __name__ == "__main__":
    main()
