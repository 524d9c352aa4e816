"""One prepared command per device: every device test and every benchmark, tables into the docs.

On a GPU::

    python benchmarks/run_all.py --device cuda

runs, in one process tree and within ``--budget`` seconds (default 570, under ten minutes):

1. every test marked ``cuda`` (``pytest -m cuda``, with ``OPKIT_TEST_DEVICES`` set to the device:
   every operator's forward/adjoint/pinv against CPU float64, DDRM and DriftRec with
   half-precision models, the JPEG pipeline bit-exact against the CPU, and the older CUDA
   checks of the operator files);
2. every benchmark script of ``benchmarks/`` on that device (operators against native torch
   calls; DDRM overhead against an ImageNet-size prior; the JPEG round trip of 64 × 256² against
   Pillow; the DriftRec samplers; the bundled models' end-to-end quality and one-step denoising);
3. each benchmark's output into its documentation page (``docs/benchmarks/*.rst``), in a block
   tagged with the device (``.. run_all: begin cuda`` … ``.. run_all: end cuda``) that a later
   run on the same device replaces; blocks of other devices, and the hand-written CPU tables,
   stay as they are. Raw outputs also go to ``--out`` (default ``benchmarks/results/<device>``).

``--device cpu`` runs the same steps on the CPU (the CPU variants of the device tests, the
benchmarks with their CPU peers); ``--quick`` shrinks every step to a smoke run of a minute or
two and writes nothing into the docs unless ``--write-docs`` is given (the test suite runs it this
way). The exit status is non-zero when a test or a benchmark failed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs" / "benchmarks"


@dataclass
class Step:
    """One benchmark: its script, documentation page, and arguments (full and quick)."""

    name: str
    script: str
    page: str
    full: list[str]
    quick: list[str]
    cap_s: float  # the most one run may take in full mode
    gpu_extra: list[str] = field(default_factory=list)  # full mode on a GPU only


STEPS = [
    Step(
        "operators",
        "bench_linear.py",
        "linear.rst",
        ["--repeats", "15"],
        ["--only", "denoise", "--only", "blur", "--no-1024", "--no-2048", "--repeats", "2", "--no-memory"],
        240,
    ),
    Step(
        "ddrm",
        "bench_ddrm.py",
        "ddrm.rst",
        ["--repeats", "5"],
        ["--size", "32", "--batch", "1", "--steps", "3", "--repeats", "1", "--unet-repeats", "1"],
        180,
    ),
    Step(
        "conv2d",
        "bench_conv2d.py",
        "conv2d.rst",
        ["--rounds", "28"],
        ["--size", "32", "--batch", "1", "--build-size", "128", "--rounds", "2"],
        180,
    ),
    Step(
        "jpeg",
        "bench_jpeg.py",
        "jpeg.rst",
        ["--repeats", "15"],
        ["--batch", "2", "--repeats", "2"],
        120,
        gpu_extra=["--batch", "64"],
    ),
    Step(
        "driftrec",
        "bench_driftrec.py",
        "driftrec.rst",
        ["--repeats", "3"],
        ["--size", "16", "--batch", "1", "--repeats", "1", "--model", "tiny"],
        240,
    ),
    Step(
        "prior_denoise",
        "bench_prior_denoise.py",
        "end_to_end.rst",
        [],
        ["--size", "32", "--sigmas", "25"],
        120,
    ),
    Step(
        "end_to_end",
        "bench_end_to_end.py",
        "end_to_end.rst",
        [],
        [
            "--tasks",
            "jpeg10,driftrec10",
            "--size",
            "32",
            "--images",
            "rocket",
            "--samples",
            "1",
            "--steps",
            "2",
            "--driftrec-steps",
            "31",  # the fewest the bundled model's grid (grid_power 0.5) takes
        ],
        300,
    ),
]


#: Scripts of ``benchmarks/`` that are not steps, and why (every other ``bench_*.py`` is a step;
#: ``tests/test_run_all.py`` checks that each script is one or the other).
NOT_RUN = {
    "bench_adm.py": "loading study of a 552 M-parameter ADM checkpoint against DeepInverse's network "
    "(a test-only reference, about 9 GB of host memory); CPU only",
    "bench_prior_speed.py": "the bundled prior's channels-last CPU layout against the bare network; CPU only",
    "tune_settings.py": "tunes the settings of a solver with a diffusion prior (DDRM's ship with a prior; "
    "hours); not a benchmark",
    "bench_pigdm.py": "restoration quality of PiGDM beside DDRM with the bundled prior "
    "(docs/solvers/pigdm.rst); quality, not device speed",
    "bench_diffpir_dps.py": "restoration quality of DiffPIR and DPS beside DDRM and PiGDM with the bundled "
    "prior, DPS's steps budget and peak memory (docs/solvers/diffpir.rst, dps.rst; tens of CPU minutes); "
    "quality, not device speed",
    "bench_scale.py": "efficiency of 2 CPU processes against 1 on a folder (one thread each); the multi-GPU "
    "run is the torchrun command of docs/scale.rst",
    "jpeg_parts.py": "the parts of bench_jpeg.py's libjpeg row on the CPU (the library route is CPU only)",
    "bench_main_job.py": "the README's main job as a user runs it, with the allocator's effect and a time "
    "breakdown (docs/benchmarks/end_to_end.rst); CPU only",
    "bench_colour.py": "the colours and PSNR of DDRM-JPEG's restorations of the held-out photographs "
    "(docs/models.rst); quality, not device speed",
    "bench_driftrec_jpeg.py": "restoration quality of the bundled DriftRec model per JPEG quality "
    "(docs/models.rst); quality, not device speed",
    "bench_conv2d_peers.py": "orthonormality of conv2d's SVD beside DeepInverse's BlurFFT layout, in float64 "
    "(exact arithmetic facts, the same on every device; docs/benchmarks/conv2d.rst)",
    "bench_deblur61.py": "quality of DDRM with the bundled prior against oracle Wiener on the 61×61 "
    "deblurring problems (tens of minutes on a CPU; docs/benchmarks/conv2d.rst); quality, not device speed",
}


def _device_ok(device: str) -> str | None:
    """Why ``device`` cannot be used here, or ``None``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    return None


