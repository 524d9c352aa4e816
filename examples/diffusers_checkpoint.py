"""Use any diffusers DDPM checkpoint directory as the DDRM prior: ``solvers.load_prior(path)``.

``load_prior`` reads a local directory holding a ``UNet2DModel`` and a scheduler configuration,
in either layout that diffusers writes:

* **flat**: ``config.json``, ``diffusion_pytorch_model.safetensors`` and
  ``scheduler_config.json`` side by side (``unet.save_pretrained(d)`` then
  ``scheduler.save_pretrained(d)``);
* **pipeline**: the same files under ``unet/`` and ``scheduler/`` (``DDPMPipeline.save_pretrained``,
  the layout of the ``google/ddpm-*`` repositories on the Hugging Face Hub).

Loading is offline unless asked and safe: nothing is downloaded without ``download=True``, and
pickled ``.bin`` weights are read only with ``torch.load(weights_only=True)``. A published model
also loads by its hub id (``solvers.load_prior("google/ddpm-ema-cat-256", download=True)`` once,
offline from the Hugging Face cache afterwards); ``opkit convert google/ddpm-ema-cat-256 -o
ddpm-cat-256`` writes it as a safetensors directory for ``--checkpoint ddpm-cat-256``. See the
documentation page on pretrained priors for the guided-diffusion checkpoints of the papers.

Without ``--checkpoint`` the script builds a tiny *untrained* ``UNet2DModel`` with a
``DDPMScheduler`` (1000 steps, linear β from 1e-4 to 0.02, the DDPM schedule DDRM expects), saves
it in both layouts to a temporary folder, loads each with ``load_prior`` and runs DDRM on 4×
super-resolution. The untrained network shows the plumbing, not restoration quality.

Run::

    python examples/diffusers_checkpoint.py --out examples_out --size 256 --steps 20
    python examples/diffusers_checkpoint.py --checkpoint path/to/ddpm-dir --size 256
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from _common import Scores, bicubic, held_out_crop, label, parser, report, save_figures, score, tuned

import opkit
import solvers


def save_tiny_checkpoint(path: str | Path, *, layout: str = "pipeline", seed: int = 0) -> Path:
    """Save a tiny untrained diffusers DDPM (``UNet2DModel`` + ``DDPMScheduler``) to ``path``.

    Parameters
    ----------
    path : str or Path
        Target directory (created).
    layout : str
        ``"pipeline"`` (``unet/`` and ``scheduler/`` subfolders) or ``"flat"`` (one folder).
    seed : int
        Seed of the initial weights.

    Returns
    -------
    Path
        The directory, ready for ``solvers.load_prior``.
    """
    from diffusers import DDPMScheduler, UNet2DModel

    if layout not in ("pipeline", "flat"):
        raise ValueError(f"layout must be 'pipeline' or 'flat', got {layout!r}")
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the global RNG
        torch.manual_seed(seed)
        unet = UNet2DModel(  # fully convolutional: runs on any size divisible by 2
            sample_size=32,
            in_channels=3,
            out_channels=3,  # ε-prediction
            layers_per_block=1,
            block_out_channels=(16, 32),
            norm_num_groups=8,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
        )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear"
    )
    root = Path(path)
    unet_dir, sched_dir = (root / "unet", root / "scheduler") if layout == "pipeline" else (root, root)
    unet.save_pretrained(str(unet_dir), safe_serialization=True)  # diffusion_pytorch_model.safetensors
    scheduler.save_pretrained(str(sched_dir))  # scheduler_config.json
    return root


def main(argv: list[str] | None = None) -> dict[str, Scores]:
    """Run the example; returns ``{"diffusers_checkpoint": {method: {"PSNR", "SSIM"}}}``."""
    p = parser(__doc__, model=False)
    p.add_argument("--checkpoint", help="a local diffusers DDPM directory (default: build a tiny one)")
    args = p.parse_args(argv)
    x = held_out_crop(args.photo, args.size)
    op = opkit.create("sr_block", shape=tuple(x.shape[1:]), factor=4)
    y = op(x)

    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint:
            dirs = {"checkpoint": Path(args.checkpoint)}
        else:
            dirs = {
                layout: save_tiny_checkpoint(Path(tmp) / layout, layout=layout)
                for layout in ("flat", "pipeline")
            }
        scores = {"bicubic": score(bicubic(y, x.shape[-2:]), x)}
        outputs = {}
        for name, d in dirs.items():
            prior = solvers.load_prior(d)  # offline; pickles only with weights_only
            print(f"{name}: loaded {d} (T = {len(prior.alphas_cumprod)} timesteps)")
            g = torch.Generator().manual_seed(args.seed)
            outputs[name] = solvers.ddrm(
                op, y, prior, **tuned(prior, "sr_block", args.steps), generator=g, progress=False
            )
            scores[f"DDRM ({name})"] = score(outputs[name], x)
    if len(outputs) == 2:  # the same weights saved in two layouts restore identically
        print(f"flat and pipeline layouts agree: {torch.equal(outputs['flat'], outputs['pipeline'])}")

    report("diffusers_checkpoint", scores)
    name, restored = list(outputs.items())[-1]
    last = f"DDRM ({name})"
    panels = [("input y (4x smaller)", y), (label(last, scores), restored), ("ground truth", x)]
    save_figures(args.out, "diffusers_checkpoint", y, restored, panels)
    return {"diffusers_checkpoint": scores}


if __name__ == "__main__":
    main()
