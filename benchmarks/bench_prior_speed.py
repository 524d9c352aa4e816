"""CPU speed of the bundled prior's forward pass: the bare network against the prior as DDRM calls it.

``UNetPrior`` (what :func:`solvers.load_prior` returns) runs the network in channels-last memory
layout on the CPU. This prints, per input size and batch, the median time of the bare diffusers
network (NCHW, ``torch.no_grad``) and of the prior's call, and their ratio, in one run
(interleaved repeats), plus the largest difference of their outputs.

    python benchmarks/bench_prior_speed.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import solvers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    prior = solvers.load_prior("default")
    bare = copy.deepcopy(prior.net).to(memory_format=torch.contiguous_format)
    print(f"threads {a.threads}, {sum(q.numel() for q in bare.parameters()) / 1e6:.2f} M parameters")
    print("| input (B, C, H, W) | bare network (s) | prior call (s) | speed-up | max abs difference |")
    print("|---|---|---|---|---|")
    for shape in [(1, 3, 256, 256), (4, 3, 256, 256), (1, 3, 432, 640), (4, 3, 432, 640)]:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        t = torch.full((shape[0],), 45)
        with torch.no_grad():
            ref = bare(x, t, return_dict=False)[0]
        diff = float((prior(x, t) - ref).abs().max())
        tb, tp = [], []
        for _ in range(a.repeats):
            tic = time.perf_counter()
            with torch.no_grad():
                bare(x, t, return_dict=False)
            tb.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            prior(x, t)
            tp.append(time.perf_counter() - tic)
        mb, mp = statistics.median(tb), statistics.median(tp)
        print(f"| {shape} | {mb:.2f} | {mp:.2f} | {mb / mp:.2f}× | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