def _label(device: str) -> str:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(dev)}, torch {torch.__version__})"
    return f"{device} ({platform.processor() or platform.machine()}, torch {torch.__version__})"


def _run(cmd: list[str], timeout: float, env: dict[str, str]) -> tuple[int, str, float]:
    """Run ``cmd``; return (exit status, stdout+stderr, seconds). 124 on a timeout."""
    tic = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1.0, timeout), check=False
        )
        return done.returncode, done.stdout + done.stderr, time.perf_counter() - tic
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return 124, out + f"\n[timed out after {timeout:.0f} s]\n", time.perf_counter() - tic


def _block(device: str, label: str, title: str, command: str, output: str) -> str:
    """The reStructuredText block of one run (a literal block: any table text is safe in it)."""
    stamp = datetime.date.today().isoformat()
    lines = [
        f".. run_all: begin {device} {title}",
        "",
        f"**{title}, {label}, {stamp}.** Command: ``{command}``",
        "",
        "::",
        "",
    ]
    body = [("   " + ln).rstrip() for ln in output.strip("\n").splitlines()] or ["   (no output)"]
    return "\n".join([*lines, *body, "", f".. run_all: end {device} {title}", ""])


SECTION = "Tables from ``benchmarks/run_all.py``"


def write_block(page: Path, device: str, title: str, block: str) -> None:
    """Put ``block`` into ``page``: replace the same device's block for ``title``, or append it."""
    text = page.read_text(encoding="utf-8")
    pattern = re.compile(
        rf"^\.\. run_all: begin {re.escape(device)} {re.escape(title)}\n.*?"
        rf"^\.\. run_all: end {re.escape(device)} {re.escape(title)}\n",
        re.S | re.M,
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        if SECTION not in text:
            text = text.rstrip("\n") + (
                f"\n\n{SECTION}\n{'-' * len(SECTION)}\n\n"
                "Written by ``python benchmarks/run_all.py --device DEVICE``, one block per device "
                "(a later run on the same device replaces its block; the tables above stay).\n"
            )
        text = text.rstrip("\n") + "\n\n" + block
    from opkit.files import write_atomic  # opkit (and torch) only once needed

    write_atomic(page, text)


def main(argv: list[str] | None = None) -> int:
    """Run the tests and benchmarks for one device; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, docs untouched")
    ap.add_argument("--budget", type=float, default=570.0, help="seconds for everything (default 570)")
    ap.add_argument("--only", action="append", help="run only these steps (tests, operators, ddrm, ...)")
    ap.add_argument("--skip", action="append", default=[], help="skip these steps")
    ap.add_argument("--write-docs", action="store_true", help="write the docs pages even with --quick")
    ap.add_argument("--no-docs", action="store_true", help="never write the docs pages")
    ap.add_argument("--docs-dir", type=Path, default=DOCS, help="where the benchmark pages live")
    ap.add_argument("--out", type=Path, help="raw outputs (default benchmarks/results/<device>)")
    ap.add_argument("--pytest-args", default="", help="extra pytest arguments (e.g. '-k jpeg')")
    args = ap.parse_args(argv)

    why = _device_ok(args.device)
    if why:
        print(f"run_all: --device {args.device}: {why}", file=sys.stderr)
        return 2
    from opkit.files import write_atomic  # opkit (and torch) only once the device is known

    start = time.perf_counter()
    label = _label(args.device)
    out_dir = args.out or HERE / "results" / args.device.replace(":", "_")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_docs = not args.no_docs and (not args.quick or args.write_docs)
    env = {**os.environ, "OPKIT_TEST_DEVICES": args.device, "PYTHONUNBUFFERED": "1"}
    wanted = set(args.only or ["tests", *(s.name for s in STEPS)]) - set(args.skip)
    summary: list[tuple[str, str, float]] = []
    failed = False

    def left() -> float:
        return args.budget - (time.perf_counter() - start)

    print(f"run_all: {label}; budget {args.budget:.0f} s; quick={args.quick}; docs={write_docs}", flush=True)
    if "tests" in wanted:
        cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-n", "0"]
        cmd += ["-o", "addopts=-ra --strict-markers", "tests"]
        if args.quick:
            cmd += ["-k", "quantize or (linear_operator and denoise)"]
        cmd += args.pytest_args.split()
        # the tests get at most half the budget: the benchmarks must still run
        rc, text, sec = _run(cmd, min(left() * 0.5, 300.0), env)
        write_atomic(out_dir / "tests.txt", text)
        tail = text.strip().splitlines()[-1] if text.strip() else ""
        status = "ok" if rc == 0 else f"FAILED ({rc})"
        failed |= rc != 0
        summary.append(("tests (pytest -m cuda)", f"{status}: {tail}", sec))
        print(f"tests: {status} in {sec:.0f} s: {tail}", flush=True)

    for step in STEPS:
        if step.name not in wanted:
            continue
        remaining = left()
        if remaining < 20:
            summary.append((step.name, "skipped: out of time", 0.0))
            print(f"{step.name}: skipped, out of time", flush=True)
            continue
        extra = step.quick if args.quick else step.full
        if not args.quick and not args.device.startswith("cpu"):
            extra = extra + step.gpu_extra
        cmd = [sys.executable, str(HERE / step.script), "--device", args.device, *extra]
        rc, text, sec = _run(cmd, min(remaining - 5, step.cap_s * (1 if args.quick else 2)), env)
        write_atomic(out_dir / f"{step.name}.txt", text)
        status = "ok" if rc == 0 else f"FAILED ({rc})"
        failed |= rc != 0
        summary.append((step.name, status, sec))
        print(f"{step.name}: {status} in {sec:.0f} s", flush=True)
        if rc == 0 and write_docs:
            shown = " ".join(["python", f"benchmarks/{step.script}", "--device", args.device, *extra])
            write_block(
                args.docs_dir / step.page,
                args.device,
                step.name,
                _block(args.device, label, step.name, shown, text),
            )
        elif rc != 0:
            print(text[-3000:], file=sys.stderr)

    print("\n| step | status | seconds |\n|---|---|---|")
    for name, status, sec in summary:
        print(f"| {name} | {status} | {sec:.0f} |")
    total = time.perf_counter() - start
    print(f"\ntotal {total:.0f} s of a {args.budget:.0f} s budget; raw outputs in {out_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
