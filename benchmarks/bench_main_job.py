"""The README's main job, timed as a user runs it, and where its time goes.

Part 1 runs ``opkit restore rocket_q10.jpg --op jpeg -o out.png`` (the README's command, on the
quality-10 JPEG of the full-size ``rocket`` that ``opkit degrade`` writes) as a fresh process,
five ways, and reads each child's CPU time, page faults and peak memory from the kernel:

* ``plain``: the command as a user runs it (the solvers keep their tensors in the heap,
  :func:`solvers.common.memory.heap_reuse`, and the prior gives its network at most
  :data:`solvers.priors.unet.MAX_BATCH_PIXELS` pixels per call);
* ``one network call for all samples``: the prior's ``max_batch_pixels`` off (the behaviour
  before it);
* ``no heap reuse``: with ``MALLOC_TOP_PAD_=131072`` in the environment, glibc's own default top
  pad, which changes nothing in glibc but makes opkit leave the allocator alone;
* ``neither``: both of the above, the behaviour before either;
* ``allocator env``: with glibc's thresholds raised through the environment
  (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``), the trick a user
  would otherwise need. The goal is that it is at most 15 % faster than ``plain``.

Every output is compared byte for byte with the ``plain`` one; where they differ, the table says
how many 8-bit values differ and by how much.

Part 2 runs the same restoration in this process and splits its time: the network's forward
calls against the rest of the solver, with 1 and 2 threads, channels-last on and off.

    python benchmarks/bench_main_job.py                 # both parts (about 20 minutes on 2 cores)
    python benchmarks/bench_main_job.py --part 1 --size 256   # a 256² crop, quicker
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

NO_HEAP_REUSE = {"MALLOC_TOP_PAD_": "131072"}
ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "4294967296",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
    "MALLOC_TOP_PAD_": "1073741824",
}
#: name: (environment, whether the network takes all samples in one call)
RUNS: dict[str, tuple[dict[str, str], bool]] = {
    "plain": ({}, False),
    "one network call for all samples": ({}, True),
    "no heap reuse": (NO_HEAP_REUSE, False),
    "neither (the behaviour before both)": (NO_HEAP_REUSE, True),
    "allocator env": (ALLOCATOR_ENV, False),
}
#: Runs the command line with the prior's network given the whole batch in one call.
WHOLE_BATCH = (
    "import sys, solvers.priors.unet as u; u.MAX_BATCH_PIXELS = None; "
    "from opkit_cli.main import main; sys.exit(main(sys.argv[1:]))"
)


def make_input(folder: Path, size: int | None) -> Path:
    """The quality-10 JPEG of the rocket (or of its centre ``size²`` crop), as ``opkit degrade`` writes it."""
    src = "sample:rocket"
    if size:
        from skimage import data

        from opkit.images import save_image

        x = torch.from_numpy(data.rocket()).permute(2, 0, 1)[None].float() / 255
        h, w = x.shape[-2:]
        top, left = (h - size) // 2, (w - size) // 2
        src = str(folder / "crop.png")
        save_image(x[..., top : top + size, left : left + size], Path(src))
    jpg = folder / "rocket_q10.jpg"
    cmd = [sys.executable, "-m", "opkit_cli", "degrade", src, "--op", "jpeg", "--param", "quality=10"]
    subprocess.run([*cmd, "-o", str(jpg), "--force"], check=True, stdout=subprocess.DEVNULL)
    return jpg


def run_child(jpg: Path, out: Path, env: dict[str, str], whole_batch: bool = False) -> dict[str, Any]:
    """The README's restore command as a child process: wall and CPU time, faults, peak memory."""
    tic = time.perf_counter()
    entry = ["-c", WHOLE_BATCH] if whole_batch else ["-m", "opkit_cli"]
    cmd = [sys.executable, *entry, "restore", str(jpg), "--op", "jpeg", "-o", str(out), "--force"]
    child = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
    wall = time.perf_counter() - tic
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {child.returncode}")
    return {
        "wall": wall,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "faults": usage.ru_minflt,
        "maxrss": usage.ru_maxrss / 1024,  # KiB -> MiB
    }


