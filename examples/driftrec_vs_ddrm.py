"""The same quality-10 JPEG restored by DDRM (non-blind) and by DriftRec (blind).

* **DDRM** uses the degradation: the operator read from the JPEG file (its tables and
  sampling) and the file's coefficients ``y``, with a diffusion prior (``--model``).
* **DriftRec** is blind: a conditional score model (``--driftrec-model``) trained on pairs of
  clean and JPEG-compressed images maps the decoded image to a restoration with
  ``solvers.driftrec``, never seeing the operator.

Prints PSNR, SSIM, PSNR-B and the blocking effect factor BEF (``opkit.metrics``; PSNR-B
penalises blocking, lower BEF is less blocky) for the JPEG decode, DDRM and DriftRec, and writes
before/after PNGs and a grid (JPEG | DDRM | DriftRec | ground truth) into ``--out``. If no
DriftRec model can be loaded (``load_driftrec("default")`` in an installation without the
bundled model), it says so, keeps the DDRM half and exits normally.

Run::

    python examples/driftrec_vs_ddrm.py --out examples_out --size 256
    python examples/driftrec_vs_ddrm.py --driftrec-model path/to/driftrec-dir --driftrec-steps 100
"""

from __future__ import annotations

from pathlib import Path

import torch
from _common import Scores, held_out_crop, label, parser, report, save_figures, score, tuned

import solvers
from opkit import metrics
from opkit.images import load_image, save_image
from opkit_plugins.jpeg import from_file

QUALITY = 10


def jpeg_scores(img: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """PSNR, SSIM, PSNR-B (dB) and BEF of one image."""
    img = img.clamp(0, 1).to(truth.dtype)
    return {
        **score(img, truth),
        "PSNR-B": float(metrics.psnr_b(img, truth)[0]),
        "BEF": float(metrics.bef(img)[0]),
    }


def main(argv: list[str] | None = None) -> dict[str, Scores]:
    """Run the example; returns ``{"driftrec_vs_ddrm": {method: {"PSNR", "SSIM", "PSNR-B", "BEF"}}}``."""
    p = parser(__doc__)
    p.add_argument("--driftrec-model", default="default", help="DriftRec model: 'default' or a directory")
    p.add_argument("--driftrec-steps", type=int, default=100, help="DriftRec sampler steps (default: 100)")
    args = p.parse_args(argv)
    out = Path(args.out)
    x = held_out_crop(args.photo, args.size)

    # A real JPEG file, read back with its own tables; the decode is the baseline.
    jpg = save_image(x, out / f"{args.photo}_q{QUALITY}.jpg", quality=QUALITY)
    op, y = from_file(jpg)
    decoded = load_image(jpg)
    scores = {"JPEG decode": jpeg_scores(decoded, x)}
    images = {"JPEG decode": decoded}

    # DDRM: knows the operator.
    g = torch.Generator().manual_seed(args.seed)
    prior = solvers.load_prior(args.model)
    images["DDRM"] = solvers.ddrm(
        op, y, prior, **tuned(prior, "jpeg", args.steps), generator=g, progress=False
    )
    scores["DDRM"] = jpeg_scores(images["DDRM"], x)

    # DriftRec: blind, from the decoded image alone (the model's own SDE, Euler–Maruyama).
    try:
        score_model = solvers.load_driftrec(args.driftrec_model)
    except ValueError as exc:
        print(f"driftrec_vs_ddrm: no DriftRec model, skipping DriftRec ({exc})")
    else:
        y_image = op.decode(y)  # Decode(Encode(x)), the input DriftRec is trained on
        g = torch.Generator().manual_seed(args.seed)
        images["DriftRec"] = solvers.driftrec(
            y_image, score_model, sde="model", steps=args.driftrec_steps, generator=g
        )
        scores["DriftRec"] = jpeg_scores(images["DriftRec"], x)

    report("driftrec_vs_ddrm", scores)
    panels = [(label(f"JPEG q{QUALITY}", scores, "JPEG decode"), decoded)]
    panels += [(label(m, scores), img) for m, img in images.items() if m != "JPEG decode"]
    panels.append(("ground truth", x))
    save_figures(out, "driftrec_vs_ddrm", decoded, list(images.values())[-1], panels)
    return {"driftrec_vs_ddrm": scores}


if __name__ == "__main__":
    main()
