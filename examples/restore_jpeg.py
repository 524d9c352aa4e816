"""JPEG artifact correction of a real JPEG file with DDRM.

Writes a held-out photograph as an ordinary quality-10 JPEG file (Pillow/libjpeg, 4:2:0), then
restores it *from the file*: ``opkit_plugins.jpeg.from_file`` reads the file's own quantization
tables, chroma sampling and DCT coefficients, which give both the operator and the measurement
``y`` for DDRM (as ``opkit restore photo.jpg --op jpeg`` does). Prints PSNR/SSIM of the plain
JPEG decode and of the restoration, and writes before/after PNGs and a grid
(JPEG | DDRM | ground truth) into ``--out``.

Run::

    python examples/restore_jpeg.py --out examples_out --size 256
"""

from __future__ import annotations

from pathlib import Path

import torch
from _common import Scores, held_out_crop, label, parser, report, save_figures, score, tuned

import solvers
from opkit.images import load_image, save_image
from opkit_plugins.jpeg import from_file

QUALITY = 10


def main(argv: list[str] | None = None) -> dict[str, Scores]:
    """Run the example; returns ``{"restore_jpeg": {method: {"PSNR", "SSIM"}}}``."""
    p = parser(__doc__)
    p.add_argument("--quality", type=int, default=QUALITY, help="JPEG quality (default: 10)")
    args = p.parse_args(argv)
    out = Path(args.out)
    x = held_out_crop(args.photo, args.size)  # ground truth (1, 3, S, S) in [0, 1]

    # 1. An ordinary JPEG file, as any camera or image editor writes it.
    jpg = save_image(x, out / f"{args.photo}_q{args.quality}.jpg", quality=args.quality)

    # 2. Read it back: the operator carries the file's tables and sampling, y its coefficients.
    op, y = from_file(jpg)
    decoded = load_image(jpg)  # what an image viewer shows: the baseline

    # 3. DDRM for encode/decode pairs (eta=1, eta_b=0.4, started at t=300 from Decode(y) + noise).
    prior = solvers.load_prior(args.model)
    g = torch.Generator().manual_seed(args.seed)
    restored = solvers.ddrm(op, y, prior, **tuned(prior, "jpeg", args.steps), generator=g, progress=False)

    scores = {"JPEG decode": score(decoded, x), "DDRM": score(restored, x)}
    report("restore_jpeg", scores)
    panels = [
        (label(f"JPEG q{args.quality}", scores, "JPEG decode"), decoded),
        (label("DDRM", scores), restored),
        ("ground truth", x),
    ]
    save_figures(out, "restore_jpeg", decoded, restored, panels)
    return {"restore_jpeg": scores}


if __name__ == "__main__":
    main()