def differs(a: Path, b: Path) -> str:
    """How two PNGs differ: the count of differing values and the largest difference (0–255)."""
    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(a), dtype=np.int16)
    y = np.asarray(Image.open(b), dtype=np.int16)
    if x.shape != y.shape:
        return f"DIFFERENT shape {x.shape} against {y.shape}"
    d = np.abs(x - y)
    return f"{int((d > 0).sum()):,} of {d.size:,} values differ, by at most {int(d.max())}"


def part1(jpg: Path, folder: Path, repeats: int) -> None:
    print("| run | wall (s) | user (s) | sys (s) | minor faults | peak RSS (MiB) | output |")
    print("|---|---|---|---|---|---|---|")
    ref: tuple[bytes, Path] | None = None
    for r in range(repeats):
        for i, (name, (env, whole)) in enumerate(RUNS.items()):
            out = folder / f"out_{i}_{r}.png"
            m = run_child(jpg, out, env, whole)
            data = out.read_bytes()
            if ref is None:
                ref = (data, out)
            same = "identical" if data == ref[0] else differs(out, ref[1])
            print(
                f"| {name} | {m['wall']:.1f} | {m['user']:.1f} | {m['sys']:.1f} | {m['faults']:,} | "
                f"{m['maxrss']:.0f} | {same} |",
                flush=True,
            )


def part2(jpg: Path, threads: list[int]) -> None:
    import opkit
    import solvers
    from solvers.methods.ddrm import ddrm_settings

    op, y = opkit.read_measurement(str(jpg), None)
    print("\n| threads | channels-last | total (s) | network (s) | solver's own (s) | network calls |")
    print("|---|---|---|---|---|---|")
    for n in threads:
        torch.set_num_threads(n)
        for cl in (True, False):
            prior = solvers.load_prior("default").channels_last_(cl)
            timed = TimedPrior(prior)
            tic = time.perf_counter()
            g = torch.Generator().manual_seed(0)
            solvers.ddrm(op, y, timed, generator=g, progress=False, **ddrm_settings(prior, op))
            total = time.perf_counter() - tic
            print(
                f"| {n} | {cl} | {total:.1f} | {timed.seconds:.1f} | {total - timed.seconds:.1f} | "
                f"{timed.calls} |",
                flush=True,
            )


class TimedPrior:
    """A prior that counts its calls and the seconds they take."""

    def __init__(self, prior: Any) -> None:
        self.prior, self.alphas_cumprod = prior, prior.alphas_cumprod
        self.seconds, self.calls = 0.0, 0

    def __call__(self, x_t: torch.Tensor, t: Any, **kw: Any) -> torch.Tensor:
        tic = time.perf_counter()
        out = self.prior(x_t, t, **kw)
        self.seconds += time.perf_counter() - tic
        self.calls += 1
        return out  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", type=int, choices=(1, 2), action="append", help="default: both")
    p.add_argument("--size", type=int, default=None, help="a centre crop of this side (default: full size)")
    p.add_argument("--repeats", type=int, default=1, help="rounds of part 1")
    p.add_argument("--threads", default="2,1", help="part 2's thread counts")
    a = p.parse_args()
    parts = a.part or [1, 2]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jpg = make_input(folder, a.size)
        what = f"{a.size}² crop of the rocket" if a.size else "the full-size rocket (427×640)"
        print(
            f"The README's main job on {what}, quality 10, torch {torch.__version__}, {os.cpu_count()} CPUs\n"
        )
        if 1 in parts:
            part1(jpg, folder, a.repeats)
        if 2 in parts:
            part2(jpg, [int(t) for t in a.threads.split(",")])


if __name__ == "__main__":
    main()
