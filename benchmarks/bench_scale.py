"""Scaling of ``opkit restore`` over a folder: 1 process against 2 under ``torchrun``, and ``--batch``.

Every process runs with one thread (``OMP_NUM_THREADS=1``), so two processes use two cores. The
folder holds ``--images`` measurements of the same size (``sr_block`` factor 2 of ``--size``²
crops of scikit-image photographs); they are restored with the bundled prior (``--model default``)
and ``--steps`` DDRM steps, as commands, timed as a user sees them.

Each command prints the seconds of work of its slowest rank after start-up (imports, model
loading, the rendezvous of ``torchrun``); the start-up is the rest of the wall time and is reported
separately. Efficiency is ``t₁ / (2·t₂)`` on the work times: 100 % when two processes take half
the time of one. The table also gives the images per second of one process with ``--batch``
1, 4 and 16, and checks that the two-process outputs are byte-identical to the single-process
ones. The load of the machine (``os.getloadavg``) is printed with the results: on a shared
machine the second process competes for a core, and the efficiency drops with it.

    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py                  # 16 images, 64², 10 steps
    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py --images 32 --batches 1,4,16
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from solvers.common.data import photo

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def make_folder(folder: Path, n: int, size: int) -> None:
    """``n`` block-averaged (factor 2) ``size``² crops of the photographs, as PNG files."""
    folder.mkdir()
    k = 0
    while k < n:
        x = photo(PHOTOS[k % len(PHOTOS)])[0].permute(1, 2, 0).numpy()
        h, w = x.shape[:2]
        j = k // len(PHOTOS)
        top, left = (j * 37) % (h - size), (j * 53) % (w - size)
        crop = x[top : top + size, left : left + size]
        low = crop.reshape(size // 2, 2, size // 2, 2, -1).mean((1, 3))
        Image.fromarray((low * 255).round().astype(np.uint8)).save(folder / f"img{k:03d}.png")
        k += 1


def run(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return ``(wall seconds, seconds of work it reports)``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    tic = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    m = re.search(r"; ([0-9.]+) s of work on", out.stdout)
    if m is None:
        raise SystemExit(f"no timing in the output of {' '.join(cmd)}:\n{out.stdout}")
    return wall, float(m.group(1))


def same_bytes(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="image side (the measurement is half of it)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batches", default="1,4,16", help="--batch values for the images/s column")
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu", help="--device of the commands (auto: each rank's GPU)")
    a = p.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    restore = ["restore", "--op", "sr_block", "--param", "factor=2", "--model", a.model]
    restore += ["--steps", str(a.steps), "--quiet", "--device", a.device]
    one = [sys.executable, "-m", "opkit_cli"]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    two += ["-m", "opkit_cli"]
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        make_folder(src, a.images, a.size)
        for b in batches:
            out1, out2 = Path(tmp) / f"one{b}", Path(tmp) / f"two{b}"
            w1, t1 = run([*one, *restore, str(src), "-o", str(out1), "--batch", str(b)])
            row = {"batch": b, "wall1": w1, "t1": t1, "ips1": a.images / t1}
            if b == batches[0]:  # the 2-process comparison at the first batch size
                w2, t2 = run([*two, *restore, str(src), "-o", str(out2), "--batch", str(b)])
                row |= {"wall2": w2, "t2": t2, "eff": t1 / (2 * t2), "same": same_bytes(out1, out2)}
            rows.append(row)
    load_after = os.getloadavg()
    print(
        f"{a.images} images {a.size // 2}² → {a.size}² (sr_block ×2), {a.steps} DDRM steps, model {a.model}, "
        f"1 thread per process, {os.cpu_count()} CPU cores"
    )
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {load_after}")
    print()
    print("| --batch | processes | work (s) | start-up (s) | images/s | efficiency t₁/(2·t₂) | same bytes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | 1 | {r['t1']:.2f} | {r['wall1'] - r['t1']:.2f} | {r['ips1']:.2f} | | |")
        if "t2" in r:
            print(
                f"| {r['batch']} | 2 | {r['t2']:.2f} | {r['wall2'] - r['t2']:.2f} | "
                f"{a.images / r['t2']:.2f} | {100 * r['eff']:.0f} % | {'yes' if r['same'] else 'NO'} |"
            )


if __name__ == "__main__":
    main()
