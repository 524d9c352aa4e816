"""Choose solver settings per task on the validation photographs (never the evaluation ones).

The validation photographs are the ``val/`` split written by ``scripts/fetch_photos.py``; no
default model is trained on them and no reported figure is measured on them. For every setting
of a grid this prints the mean PSNR gain over the task's baseline (:mod:`_tasks`), the worst
image's gain, the SSIM and PSNR-B changes and the largest ratio of the 8×8 block-mean error to
the baseline's (the "colour blotches" measure), sorted by PSNR gain, as a markdown table.

    python benchmarks/tune_settings.py --task jpeg10 --size 128 \\
        --grid "t_start=50,100,200 steps=4,8 eta=0.5,1.0 eta_b=0.4,1.0 samples=1,4"
    python benchmarks/tune_settings.py --solver driftrec --task jpeg10 --grid "steps=20,50 samples=1,4"

The model is the bundled default prior (DDRM, or any registered solver with a diffusion prior:
``--solver diffpir``, ``dps``, ...) or DriftRec model (``--solver driftrec``: blind, it restores the
baseline image) unless ``--model`` names another. Grid keys are the solver's keyword arguments
(``samples`` stands for ``num_samples``); values ``none`` are ``None``. A solver with a prior runs
with the settings its registry entry gives before a model is loaded (the papers' defaults for the
task), the grid on top.

    python benchmarks/tune_settings.py --solver diffpir --task sr4 --grid "lam=1,4,7,12 steps=100"
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

import torch
from _tasks import TASKS, centre_crop, make_problem, scores

import opkit
import solvers
from opkit.images import load_image


def _value(v: str) -> Any:
    if v == "none":
        return None
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


def parse_grid(spec: str) -> list[dict[str, Any]]:
    """``"a=1,2 b=x"`` -> ``[{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]``."""
    axes: dict[str, list[Any]] = {}
    for part in spec.split():
        key, _, values = part.partition("=")
        axes[key] = [_value(v) for v in values.split(",")]
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="jpeg10", choices=TASKS)
    p.add_argument("--photos", default="runs/photos/val")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--model", default="default")
    p.add_argument("--solver", default="ddrm", help="driftrec, or a registered solver with a diffusion prior")
    p.add_argument("--grid", default="t_start=100 steps=8 eta=1.0 eta_b=0.4 samples=1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    files = sorted(f for f in Path(a.photos).glob("*.png") if not f.stem.endswith("_half"))
    if not files:
        raise SystemExit(f"no validation photographs in {a.photos}: run scripts/fetch_photos.py")
    images = [centre_crop(load_image(f, mode="RGB"), a.size) for f in files]
    entry = opkit.default_registry().solver_entry(a.solver)
    if entry.model not in ("prior", "driftrec"):
        raise SystemExit(f"--solver {a.solver} needs neither a diffusion prior nor a DriftRec model")
    model = solvers.load_prior(a.model) if entry.model == "prior" else solvers.load_driftrec(a.model)
    g = torch.Generator().manual_seed(a.seed)
    problems = [make_problem(a.task, x, g) for x in images]
    base = [scores(pb.baseline, x) for pb, x in zip(problems, images, strict=True)]
    mean_base = sum(b["psnr"] for b in base) / len(base)
    print(
        f"{a.task}: {len(images)} validation crops of {a.size}², baseline {mean_base:.2f} dB, model {a.model}"
    )
    rows = []
    for setting in parse_grid(a.grid):
        kw = dict(setting)
        samples = int(kw.pop("samples", 1))
        tic = time.perf_counter()
        per_image = []
        for pb, x, ref in zip(problems, images, base, strict=True):
            gen = torch.Generator().manual_seed(a.seed)
            if entry.model == "prior":
                defaults = entry.settings(None, pb.op) if entry.settings else {}
                out = entry.solver(
                    pb.op,
                    pb.y,
                    model,
                    sigma_y=pb.sigma_y,
                    num_samples=samples,
                    progress=False,
                    generator=gen,
                    **{**defaults, **kw},
                )
            else:
                out = solvers.driftrec(
                    pb.baseline, model, sde="model", num_samples=samples, generator=gen, **kw
                )
            got = scores(out, x)
            per_image.append(
                {k: got[k] - ref[k] for k in ("psnr", "ssim", "psnr_b")}
                | {"block": got["block"] / ref["block"]}
            )
        sec = (time.perf_counter() - tic) / len(images)
        mean = {k: sum(r[k] for r in per_image) / len(per_image) for k in ("psnr", "ssim", "psnr_b")}
        worst, blk = min(r["psnr"] for r in per_image), max(r["block"] for r in per_image)
        rows.append((mean, worst, blk, sec, setting))
        print(
            f"  {setting}: {mean['psnr']:+.2f} dB (worst {worst:+.2f}), ΔSSIM {mean['ssim']:+.4f}, "
            f"ΔPSNR-B {mean['psnr_b']:+.2f}, block-mean error ×{blk:.2f}, {sec:.1f} s/image; per image "
            + ", ".join(f"{f.stem} {r['psnr']:+.2f}" for f, r in zip(files, per_image, strict=True)),
            flush=True,
        )
    print(
        "\n| setting | PSNR gain (dB) | worst image (dB) | ΔSSIM | ΔPSNR-B (dB) "
        "| block-mean error / baseline (max) | s/image |"
    )
    print("|---|---|---|---|---|---|---|")
    for mean, worst, blk, sec, setting in sorted(rows, key=lambda r: -r[0]["psnr"]):
        desc = " ".join(f"{k}={v}" for k, v in setting.items())
        cells = (
            f"{mean['psnr']:+.2f} | {worst:+.2f} | {mean['ssim']:+.4f} | {mean['psnr_b']:+.2f} | {blk:.2f}"
        )
        print(f"| {desc} | {cells} | {sec:.1f} |")


if __name__ == "__main__":
    main()
