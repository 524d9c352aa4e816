"""DriftRec's JPEG profile: PSNR, PSNR-B, blocking (BEF), SSIM and time per quality, against libjpeg.

Each photograph is compressed at every quality (4:2:0, libjpeg's standard tables) and restored
blindly as ``opkit restore x.jpg --op jpeg --solver driftrec`` does (the solver's defaults and the
settings the model ships for ``jpeg``, or ``--steps``/``--sampler``/``--grid-power``), with one
sample and with ``--samples`` averaged samples. Every figure is against libjpeg's decode of the
same file (what a viewer shows). BEF ratio is the decode's mean blocking effect factor divided
by the restoration's mean (Yim & Bovik; the DriftRec paper's Table III reports means of 39.5 ->
1.3 on D2KF2K at quality 10, a ratio of 30). A ratio of per-image ratios would be dominated by any
image whose BEF reaches 0 (BEF is clipped at 0). The originals have a BEF of their own (natural
edges that happen to fall on the 8-pixel grid), so the ``original`` row is the ratio a perfect
restoration would score.

Images: centre crops of :data:`solvers.common.data.EVAL_PHOTOS` (never trained or tuned on), or
with ``--val`` the validation photographs of ``scripts/fetch_photos.py`` (for choosing settings).

    python benchmarks/bench_driftrec_jpeg.py                         # the bundled model, 256² crops
    python benchmarks/bench_driftrec_jpeg.py --model runs/driftrec3 --val --qualities 10 --size 128
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import opkit
import solvers
from opkit.metrics import bef, psnr, psnr_b, ssim
from solvers.common.data import EVAL_PHOTOS, folder_photos, photo
from solvers.methods.driftrec import driftrec_settings


def centre(x: Tensor, size: int) -> Tensor:
    """The central ``size²`` crop (a multiple of 16 that fits)."""
    h, w = x.shape[-2:]
    s = min(size, h - h % 16, w - w % 16)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def score(img: Tensor, x: Tensor) -> dict[str, float]:
    """PSNR, PSNR-B, SSIM and BEF of ``img`` against ``x``."""
    img = img.clamp(0, 1).to(torch.float64)
    x = x.to(torch.float64)
    return {
        "PSNR": float(psnr(img, x)[0]),
        "PSNR-B": float(psnr_b(img, x)[0]),
        "SSIM": float(ssim(img, x)[0]),
        "BEF": float(bef(img)[0]),
    }


def run(a: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per photograph, quality and method."""
    torch.set_num_threads(a.threads)
    model = solvers.load_driftrec(a.model)
    if a.val:
        images = folder_photos(Path(a.photos) / "val")
        names = [f"val{i}" for i in range(len(images))]
    else:
        names = list(EVAL_PHOTOS)
        images = [photo(n) for n in names]
    rows: list[dict[str, Any]] = []
    kw: dict[str, Any] = {}
    if a.steps:
        kw["steps"] = a.steps
    if a.sampler:
        kw["sampler"] = a.sampler
    if a.grid_power is not None:
        kw["grid_power"] = a.grid_power
    if a.no_color_correction:
        kw["color_correction"] = False
    for name, full in zip(names, images, strict=True):
        x = centre(full if full.ndim == 4 else full.unsqueeze(0), a.size)
        if x.shape[1] == 1:
            x = x.expand(1, 3, *x.shape[-2:]).contiguous()
        for q in a.qualities:
            op = opkit.create("jpeg", shape=tuple(x.shape[1:]), quality=q)
            y = op(x)
            dec = op.display(y)
            rows.append({"image": name, "quality": q, "method": "original", **score(x, x), "sec": 0.0})
            rows.append({"image": name, "quality": q, "method": "decode", **score(dec, x), "sec": 0.0})
            for m in a.samples:
                g = torch.Generator().manual_seed(a.seed)
                tic = time.perf_counter()
                settings = {**driftrec_settings(model, op), **kw}  # the model's own, then the flags
                out = solvers.driftrec(op, y, model, num_samples=m, generator=g, progress=False, **settings)
                sec = time.perf_counter() - tic
                rows.append(
                    {"image": name, "quality": q, "method": f"DriftRec x{m}", **score(out, x), "sec": sec}
                )
    return rows


def table(rows: list[dict[str, Any]], qualities: list[int]) -> None:
    """Per quality: the means over images, and every image's gain (PSNR, PSNR-B, BEF ratio)."""
    for q in qualities:
        rq = [r for r in rows if r["quality"] == q]
        dec = {r["image"]: r for r in rq if r["method"] == "decode"}
        print(f"\n### quality {q} (Δ columns: mean of per-image gains against the decode)\n")
        cols = ["method", "PSNR", "PSNR-B", "SSIM", "BEF", "BEF ratio", "s/image", "ΔPSNR", "ΔPSNR-B"]
        print("| " + " | ".join(cols) + " |")
        print("|---|---|---|---|---|---|---|---|---|")
        for method in dict.fromkeys(r["method"] for r in rq):
            rm = [r for r in rq if r["method"] == method]

            def mean(k: str, rm: list[dict[str, Any]] = rm) -> float:
                return statistics.fmean(r[k] for r in rm)

            bef_dec = statistics.fmean(dec[r["image"]]["BEF"] for r in rm)
            ratio_s = f"{bef_dec / mean('BEF'):.1f}×" if mean("BEF") > 0 else "∞"
            if method == "original":  # PSNR against itself is infinite: only its blocking counts
                print(f"| original | | | | {mean('BEF'):.2f} | {ratio_s} | | | |")
                continue
            d_psnr = ", ".join(f"{r['PSNR'] - dec[r['image']]['PSNR']:+.2f}" for r in rm)
            d_psnrb = ", ".join(f"{r['PSNR-B'] - dec[r['image']]['PSNR-B']:+.2f}" for r in rm)
            print(
                f"| {method} | {mean('PSNR'):.2f} | {mean('PSNR-B'):.2f} | {mean('SSIM'):.4f} | "
                f"{mean('BEF'):.2f} | {ratio_s} | {statistics.median(r['sec'] for r in rm):.1f} | "
                f"{d_psnr} | {d_psnrb} |"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="a DriftRec model directory, or 'default'")
    p.add_argument("--qualities", default="5,10,20,30")
    p.add_argument("--samples", default="1,8", help="sample counts to average, comma-separated")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the solver's)")
    p.add_argument("--sampler", default=None)
    p.add_argument("--grid-power", type=float, default=None, help="the time grid (default: the solver's)")
    p.add_argument("--no-color-correction", action="store_true", help="keep the samples' channel means")
    p.add_argument("--val", action="store_true", help="the validation photographs instead")
    p.add_argument("--photos", default="runs/photos", help="output of scripts/fetch_photos.py")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args()
    a.qualities = [int(q) for q in a.qualities.split(",")]
    a.samples = [int(m) for m in a.samples.split(",")]
    tic = time.perf_counter()
    rows = run(a)
    chosen = {
        "steps": a.steps,
        "sampler": a.sampler,
        "grid_power": a.grid_power,
        "color_correction": False if a.no_color_correction else None,
    }
    settings = ", ".join(f"{k}={v}" for k, v in chosen.items() if v is not None) or "the CLI's defaults"
    print(
        f"DriftRec JPEG profile: model {a.model}, {a.size}² crops, {settings}, "
        f"{time.perf_counter() - tic:.0f} s"
    )
    table(rows, a.qualities)


if __name__ == "__main__":
    main()
