"""DiffPIR and DPS beside DDRM and ΠGDM on the evaluation photographs, and DPS's memory.

Quality (the default mode): tasks of :mod:`_tasks` (``sr4``: 4× block averaging with σ_y = 0.05,
baseline bicubic; ``deblur``: Gaussian blur σ = 2 px with σ_y = 0.02, baseline the blurred image),
the bundled default prior, centre crops of :data:`solvers.common.data.EVAL_PHOTOS`. Every solver
is called through its registry entry with the settings it runs with before a model is loaded
(``SolverEntry.defaults(None, op)``: the papers' defaults -- DDRM η = 0.85, η_b = 1; ΠGDM η = 1;
DiffPIR the task's λ and ζ on the quadratic grid; DPS the task's ζ′), one sample, the same
seed, and the number of steps (network calls) of ``--runs``: ``solver:steps`` items, each a row.
Times are process CPU seconds per image (one torch thread by default).

Rows go to ``--jsonl`` as they finish; a rerun with the same file skips the rows it holds, so a
long run can be stopped and resumed. Prints a markdown table (means over the images) and, with
``--rst PATH``, writes it as reStructuredText for the docs. The tables of
``docs/solvers/diffpir.rst`` and ``docs/solvers/dps.rst`` (tens of CPU minutes on two cores)::

    python benchmarks/bench_diffpir_dps.py --size 128 --tasks sr4,deblur --images rocket,camera \\
        --runs ddrm:20,pigdm:20,diffpir:20,diffpir:100,dps:20,dps:100 \\
        --jsonl /tmp/b24/quality.jsonl --rst docs/_static/diffpir_dps_quality.rst
    python benchmarks/bench_diffpir_dps.py --size 64 --tasks sr4 --images rocket,camera \\
        --runs dps:1000,dps:250,dps:100,dps:50 --jsonl /tmp/b24/steps.jsonl --rst docs/_static/dps_steps.rst

Memory (``--memory``): the peak memory of one DPS step (forward with autograd and backward
through the prior) beside one forward without autograd, for each batch of ``--batches``, each
measured in a fresh process (CPU: the growth of ``ru_maxrss`` over the loaded prior and inputs;
CUDA: ``torch.cuda.max_memory_allocated``)::

    python benchmarks/bench_diffpir_dps.py --memory --size 256 --batches 1,4 \\
        --rst docs/_static/dps_memory_256.rst
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _tasks import BASELINE, centre_crop, make_problem, scores

import opkit
import solvers
from opkit.files import write_atomic
from solvers.common.data import EVAL_PHOTOS, photo

LABELS = {"ddrm": "DDRM", "pigdm": "ΠGDM", "diffpir": "DiffPIR", "dps": "DPS", "ddnm": "DDNM"}


def _runs(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        name, _, steps = item.partition(":")
        out.append((name.strip(), int(steps)))
    return out


def _key(task: str, image: str, method: str) -> str:
    return f"{task}|{image}|{method}"


def quality(a: argparse.Namespace, argv: list[str] | None) -> list[dict[str, Any]]:
    """Restore every image of every task with every run; the rows (one per image and method)."""
    reg = opkit.default_registry()
    prior = solvers.load_prior(a.prior)
    names = a.images.split(",")
    images = [centre_crop(photo(n), a.size) for n in names]
    runs = _runs(a.runs)
    done: dict[str, dict[str, Any]] = {}
    path = Path(a.jsonl) if a.jsonl else None
    if path is not None and path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[_key(row["task"], row["image"], row["method"])] = row
    rows: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        if path is not None and _key(row["task"], row["image"], row["method"]) not in done:
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    for task in a.tasks.split(","):
        g = torch.Generator().manual_seed(a.seed)
        for name, x in zip(names, images, strict=True):
            pb = make_problem(task, x, g)  # the same noise draws, whatever rows are skipped
            keep(
                {
                    "task": task,
                    "method": BASELINE[task],
                    "image": name,
                    "nfe": 0,
                    "sec": 0.0,
                    **scores(pb.baseline, x),
                }
            )
            for solver, steps in runs:
                method = f"{LABELS.get(solver, solver)} ({steps})"
                key = _key(task, name, method)
                if key in done:
                    rows.append(done[key])
                    continue
                entry = reg.solver_entry(solver)
                kw = {**entry.defaults(None, pb.op), "steps": steps, "num_samples": 1}
                if "sigma_y" in entry.options():
                    kw["sigma_y"] = pb.sigma_y
                tic = time.process_time()
                out, info = entry.solver(
                    pb.op,
                    pb.y,
                    prior,
                    **kw,
                    generator=torch.Generator().manual_seed(a.seed),
                    progress=False,
                    return_info=True,
                )
                sec = time.process_time() - tic
                row = {"task": task, "method": method, "image": name, "nfe": info.nfe, "sec": sec}
                keep({**row, **scores(out, x), "settings": {k: v for k, v in kw.items() if k != "steps"}})
                print(f"{task} {name} {method}: {rows[-1]['psnr']:.2f} dB, {sec:.0f} s", flush=True)
    crops = ", ".join(f"{n} {tuple(x.shape[-2:])}" for n, x in zip(names, images, strict=True))
    head = (
        f"images (centre crops): {crops}; prior {a.prior}; 1 sample, seed {a.seed}; process CPU time, "
        f"torch threads {torch.get_num_threads()}; torch {torch.__version__}"
    )
    table: list[tuple[str, ...]] = [
        ("task", "method", "NFE", "PSNR (dB)", "gain (dB)", "SSIM", "CPU s / image")
    ]
    for task in a.tasks.split(","):
        base = None
        for m in dict.fromkeys(r["method"] for r in rows if r["task"] == task):
            rs = [r for r in rows if r["task"] == task and r["method"] == m]
            psnr = statistics.fmean(r["psnr"] for r in rs)
            ssim = statistics.fmean(r["ssim"] for r in rs)
            sec = statistics.median(r["sec"] for r in rs)
            gain = "" if base is None else f"{psnr - base:+.2f}"
            base = psnr if base is None else base
            table.append((task, m, str(rs[0]["nfe"]), f"{psnr:.2f}", gain, f"{ssim:.4f}", f"{sec:.0f}"))
    _emit(table, head, a.rst, argv)
    return rows


def _emit(table: list[tuple[str, ...]], head: str, rst: str | None, argv: list[str] | None) -> None:
    print(head)
    print("\n| " + " | ".join(table[0]) + " |")
    print("|" + "---|" * len(table[0]))
    for row in table[1:]:
        print("| " + " | ".join(row) + " |")
    if rst:
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        rule = "  ".join("=" * w for w in widths)
        lines = [rule, "  ".join(c.ljust(w) for c, w in zip(table[0], widths, strict=True)), rule]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table[1:]]
        lines.append(rule)
        cmd = "python benchmarks/bench_diffpir_dps.py " + " ".join(argv if argv is not None else [])
        text = f"Measured with ``{cmd.strip()}`` ({head}).\n\n" + "\n".join(lines) + "\n"
        write_atomic(rst, text)
        print(f"wrote {rst}")


def memory_one(a: argparse.Namespace) -> None:
    """One measurement in this (fresh) process: print a JSON line of peak memories in MiB."""
    import resource

    dev = torch.device(a.device)
    prior = solvers.load_prior(a.prior, device=a.device) if a.device != "cpu" else solvers.load_prior(a.prior)
    x = torch.randn((a.batch, 3, a.size, a.size), generator=torch.Generator().manual_seed(0)).to(dev)
    t = torch.full((a.batch,), 500, device=dev)

    def peak() -> float:
        if dev.type == "cuda":
            return torch.cuda.max_memory_allocated(dev) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    base = peak()
    if a.what == "forward":
        with torch.no_grad():
            prior(x, t)
    else:
        xi = x.clone().requires_grad_(True)
        eps = prior.eps_with_grad(xi, t)
        torch.autograd.grad(eps, xi, grad_outputs=torch.ones_like(eps))
    print(json.dumps({"batch": a.batch, "what": a.what, "base": base, "peak": peak()}))


def memory(a: argparse.Namespace, argv: list[str] | None) -> None:
    """The peak memory of a forward and of a DPS step (forward with autograd + backward) per batch."""
    table: list[tuple[str, ...]] = [
        ("batch", "forward (no autograd), MiB", "DPS step (forward + backward), MiB", "ratio")
    ]
    for b in (int(v) for v in a.batches.split(",")):
        got = {}
        for what in ("forward", "dps"):
            cmd = [sys.executable, __file__, "--memory-one", "--what", what, "--batch", str(b)]
            cmd += [
                "--size",
                str(a.size),
                "--prior",
                a.prior,
                "--device",
                a.device,
                "--threads",
                str(a.threads),
            ]
            out = (
                subprocess.run(cmd, capture_output=True, text=True, check=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            r = json.loads(out)
            got[what] = r["peak"] - r["base"]
        table.append(
            (str(b), f"{got['forward']:.0f}", f"{got['dps']:.0f}", f"{got['dps'] / got['forward']:.1f}")
        )
        print(table[-1], flush=True)
    what = "torch.cuda.max_memory_allocated" if a.device != "cpu" else "peak resident set size (ru_maxrss)"
    head = (
        f"{a.size}×{a.size} RGB, prior {a.prior}, device {a.device}; growth of the {what} over the loaded "
        f"prior and inputs, each in a fresh process; torch {torch.__version__}"
    )
    _emit(table, head, a.rst, argv)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sr4,deblur")
    p.add_argument("--size", type=int, default=256, help="centre-crop side")
    p.add_argument("--images", default=",".join(EVAL_PHOTOS))
    p.add_argument("--runs", default="ddrm:20,pigdm:20,diffpir:20,diffpir:100,dps:20,dps:100")
    p.add_argument("--prior", default="default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jsonl", help="append each row here; rows already there are not run again")
    p.add_argument("--rst", help="also write the table here (reStructuredText)")
    p.add_argument("--memory", action="store_true", help="measure DPS's peak memory instead")
    p.add_argument("--batches", default="1,2,4")
    p.add_argument("--device", default="cpu")
    p.add_argument("--memory-one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--what", default="dps", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.memory_one:
        memory_one(a)
    elif a.memory:
        memory(a, argv)
    else:
        quality(a, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
