"""End-to-end restoration quality of the bundled models on photographs they were never trained on.

Every task of :mod:`_tasks` runs with the **command line's defaults**: the DDRM settings the
bundled prior ships for the task's operator (``ddrm_settings.json``: start time, η, η_b, steps and
samples, chosen on the validation photographs with ``benchmarks/tune_settings.py``), unless
``--steps``/``--samples`` override them. Baselines are those of :mod:`_tasks` (libjpeg's decode,
bicubic, the degraded image, ``H†y``). ``driftrec10`` restores the decoded quality-10 JPEG blindly
with the bundled DriftRec model. ``main`` is the README's main job on the full-size ``rocket``:
``opkit degrade`` to a real quality-10 JPEG file and ``opkit restore`` of that file, run as
commands, timed as a user sees it (start-up and model loading included).

Images: centre crops of :data:`solvers.common.data.EVAL_PHOTOS` (none of them is a training or
validation image); ``colorize`` skips the greyscale ones (``camera``, ``coins``), which have no
colours to restore. Prints a markdown table of the means per task and method (the wall time is the
median per image) and one of every image's gain, so that "on every photo" can be checked.

    python benchmarks/bench_end_to_end.py                              # every task, 256² crops
    python benchmarks/bench_end_to_end.py --tasks main,jpeg10 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _tasks import BASELINE, OPERATOR, TASKS, centre_crop, make_problem, scores
from torch import Tensor

import solvers
from opkit.images import load_image
from solvers.common.data import EVAL_PHOTOS, photo

ALL = (*TASKS, "driftrec10", "main")
#: PSNR gains reported by the papers over the same baselines, for the "paper" column.
PAPER_GAIN = {"jpeg5": 2.4, "jpeg10": 2.3, "jpeg30": 2.1, "sr4": 2.7, "main": 2.3}


def _sync(device: str) -> None:
    """Wait for the device's queued work, so that wall times cover it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_cli(args: list[str]) -> float:
    """Run ``opkit ARGS`` as a command; return its wall time in seconds."""
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", "opkit_cli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - tic


def main_job(a: argparse.Namespace) -> list[dict[str, Any]]:
    """The README's main command on the full-size rocket: JPEG decode and restoration rows."""
    x = photo("rocket")
    with tempfile.TemporaryDirectory() as tmp:
        jpg, out = Path(tmp) / "rocket_q10.jpg", Path(tmp) / "rocket_restored.png"
        run_cli(["degrade", "sample:rocket", "--op", "jpeg", "--param", "quality=10", "-o", str(jpg)])
        cmd = ["restore", str(jpg), "--op", "jpeg", "-o", str(out), "--quiet", "--device", a.device]
        cmd += ["--steps", str(a.steps)] if a.steps else []
        cmd += ["--samples", str(a.samples)] if a.samples else []
        sec = run_cli(cmd)
        dec = load_image(jpg)
        restored = load_image(out)
    rows = [
        {"task": "main", "method": "JPEG decode (libjpeg)", "image": "rocket", **scores(dec, x), "sec": 0.0},
        {"task": "main", "method": "opkit restore", "image": "rocket", **scores(restored, x), "sec": sec},
    ]
    return rows


