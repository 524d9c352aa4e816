"""Choose DDRM settings per task on the validation photographs (never the evaluation ones).

The validation photographs are the ``val/`` split written by ``scripts/fetch_photos.py``; no
default model is trained on them and no reported figure is measured on them. For every setting
of a grid this prints the mean PSNR / SSIM gain over the task's baseline and the error of the
8×8 block means (the "colour blotches" measure: low-frequency error) relative to the baseline's,
sorted by PSNR gain, as a markdown table.

    python benchmarks/tune_ddrm.py --task jpeg10 --size 128 \\
        --grid "t_start=50,100,200 steps=4,8 eta=0.5,1.0 eta_b=0.4,1.0 samples=1,4"

Tasks: ``jpeg5``, ``jpeg10``, ``jpeg30`` (DDRM-JPEG against libjpeg's decode), ``sr4`` (4× block
SR with σ_y = 0.05 against bicubic), ``colorize`` (against the grey image), ``deblur``
(Gaussian σ = 3 blur with σ_y = 0.01 against the blurred image), ``inpaint`` (half the pixels
missing, against ``H†y``). The model is the bundled default prior unless ``--model`` names
another.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import opkit
import solvers
from opkit.io import load_image
from opkit.metrics import psnr, ssim


def block_mean_error(x: Tensor, ref: Tensor) -> float:
    """RMS error of the 8×8 block means (per channel): low-frequency and colour errors."""
    return float(
        (torch.nn.functional.avg_pool2d(x, 8) - torch.nn.functional.avg_pool2d(ref, 8)).pow(2).mean().sqrt()
    )


def centre_crop(x: Tensor, size: int) -> Tensor:
    h, w = x.shape[-2:]
    s = min(size, h - h % 16, w - w % 16)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def make_task(task: str, x: Tensor, g: torch.Generator) -> tuple[Any, Any, Tensor, float]:
    """``(op, y, baseline image, sigma_y)`` for one clean image."""
    shape = tuple(x.shape[1:])
    if task.startswith("jpeg"):
        op = opkit.create("jpeg", shape=shape, quality=int(task[4:]))
        y = op(x)
        return op, y, op.decode(y, mode="libjpeg"), 0.0
    if task == "sr4":
        op = opkit.create("sr_block", shape=shape, factor=4)
        y = op(x) + 0.05 * torch.randn(op(x).shape, generator=g, dtype=x.dtype)
        base = torch.nn.functional.interpolate(y, size=shape[1:], mode="bicubic", align_corners=False)
        return op, y, base, 0.05
    if task == "colorize":
        op = opkit.create("colorize", shape=shape)
        y = op(x)
        return op, y, y.expand(-1, 3, -1, -1), 0.0
    if task == "deblur":
        op = opkit.create("blur", shape=shape, kernel="gaussian", sigma=3.0)
        y = op(x) + 0.01 * torch.randn(x.shape, generator=g, dtype=x.dtype)
        return op, y, y, 0.01
    if task == "inpaint":
        op = opkit.create("inpaint", shape=shape, missing=0.5, seed=0)
        y = op(x)
        return op, y, op.pinv(y), 0.0
    raise SystemExit(f"unknown task {task!r}")


def parse_grid(spec: str) -> list[dict[str, Any]]:
    axes: dict[str, list[Any]] = {}
    for part in spec.split():
        key, _, values = part.partition("=")
        axes[key] = [None if v == "none" else (float(v) if "." in v else int(v)) for v in values.split(",")]
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="jpeg10")
    p.add_argument("--photos", default="runs/photos/val")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--model", default="default")
    p.add_argument("--grid", default="t_start=100 steps=8 eta=1.0 eta_b=0.4 samples=1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    files = sorted(f for f in Path(a.photos).glob("*.png") if not f.stem.endswith("_half"))
    if not files:
        raise SystemExit(f"no validation photographs in {a.photos}: run scripts/fetch_photos.py")
    images = [centre_crop(load_image(f, mode="RGB"), a.size) for f in files]
    model = solvers.load_prior(a.model)
    g = torch.Generator().manual_seed(a.seed)
    tasks = [make_task(a.task, x, g) for x in images]
    base = [
        (float(psnr(b.clamp(0, 1), x)[0]), float(ssim(b.clamp(0, 1), x)[0]), block_mean_error(b, x))
        for (_, _, b, _), x in zip(tasks, images, strict=True)
    ]
    print(
        f"{a.task}: {len(images)} validation crops of {a.size}², baseline PSNR "
        f"{sum(b[0] for b in base) / len(base):.2f} dB, model {a.model}"
    )
    rows = []
    for setting in parse_grid(a.grid):
        kw = dict(setting)
        samples = int(kw.pop("samples", 1))
        tic = time.perf_counter()
        gains, dssim, blk, worst = [], [], [], float("inf")
        for (op, y, _, sy), x, (bp, bs, bb) in zip(tasks, images, base, strict=True):
            out = solvers.ddrm(
                op,
                y,
                model,
                sigma_y=sy,
                num_samples=samples,
                progress=False,
                generator=torch.Generator().manual_seed(a.seed),
                **kw,
            )
            gains.append(float(psnr(out, x)[0]) - bp)
            dssim.append(float(ssim(out, x)[0]) - bs)
            blk.append(block_mean_error(out, x) / bb)
            worst = min(worst, gains[-1])
        sec = (time.perf_counter() - tic) / len(images)
        rows.append((sum(gains) / len(gains), worst, sum(dssim) / len(dssim), max(blk), sec, setting))
        print(
            f"  {setting}: {rows[-1][0]:+.2f} dB (worst {worst:+.2f}), ΔSSIM {rows[-1][2]:+.4f}, "
            f"block-mean error ×{rows[-1][3]:.2f}, {sec:.1f} s/image",
            flush=True,
        )
    print("\n| setting | PSNR gain (dB) | worst image (dB) | ΔSSIM | block-mean error / baseline | s/image |")
    print("|---|---|---|---|---|---|")
    for gain, worst, ds, bk, sec, setting in sorted(rows, key=lambda r: -r[0]):
        desc = " ".join(f"{k}={v}" for k, v in setting.items())
        print(f"| {desc} | {gain:+.2f} | {worst:+.2f} | {ds:+.4f} | {bk:.2f} | {sec:.1f} |")


if __name__ == "__main__":
    main()
