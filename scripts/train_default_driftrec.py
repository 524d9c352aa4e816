"""Train the default DriftRec JPEG model shipped in ``solvers/weights/driftrec`` (resumable).

Data: scikit-image's lossless training photographs (:data:`solvers.common.data.TRAIN_PHOTOS`) at full
resolution and halved, and the training split of the Debian wallpaper photographs that
``scripts/fetch_photos.py`` writes (``--photos``). Pairs: the ``jpeg`` operator with the quality
drawn uniformly in 1..100 per image (4:2:0). Network: the convolution-only ``compact`` preset of
:data:`solvers.sdes.score_models.PRESETS` with the OUVE SDE. Everything is seeded; rerunning with the same
arguments resumes from the checkpoint in ``--out`` and continues bit for bit.

    python scripts/fetch_photos.py --out runs/photos
    python scripts/train_default_driftrec.py --out runs/driftrec2 \\
        --init-from solvers/weights/driftrec --steps 8000
    python scripts/train_default_driftrec.py --out runs/driftrec --export solvers/weights/driftrec
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from solvers import load_driftrec
from solvers.common.data import folder_photos, training_photos
from solvers.common.state import STATE_JSON
from solvers.sdes.score_models import ScoreModel
from solvers.sdes.training import train_driftrec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/driftrec")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--preset", default="compact")
    p.add_argument(
        "--parameterization", default="noise", help="a fresh model's: noise (the paper's) or preconditioned"
    )
    p.add_argument("--sigma-data", type=float, default=0.05, help="preconditioned: std of x0 - y")
    p.add_argument("--qualities", default="1,100", help="LO,HI: the range the quality is drawn from")
    p.add_argument("--quality-draw", default="uniform", help="'uniform' or 'log' (more low qualities)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--photos", default="runs/photos", help="output of scripts/fetch_photos.py ('' for none)")
    p.add_argument("--init-from", default=None, help="start from this model's weights (new runs only)")
    p.add_argument("--export", help="save the EMA model alone (no training state) to this directory")
    a = p.parse_args()
    if a.export:
        load_driftrec(a.out).save_pretrained(Path(a.export))
        print(f"exported {a.out} -> {a.export}")
        return
    images = training_photos() + (folder_photos(Path(a.photos) / "train") if a.photos else [])
    start = (
        load_driftrec(a.init_from)
        if a.init_from and not (Path(a.out) / STATE_JSON).is_file()
        else ScoreModel.from_preset(
            a.preset, "ouve", seed=a.seed, parameterization=a.parameterization, sigma_data=a.sigma_data
        )
    )
    print(f"{len(images)} training images")
    res = train_driftrec(
        images,
        "jpeg",
        model=start,
        steps=a.steps,
        batch_size=a.batch,
        crop_size=a.crop,
        lr=a.lr,
        ema_decay=a.ema,
        quality_range=tuple(int(q) for q in a.qualities.split(",")),
        quality_draw=a.quality_draw,
        seed=a.seed,
        device=a.device,
        checkpoint_dir=a.out,
        checkpoint_every=100,
        resume=True,
    )
    tail = res.losses[-100:]
    n = res.model.num_parameters() / 1e6
    print(f"step {res.step}, {n:.2f}M parameters, last-100 loss {sum(tail) / len(tail):.4f}")


if __name__ == "__main__":
    main()
