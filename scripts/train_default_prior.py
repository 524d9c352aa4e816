"""Train the default DDRM prior shipped in ``solvers/weights/prior`` (resumable).

Data: scikit-image's lossless training photographs (:data:`solvers.common.data.TRAIN_PHOTOS`) at full
resolution and halved, the training split of the Debian wallpaper photographs that
``scripts/fetch_photos.py`` writes (``--photos``; 32 photographs, 1024 and 512 pixels wide), plus
dead-leaves images (a quarter of every batch). Network: the ``small`` preset of
:data:`solvers.priors.training.PRIOR_PRESETS`, or the weights of an earlier prior (``--init-from``).
``--focus T,P`` draws a share ``P`` of the timesteps from ``[0, T]`` (the range that DDRM-JPEG and
late-start runs use). Everything is seeded; rerunning with the same arguments resumes from the
checkpoint in ``--out`` and continues bit for bit.

    python scripts/fetch_photos.py --out runs/photos
    python scripts/train_default_prior.py --out runs/prior2 --init-from solvers/weights/prior \
        --focus 400,0.5 --steps 20000 [--max-seconds 3600]
    python scripts/train_default_prior.py --out runs/prior2 --export solvers/weights/prior
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from solvers.common.data import folder_photos, training_photos
from solvers.priors.training import train_prior


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/prior")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--preset", default="small")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--photos", default="runs/photos", help="output of scripts/fetch_photos.py ('' for none)")
    p.add_argument("--init-from", default=None, help="start from this prior's weights (new runs only)")
    p.add_argument("--leaves", type=float, default=0.25, help="share of dead-leaves images per batch")
    p.add_argument("--grey", type=float, default=0.0, help="share of photograph crops turned grey")
    p.add_argument("--focus", default=None, help="T,P: draw a share P of the timesteps from [0, T]")
    p.add_argument("--export", help="copy the EMA model (unet/ and scheduler/) to this directory")
    a = p.parse_args()
    if a.export:
        dst = Path(a.export)
        for sub in ("unet", "scheduler"):
            shutil.copytree(Path(a.out) / sub, dst / sub, dirs_exist_ok=True)
            cfg_path = dst / sub / ("config.json" if sub == "unet" else "scheduler_config.json")
            cfg = json.loads(cfg_path.read_text())
            if cfg.pop("_name_or_path", None) is not None:  # a local path recorded on resume
                cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        print(f"exported {a.out} -> {dst}")
        return
    images = training_photos() + (folder_photos(Path(a.photos) / "train") if a.photos else [])
    focus = None
    if a.focus:
        t_hi, share = a.focus.split(",")
        focus = (int(t_hi), float(share))
    print(f"{len(images)} training images")
    res = train_prior(
        a.out,
        images,
        preset=a.preset,
        steps=a.steps,
        batch_size=a.batch,
        crop_size=a.crop,
        lr=a.lr,
        ema_decay=a.ema,
        seed=a.seed,
        device=a.device,
        checkpoint_every=100,
        max_seconds=a.max_seconds,
        init_from=a.init_from,
        dead_leaves_fraction=a.leaves,
        grey_fraction=a.grey,
        focus=focus,
    )
    print(
        f"step {res['step']}, {res['parameters'] / 1e6:.2f}M parameters, {res['seconds']:.0f} s, "
        f"last-100 loss {sum(res['losses'][-100:]) / len(res['losses'][-100:]):.4f}"
    )


if __name__ == "__main__":
    main()
