"""Speed of ``conv2d`` (and ``cs``) against a plain ``rfft2``/``irfft2`` circular convolution, in one run.

The peer is the plainest FFT convolution of the same batch, ``irfft2(rfft2(x) * K)`` with ``K``
precomputed in the batch's precision: what any code that blurs with a circular boundary pays.
Every map of the operator (``H``, ``Vᵀ``, ``V``, ``Uᵀ``, ``U``, and ``Hᵀ``, ``H†``) is timed on the
same batch, interleaved with the peer round by round (each round times every row once, starting
one row later than the round before), so that a load change on a shared machine hits all rows
alike; the table gives medians over the rounds and
each row's ratio to the peer. Building is timed at ``--build-size`` (default 1024²): with the
explicit 61×61 motion kernel, with the motion kernel drawn by the operator (``kernel="motion"``)
and with the 61×61 Gaussian. ``cs`` (ratio 4) is timed on the same batch for reference; its
goal is the complexity (Θ(n log n)), not a ratio.

On the CPU, times are the process CPU time with ``--threads`` torch threads (default 1), as the
other benchmarks (:mod:`_common`). As ``bench_linear.py``, the script re-executes itself with
glibc's mmap and trim thresholds raised, so that freed blocks are reused instead of each large
tensor paying fresh page faults on whichever call allocates next (``--no-reexec`` skips it).

    python benchmarks/bench_conv2d.py                      # 4 × 3 × 256², 28 rounds
    python benchmarks/bench_conv2d.py --size 512 --rounds 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31)}
if __name__ == "__main__" and "--no-reexec" not in sys.argv and any(k not in os.environ for k in _ENV):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_ENV})

import torch  # noqa: E402

import opkit  # noqa: E402
from opkit import kernels  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import clock, clock_name, device_label, device_of, sync  # noqa: E402

#: Goals of issue 23: each map ≤ 1.5× the plain convolution; building ≤ 20 ms at 1024².
RATIO_GOAL = 1.5
BUILD_GOAL_MS = 20.0


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, dev: torch.device) -> dict[str, float]:
    """Median seconds of each function, timed once per round, the order rotated by one each round."""
    tick = clock(dev)
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for fn in fns.values():  # warm-up: caches, FFT plans
        fn()
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = fns[name]
            sync(dev)
            t0 = tick()
            fn()
            sync(dev)
            times[name].append(tick() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--build-size", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=28)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-reexec", action="store_true", help="do not re-execute with the malloc settings")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    dev = device_of(a.device)
    shape = (3, a.size, a.size)
    x = torch.rand((a.batch, *shape), generator=torch.Generator().manual_seed(0)).to(dev)
    ks = min(61, a.size, a.build_size)  # the field's 61×61, or the image's side if smaller
    k = kernels.motion(ks, 0.5, generator=torch.Generator().manual_seed(0))
    op = opkit.create("conv2d", shape=shape, kernel=k)
    cs = opkit.create("cs", shape=shape, ratio=4)
    K = op.transfer.to(device=dev, dtype=torch.complex64)
    s = (a.size, a.size)
    v, vc, ycs = op.Vt(x), cs.Vt(x), cs(x)

    def plain() -> torch.Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(x) * K, s=s)

    fns: dict[str, Callable[[], Any]] = {
        "plain rfft2/irfft2 convolution (peer)": plain,
        "conv2d H": lambda: op(x),
        "conv2d Vᵀ": lambda: op.Vt(x),
        "conv2d V": lambda: op.V(v),
        "conv2d Uᵀ": lambda: op.Ut(x),
        "conv2d U": lambda: op.U(v),
        "conv2d Hᵀ": lambda: op.adjoint(x),
        "conv2d H†": lambda: op.pinv(x),
        "cs H": lambda: cs(x),
        "cs Vᵀ": lambda: cs.Vt(x),
        "cs V": lambda: cs.V(vc),
        "cs Uᵀ": lambda: cs.Ut(ycs),
        "cs U": lambda: cs.U(vc),
        "cs H† = Hᵀ": lambda: cs.pinv(ycs),
    }
    med = interleaved(fns, a.rounds, dev)
    peer = med["plain rfft2/irfft2 convolution (peer)"]

    b = a.build_size
    bshape = (3, b, b)
    builds: dict[str, Callable[[], Any]] = {
        f"conv2d, explicit {ks}×{ks} motion kernel, {b}²": lambda: opkit.create(
            "conv2d", shape=bshape, kernel=k
        ),
        f'conv2d, kernel="motion" (drawn, {ks}×{ks}), {b}²': lambda: opkit.create(
            "conv2d", shape=bshape, kernel="motion", size=ks, intensity=0.5, seed=0
        ),
        f'conv2d, kernel="gaussian" ({ks}×{ks}, σ = 3), {b}²': lambda: opkit.create(
            "conv2d", shape=bshape, kernel="gaussian", size=ks, sigma=3.0
        ),
        f"cs, ratio 4, {b}²": lambda: opkit.create("cs", shape=bshape, ratio=4),
    }
    bmed = interleaved(builds, a.rounds, torch.device("cpu"))

    print(
        f"conv2d and cs on a batch of {a.batch} × 3 × {a.size}², float32, {device_label(dev)}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} thread(s); median {clock_name(dev)} of {a.rounds} "
        f"interleaved rounds. Kernel: {ks}×{ks} motion (intensity 0.5, seed 0).\n"
    )
    print(f"| map | ms | × plain convolution | ≤ {RATIO_GOAL}× |")
    print("|---|---|---|---|")
    for name, t in med.items():
        ratio = t / peer
        goal = "" if not name.startswith("conv2d") else ("yes" if ratio <= RATIO_GOAL else "no")
        print(f"| {name} | {t * 1e3:.2f} | {ratio:.2f} | {goal} |")
    print(f"\n| build | ms | ≤ {BUILD_GOAL_MS:g} ms |")
    print("|---|---|---|")
    for name, t in bmed.items():
        goal = "yes" if t * 1e3 <= BUILD_GOAL_MS else "no"
        print(f"| {name} | {t * 1e3:.2f} | {goal if name.startswith('conv2d') else ''} |")


if __name__ == "__main__":
    main()
