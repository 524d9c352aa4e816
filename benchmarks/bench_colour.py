"""The main job's colours: how colourful DDRM-JPEG's restoration is against the JPEG it came from.

For each held-out photograph (:data:`solvers.common.data.EVAL_PHOTOS`, a centred 256² crop; the
grey ones saved as colour JPEGs, as a camera would) at quality 10, DDRM restores with the bundled
prior and its tuned settings (``ddrm_settings.json``, seed 0), and the table gives the mean chroma
magnitude ``mean √(Cb² + Cr²)`` (JFIF, 0–255 units) of the original, of libjpeg's decode and of the
restoration with and without :meth:`~opkit_plugins.jpeg.JPEG.calibrate`, and the PSNR gains over
the decode. Both restorations come from one run: the uncalibrated one is what the solver handed to
``calibrate``. ``--full`` adds the README's main job (the whole rocket), about 4 CPU-minutes.

    python benchmarks/bench_colour.py [--full] [--quality 10] [--size 256] [--photos rocket,camera]
                                      [--prior runs/prior3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from torch import Tensor

import opkit
import solvers
from opkit.metrics import psnr
from opkit_plugins.jpeg import chroma_strength
from solvers.common.data import EVAL_PHOTOS, photo
from solvers.methods.ddrm import ddrm_settings


def chroma(x: Tensor) -> float:
    """Mean chroma magnitude √(Cb² + Cr²) in 0–255 units (JFIF, centred)."""
    return 255 * float(chroma_strength(x).mean())


def restore(x: Tensor, quality: int, prior: Any) -> dict[str, Any]:
    op = opkit.create("jpeg", shape=tuple(x.shape[1:]), quality=quality)
    y = op(x)
    seen: list[Tensor] = []
    calibrate = op.calibrate

    def record(a: Tensor, d: Tensor) -> Tensor:
        seen.append(a.clone())
        return calibrate(a, d)

    op.calibrate = record  # type: ignore[method-assign]
    settings = ddrm_settings(prior, op)
    tic = time.perf_counter()
    out = solvers.ddrm(op, y, prior, generator=torch.Generator().manual_seed(0), progress=False, **settings)
    sec = time.perf_counter() - tic
    k = settings.get("num_samples", 1)
    raw = seen[0].view(x.shape[0], k, *x.shape[1:]).mean(1) if k > 1 else seen[0]
    return {"dec": op.display(y), "raw": raw, "out": out, "sec": sec}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quality", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--full", action="store_true", help="also the whole rocket (the README's main job)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photos", default=",".join(EVAL_PHOTOS), help="comma-separated photo names")
    ap.add_argument("--prior", default="default", help="the prior to restore with (a model folder)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    prior = solvers.load_prior(a.prior)
    cases: list[tuple[str, Tensor]] = []
    for name in a.photos.split(","):
        x = photo(name)
        x = x if x.ndim == 4 else x[None]
        x = x.expand(1, 3, *x.shape[-2:]) if x.shape[1] == 1 else x
        h, w = x.shape[-2:]
        t, left = (h - a.size) // 2, (w - a.size) // 2
        cases.append((f"{name} {a.size}²", x[..., t : t + a.size, left : left + a.size].contiguous()))
    if a.full:
        x = photo("rocket")
        cases.append(("rocket (full, the main job)", x if x.ndim == 4 else x[None]))
    print(f"DDRM-JPEG at quality {a.quality}, prior {a.prior!r}, its tuned settings, seed 0\n")
    print(
        "| photo | chroma: original | decode | restored, uncalibrated | restored | PSNR decode | "
        "Δ uncalibrated | Δ restored | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    gains = []
    for name, x in cases:
        r = restore(x, a.quality, prior)
        cd = chroma(r["dec"])

        def rel(v: Tensor, cd: float = cd) -> str:
            c = chroma(v)
            return f"{c:.2f} ({100 * (c / cd - 1):+.1f} %)" if cd > 0.05 else f"{c:.2f}"

        p0 = float(psnr(r["dec"], x))
        d_raw, d_out = float(psnr(r["raw"], x)) - p0, float(psnr(r["out"], x)) - p0
        gains.append(d_out)
        print(
            f"| {name} | {chroma(x):.2f} | {cd:.2f} | {rel(r['raw'])} | {rel(r['out'])} | {p0:.2f} | "
            f"{d_raw:+.2f} | {d_out:+.2f} | {r['sec']:.0f} |"
        )
    print(f"\nmean Δ restored: {sum(gains) / len(gains):+.2f} dB; lowest {min(gains):+.2f} dB")


if __name__ == "__main__":
    main()
