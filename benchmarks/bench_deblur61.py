"""DDRM with the bundled prior against oracle-tuned Wiener on the field's 61×61 deblurring problems.

The problems are those of DPS, DiffPIR and DAPS (:mod:`_deconv`): 256² centre crops of the held-out
photographs (:data:`solvers.common.data.EVAL_PHOTOS`: never trained on, never used to choose a
setting), blurred circularly by the 61×61 motion kernel (intensity 0.5, a seed per image drawn
from ``--seed``) or the 61×61 Gaussian (σ = 3), plus noise σ_y = 0.05. The baseline is Wiener
deconvolution at its best regulariser and λ **for each image** (chosen with the clean image).
DDRM runs ``conv2d`` with its default threshold and the settings the prior ships for ``conv2d``
(``ddrm_settings.json``, chosen on the validation photographs with ``benchmarks/tune_settings.py
--task gauss61`` and ``--task motion61``), unless ``--steps``/``--samples`` override them.

Prints one row per image and kernel (blurred input, Wiener and its λ, DDRM, DDRM's gain over
Wiener) and the mean gain per kernel against the goal of +1 dB.

    python benchmarks/bench_deblur61.py                       # 4 photographs × 2 kernels, 256²
    python benchmarks/bench_deblur61.py --tasks gauss61 --size 128 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from _deconv import SIGMA_Y, deblur_problem
from _tasks import centre_crop, scores

import solvers
from solvers.common.data import EVAL_PHOTOS, photo

GOAL_DB = 1.0
TASKS = ("motion61", "gauss61")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--images", default=",".join(EVAL_PHOTOS))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--prior", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = solvers.load_prior(a.prior, device=a.device)
    kw: dict[str, Any] = dict(model.settings.get("conv2d", {}))
    kw.update({k: v for k, v in (("steps", a.steps), ("num_samples", a.samples)) if v})
    names = a.images.split(",")
    rows: list[dict[str, Any]] = []
    for task in a.tasks.split(","):
        g = torch.Generator().manual_seed(a.seed)  # kernels (motion) and noise, image after image
        for name in names:
            x = centre_crop(photo(name), a.size).to(a.device)
            pb = deblur_problem(task, x, g)
            tic = time.perf_counter()
            out = solvers.ddrm(
                pb["op"],
                pb["y"],
                model,
                sigma_y=SIGMA_Y,
                generator=torch.Generator(a.device).manual_seed(a.seed),
                progress=False,
                **kw,
            )
            sec = time.perf_counter() - tic
            row = {
                "task": task,
                "image": name,
                "blurred": scores(pb["y"], x)["psnr"],
                "wiener": scores(pb["baseline"], x)["psnr"],
                "lam": pb["lam"],
                "reg": pb["regulariser"],
                "ddrm": scores(out, x)["psnr"],
                "ddrm_ssim": scores(out, x)["ssim"],
                "wiener_ssim": scores(pb["baseline"], x)["ssim"],
                "dropped": pb["op"].dropped,
                "sec": sec,
            }
            rows.append(row)
            print(
                f"  {task} {name}: Wiener {row['wiener']:.2f} dB, DDRM {row['ddrm']:.2f} dB ({sec:.0f} s)",
                flush=True,
            )
    settings = ", ".join(f"{k}={v}" for k, v in kw.items()) or "DDRM defaults"
    print(
        f"\n{a.size}² centre crops of {', '.join(names)}; σ_y = {SIGMA_Y}; circular blur; seed {a.seed}; "
        f"DDRM ({settings}), conv2d threshold 3e-2; device {a.device}, torch {torch.__version__}\n"
    )
    print(
        "| kernel | image | blurred y (dB) | Wiener, oracle λ (dB) | λ, regulariser | DDRM (dB) "
        "| DDRM − Wiener (dB) | SSIM Wiener → DDRM | s / image |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['task']} | {r['image']} | {r['blurred']:.2f} | {r['wiener']:.2f} | {r['lam']:.2g}, "
            f"{r['reg']} | {r['ddrm']:.2f} | {r['ddrm'] - r['wiener']:+.2f} | "
            f"{r['wiener_ssim']:.3f} → {r['ddrm_ssim']:.3f} | {r['sec']:.0f} |"
        )
    print(f"\n| kernel | Wiener (dB) | DDRM (dB) | mean gain (dB) | worst image (dB) | ≥ +{GOAL_DB:g} dB |")
    print("|---|---|---|---|---|---|")
    for task in dict.fromkeys(r["task"] for r in rows):
        rs = [r for r in rows if r["task"] == task]
        gains = [r["ddrm"] - r["wiener"] for r in rs]
        mean = statistics.fmean(gains)
        print(
            f"| {task} | {statistics.fmean(r['wiener'] for r in rs):.2f} | "
            f"{statistics.fmean(r['ddrm'] for r in rs):.2f} | {mean:+.2f} | {min(gains):+.2f} | "
            f"{'yes' if mean >= GOAL_DB else 'no'} |"
        )
    return rows


if __name__ == "__main__":
    main()
