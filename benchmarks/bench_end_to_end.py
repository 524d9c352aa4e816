"""End-to-end restoration quality of the default models on photographs they were not trained on.

The tasks of the papers, at the settings of the project's issue:

* ``jpeg5``, ``jpeg10``, ``jpeg30``: DDRM-JPEG (20 steps, 8 samples averaged) against plain JPEG
  decoding, 4:2:0, libjpeg's standard tables (DDRM-JPEG paper, ImageNet model: +2.4, +2.3 and
  +2.1 dB PSNR at QF 5, 10 and 30);
* ``sr4``: DDRM 4× block super-resolution with noise σ_y = 0.05 (20 steps, 8 samples) against
  bicubic upsampling of ``y`` (DDRM paper: +2.7 dB);
* ``driftrec10``: DriftRec (blind; Euler–Maruyama, 100 steps, one sample, colour correction) on
  the decoded QF 10 JPEG, against the JPEG itself, in PSNR, PSNR-B and BEF.

Images: centre crops of :data:`solvers.data.EVAL_PHOTOS` (none of them is a training image).
Every method restores one image at a time; the wall time per image is the median over images
(so with ``--threads`` cores of this machine). Metrics are means over the images.

    python benchmarks/bench_end_to_end.py                          # everything, 256² crops
    python benchmarks/bench_end_to_end.py --tasks jpeg10,sr4 --size 128 --samples 2

Prints one markdown table (docs/benchmarks/end_to_end.rst holds the latest one).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

import opkit
import solvers
from opkit.metrics import bef, psnr, psnr_b, ssim
from solvers.data import EVAL_PHOTOS, photo

TASKS = ("jpeg5", "jpeg10", "jpeg30", "sr4", "driftrec10")
#: Gains reported by the papers (dB PSNR over the baseline), for the "paper" column.
PAPER_GAIN = {"jpeg5": 2.4, "jpeg10": 2.3, "jpeg30": 2.1, "sr4": 2.7}


def centre_crop(x: Tensor, size: int) -> Tensor:
    """The central ``size × size`` window (or the largest multiple of 16 that fits)."""
    h, w = x.shape[-2:]
    s = min(size, h - h % 16, w - w % 16)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def timed(fn: Callable[..., Tensor], *args: Any, **kwargs: Any) -> tuple[Tensor, float]:
    """``fn(*args, **kwargs)`` clipped to ``[0, 1]`` and its wall time in seconds (synchronised)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    tic = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out.clamp(0, 1), time.perf_counter() - tic


def run_task(
    task: str, images: list[Tensor], a: argparse.Namespace, models: dict[str, Any]
) -> list[dict[str, Any]]:
    """Baseline and restoration metrics of one task over all images (one row per method)."""
    dev = torch.device(a.device)
    g = torch.Generator(dev).manual_seed(a.seed)
    quiet: dict[str, Any] = {"generator": g, "progress": False}
    acc: dict[str, dict[str, list[float]]] = {}

    def add(method: str, out: Tensor, x: Tensor, sec: float) -> None:
        d = acc.setdefault(method, {"psnr": [], "ssim": [], "psnr_b": [], "bef": [], "sec": []})
        d["psnr"].append(float(psnr(out, x)[0]))
        d["ssim"].append(float(ssim(out, x)[0]))
        d["psnr_b"].append(float(psnr_b(out, x)[0]))
        d["bef"].append(float(bef(out)[0]))
        d["sec"].append(sec)

    for x in images:
        shape = tuple(x.shape[1:])
        if task.startswith("jpeg") or task.startswith("driftrec"):
            q = int(task.removeprefix("jpeg").removeprefix("driftrec"))
            op = opkit.create("jpeg", shape=shape, quality=q)
            y = op(x)
            dec, sec = timed(op.decode, y)
            add(f"JPEG decode (QF {q})", dec, x, sec)
            if task.startswith("jpeg"):
                out, sec = timed(
                    solvers.ddrm, op, y, models["prior"], steps=a.steps, num_samples=a.samples, **quiet
                )
                add(f"DDRM-JPEG ({a.steps} steps, {a.samples} samples)", out, x, sec)
            else:
                out, sec = timed(
                    solvers.driftrec, dec, models["driftrec"], steps=a.driftrec_steps, generator=g
                )
                add(f"DriftRec (EM, {a.driftrec_steps} steps)", out, x, sec)
        elif task == "sr4":
            op = opkit.create("sr_block", shape=shape, factor=4)
            y = op(x) + a.sigma_y * torch.randn(op(x).shape, generator=g, device=dev)
            up, sec = timed(
                torch.nn.functional.interpolate, y, scale_factor=4, mode="bicubic", align_corners=False
            )
            add("bicubic upsampling of y", up, x, sec)
            out, sec = timed(
                solvers.ddrm,
                op,
                y,
                models["prior"],
                steps=a.steps,
                sigma_y=a.sigma_y,
                num_samples=a.samples,
                **quiet,
            )
            add(f"DDRM ({a.steps} steps, {a.samples} samples)", out, x, sec)
        else:
            raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    rows = []
    base = None
    for method, d in acc.items():
        row = {k: statistics.fmean(v) for k, v in d.items() if k != "sec"}
        row["sec"] = statistics.median(d["sec"])
        row["task"], row["method"] = task, method
        if base is None:
            base = row
            row["gain"] = float("nan")
        else:
            row["gain"] = row["psnr"] - base["psnr"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    p.add_argument("--size", type=int, default=256, help="centre-crop side")
    p.add_argument("--images", default=",".join(EVAL_PHOTOS))
    p.add_argument("--steps", type=int, default=20, help="DDRM steps")
    p.add_argument("--samples", type=int, default=8, help="DDRM samples averaged per image")
    p.add_argument("--driftrec-steps", type=int, default=100)
    p.add_argument("--sigma-y", type=float, default=0.05)
    p.add_argument("--prior", default="default", help="DDRM prior directory")
    p.add_argument("--driftrec", default="default", help="DriftRec model directory")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (models and images on it)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    for t in tasks:
        if t not in TASKS:
            p.error(f"unknown task {t!r}; choose from {','.join(TASKS)}")
    images = [centre_crop(photo(n), a.size).to(a.device) for n in a.images.split(",")]
    models: dict[str, Any] = {}
    if any(t != "driftrec10" for t in tasks):
        models["prior"] = solvers.load_prior(a.prior, device=a.device)
    if "driftrec10" in tasks:
        models["driftrec"] = solvers.load_driftrec(a.driftrec, device=a.device)
    rows = [r for t in tasks for r in run_task(t, images, a, models)]
    sizes = ", ".join(f"{n} {tuple(x.shape[-2:])}" for n, x in zip(a.images.split(","), images, strict=True))
    print(
        f"images (centre crops): {sizes}; device {a.device}; torch threads: {torch.get_num_threads()}; "
        f"seed {a.seed}"
    )
    print(
        "| task | method | PSNR (dB) | gain (dB) | paper gain (dB) | SSIM | PSNR-B (dB) | BEF | s / image |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        first = r["gain"] != r["gain"]  # nan: the baseline row
        gain = "" if first else f"{r['gain']:+.2f}"
        paper = "" if first or r["task"] not in PAPER_GAIN else f"+{PAPER_GAIN[r['task']]:.1f}"
        print(
            f"| {r['task']} | {r['method']} | {r['psnr']:.2f} | {gain} | {paper} | {r['ssim']:.4f} | "
            f"{r['psnr_b']:.2f} | {r['bef']:.5f} | {r['sec']:.2f} |"
        )
    return rows


if __name__ == "__main__":
    main()