def run_task(
    task: str, names: list[str], images: list[Tensor], a: argparse.Namespace
) -> list[dict[str, Any]]:
    """Baseline and restoration scores of one task, one row per image and method."""
    g = torch.Generator(a.device).manual_seed(a.seed)
    rows: list[dict[str, Any]] = []
    if task == "driftrec10":
        model: Any = solvers.load_driftrec(a.driftrec, device=a.device)
        kw: dict[str, Any] = dict(model.settings.get("jpeg", {}))  # the model's own, as the CLI's
        kw.update({"steps": a.driftrec_steps, "num_samples": a.samples or 1})
    else:
        model = solvers.load_prior(a.prior, device=a.device)
        kw = dict(model.settings.get(OPERATOR[task], {}))
        kw.update({k: v for k, v in (("steps", a.steps), ("num_samples", a.samples)) if v})
    for name, x in zip(names, images, strict=True):
        if task == "colorize" and bool((x == x[:, :1]).all()):  # R = G = B
            continue  # a greyscale photograph has no colours to restore
        pb = make_problem("jpeg10" if task == "driftrec10" else task, x, g)
        rows.append(
            {
                "task": task,
                "method": BASELINE.get(task, "JPEG decode"),
                "image": name,
                **scores(pb.baseline, x),
                "sec": 0.0,
            }
        )
        gen = torch.Generator(a.device).manual_seed(a.seed)
        _sync(a.device)
        tic = time.perf_counter()
        if task == "driftrec10":
            out = solvers.driftrec(pb.baseline, model, sde="model", generator=gen, **kw)
            method = f"DriftRec ({kw['steps']} steps, {kw['num_samples']} samples)"
        else:
            out = solvers.ddrm(pb.op, pb.y, model, sigma_y=pb.sigma_y, generator=gen, progress=False, **kw)
            method = f"DDRM ({', '.join(f'{k}={v}' for k, v in kw.items())})"
        _sync(a.device)
        sec = time.perf_counter() - tic
        rows.append(
            {
                "task": task,
                "method": method,
                "image": name,
                **scores(out, x),
                "sec": sec,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    p.add_argument("--size", type=int, default=256, help="centre-crop side")
    p.add_argument("--images", default=",".join(EVAL_PHOTOS))
    p.add_argument("--steps", type=int, default=None, help="override the tuned DDRM/DriftRec steps")
    p.add_argument("--samples", type=int, default=None, help="override the tuned samples")
    p.add_argument("--driftrec-steps", type=int, default=100)
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
        if t not in ALL:
            p.error(f"unknown task {t!r}; choose from {','.join(ALL)}")
    names = a.images.split(",")
    images = [centre_crop(photo(n), a.size).to(a.device) for n in names]
    rows: list[dict[str, Any]] = []
    for t in tasks:
        rows += main_job(a) if t == "main" else run_task(t, names, images, a)
    sizes = ", ".join(f"{n} {tuple(x.shape[-2:])}" for n, x in zip(names, images, strict=True))
    print(
        f"images (centre crops): {sizes}; main: full rocket (427, 640); device {a.device}; torch threads: "
        f"{torch.get_num_threads()}; seed {a.seed}; torch {torch.__version__}"
    )
    print(
        "\n| task | method | PSNR (dB) | gain (dB) | paper gain (dB) | SSIM | PSNR-B (dB) | BEF "
        "| block-mean error | s / image |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in tasks:
        methods = list(dict.fromkeys(r["method"] for r in rows if r["task"] == t))
        base = None
        for m in methods:
            rs = [r for r in rows if r["task"] == t and r["method"] == m]
            mean = {k: statistics.fmean(r[k] for r in rs) for k in ("psnr", "ssim", "psnr_b", "bef", "block")}
            sec = statistics.median(r["sec"] for r in rs)
            gain = "" if base is None else f"{mean['psnr'] - base:+.2f}"
            paper = f"+{PAPER_GAIN[t]:.1f}" if base is not None and t in PAPER_GAIN else ""
            print(
                f"| {t} | {m} | {mean['psnr']:.2f} | {gain} | {paper} | {mean['ssim']:.4f} | "
                f"{mean['psnr_b']:.2f} | {mean['bef']:.2f} | {mean['block']:.4f} | {sec:.1f} |"
            )
            base = mean["psnr"] if base is None else base
    print(
        "\n| task | image | baseline PSNR (dB) | restored PSNR (dB) | gain (dB) | ΔSSIM | ΔPSNR-B (dB) "
        "| ΔBEF | block-mean error / baseline's |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for t in tasks:
        per = [r for r in rows if r["task"] == t]
        for b, r in zip(per[0::2], per[1::2], strict=True):
            print(
                f"| {t} | {b['image']} | {b['psnr']:.2f} | {r['psnr']:.2f} | {r['psnr'] - b['psnr']:+.2f} | "
                f"{r['ssim'] - b['ssim']:+.4f} | {r['psnr_b'] - b['psnr_b']:+.2f} | "
                f"{r['bef'] - b['bef']:+.2f} | {r['block'] / b['block']:.2f} |"
            )
    return rows


if __name__ == "__main__":
    main()
