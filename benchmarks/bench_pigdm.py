"""ΠGDM beside DDRM on the evaluation photographs: same prior, same steps, same samples.

Tasks of :mod:`_tasks`: ``jpeg10`` (quality-10 JPEG, baseline libjpeg's decode) and ``sr4``
(4× block averaging with σ_y = 0.05, baseline bicubic). Both solvers use the bundled default
prior, the same number of steps and samples and the same seed, each with its own paper defaults
otherwise (DDRM: η = 0.85, η_b = 1 for SR and η = 1, η_b = 0.4 from t = 300 for JPEG; ΠGDM:
η = 1 over the whole schedule). Images: centre crops of :data:`solvers.common.data.EVAL_PHOTOS`.

Prints a markdown table (means over the images; wall time is the median per image) and, with
``--rst PATH``, writes the same table as reStructuredText for the docs.

    python benchmarks/bench_pigdm.py --size 128 --steps 20 --rst docs/_static/pigdm_vs_ddrm.rst
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from _tasks import BASELINE, centre_crop, make_problem, scores

import solvers
from opkit.files import write_atomic
from solvers.common.data import EVAL_PHOTOS, photo


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="jpeg10,sr4")
    p.add_argument("--size", type=int, default=128, help="centre-crop side")
    p.add_argument("--images", default=",".join(EVAL_PHOTOS))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--prior", default="default")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rst", help="also write the table here (reStructuredText)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    prior = solvers.load_prior(a.prior)
    names = a.images.split(",")
    images = [centre_crop(photo(n), a.size) for n in names]
    rows: list[dict[str, Any]] = []
    for task in a.tasks.split(","):
        g = torch.Generator().manual_seed(a.seed)
        for name, x in zip(names, images, strict=True):
            pb = make_problem(task, x, g)
            rows.append({"task": task, "method": BASELINE[task], "image": name, **scores(pb.baseline, x)})
            rows[-1]["sec"] = 0.0
            for label, solver in (("DDRM", solvers.ddrm), ("ΠGDM", solvers.pigdm)):
                gen = torch.Generator().manual_seed(a.seed)
                tic = time.perf_counter()
                out = solver(
                    pb.op,
                    pb.y,
                    prior,
                    steps=a.steps,
                    num_samples=a.samples,
                    sigma_y=pb.sigma_y,
                    generator=gen,
                    progress=False,
                )
                sec = time.perf_counter() - tic
                rows.append({"task": task, "method": label, "image": name, **scores(out, x), "sec": sec})
            done = [r for r in rows if r["task"] == task and r["image"] == name]
            print(
                f"{task} {name}: " + ", ".join(f"{r['method']} {r['psnr']:.2f} dB" for r in done), flush=True
            )
    sizes = ", ".join(f"{n} {tuple(x.shape[-2:])}" for n, x in zip(names, images, strict=True))
    head = (
        f"images (centre crops): {sizes}; prior {a.prior}; {a.steps} steps, {a.samples} sample(s), "
        f"seed {a.seed}; torch threads {torch.get_num_threads()}; torch {torch.__version__}"
    )
    table: list[tuple[str, ...]] = [
        ("task", "method", "PSNR (dB)", "gain (dB)", "SSIM", "PSNR-B (dB)", "s / image")
    ]
    for task in a.tasks.split(","):
        base = None
        for m in dict.fromkeys(r["method"] for r in rows if r["task"] == task):
            rs = [r for r in rows if r["task"] == task and r["method"] == m]
            mean = {k: statistics.fmean(r[k] for r in rs) for k in ("psnr", "ssim", "psnr_b")}
            sec = statistics.median(r["sec"] for r in rs)
            gain = "" if base is None else f"{mean['psnr'] - base:+.2f}"
            base = mean["psnr"] if base is None else base
            table.append(
                (
                    task,
                    m,
                    f"{mean['psnr']:.2f}",
                    gain,
                    f"{mean['ssim']:.4f}",
                    f"{mean['psnr_b']:.2f}",
                    f"{sec:.1f}",
                )
            )
    print(head)
    print("\n| " + " | ".join(table[0]) + " |")
    print("|" + "---|" * len(table[0]))
    for row in table[1:]:
        print("| " + " | ".join(row) + " |")
    if a.rst:
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        rule = "  ".join("=" * w for w in widths)
        lines = [rule, "  ".join(c.ljust(w) for c, w in zip(table[0], widths, strict=True)), rule]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table[1:]]
        lines.append(rule)
        cmd = "python benchmarks/bench_pigdm.py " + " ".join(argv if argv is not None else [])
        text = f"Measured with ``{cmd.strip()}`` ({head}).\n\n" + "\n".join(lines) + "\n"
        write_atomic(a.rst, text)
        print(f"wrote {a.rst}")
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
