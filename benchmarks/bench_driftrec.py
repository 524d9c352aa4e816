"""DriftRec samplers: overhead per step beside a network call; ODE tolerance vs Euler-Maruyama.

Two parts, both printed as markdown tables:

1. **Overhead.** Wall time per step of each sampler with a free score (it returns zeros) beside
   the time of one call of an (untrained) U-Net on the same batch.
2. **NFE, time and quality.** The probability-flow ODE (our torch Dormand-Prince RK45) at tolerances
   1e-2, 1e-3, 1e-4 against Euler-Maruyama with 100 steps (the paper's default) and Euler-Heun with 50,
   on the same images. The peer for the ODE is :func:`scipy.integrate.solve_ivp` (``RK45``) on the
   flattened batch, same tolerance, same model. Quality (PSNR against ``x0``) needs a score that
   knows the answer: an untrained network's PSNR is meaningless, so the PSNR and its NFE use the
   exact score of a point mass at ``x0``, ``-(x - μ_t)/σ_t²``; the timings use a small untrained
   U-Net. The measurement ``y`` is JPEG at quality 10 when the ``jpeg`` operator is registered.

Run:  python benchmarks/bench_driftrec.py [--repeats 3] [--size 32] [--batch 2] [--threads 1] [--model small]
      [--device cuda]   (synchronised wall times; the scipy peer integrates on the CPU, the model
      runs on the device)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

import opkit
import solvers
from solvers.common.data import photo
from solvers.sdes import OUVE, DriftSDE
from solvers.sdes.samplers import euler_heun, euler_maruyama, probability_flow
from solvers.sdes.score_models import ScoreModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import clock_name, device_label, device_of
from _common import median_time as _median_time

DEVICE = torch.device("cpu")


def psnr(a: Tensor, b: Tensor) -> float:
    mse = float((a.double() - b.double()).pow(2).mean())
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


def images(size: int, batch: int) -> Tensor:
    names = ["rocket", "coffee", "chelsea", "astronaut"]
    crops = []
    for k in range(batch):
        im = photo(names[k % len(names)])
        h, w = im.shape[-2:]
        i, j = (h - size) // 2, (w - size) // 2
        crops.append(im[0, :, i : i + size, j : j + size])
    return torch.stack(crops)


def corrupt(x0: Tensor) -> tuple[Tensor, str]:
    if "jpeg" in opkit.available():
        op = opkit.create("jpeg", shape=tuple(x0.shape[1:]), quality=10)
        return op.pinv(op(x0)).to(x0.dtype), "JPEG q=10"
    g = torch.Generator().manual_seed(0)
    return x0 + 0.1 * torch.randn(x0.shape, generator=g), "Gaussian noise 0.1"


def median_time(fn: Callable[[], object], repeats: int) -> float:
    return _median_time(fn, repeats, DEVICE)


def oracle(sde: DriftSDE, x0: Tensor) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    def score(x: Tensor, y: Tensor, t: Tensor) -> Tensor:
        return -(x - sde.mean(x0, y, t)) / sde.std(t).reshape(-1, 1, 1, 1) ** 2

    return score


def scipy_ode(
    score: Callable[[Tensor, Tensor, Tensor], Tensor], sde: DriftSDE, y: Tensor, x1: Tensor, tol: float
):
    shape, dtype = x1.shape, x1.dtype

    def rhs(t: float, v: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(v).to(dtype).reshape(shape).to(y.device)
        tt = torch.full((shape[0],), t, dtype=dtype, device=y.device)
        g = sde.diffusion(t)
        with torch.no_grad():
            d = sde.drift(x, y, t) - 0.5 * g * g * score(x, y, tt)
        return d.reshape(-1).double().cpu().numpy()

    v1 = x1.reshape(-1).double().cpu().numpy()
    sol = solve_ivp(rhs, (1.0, sde.t_eps), v1, method="RK45", rtol=tol, atol=tol)
    return torch.from_numpy(sol.y[:, -1]).to(dtype).reshape(shape).to(y.device), sol.nfev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="small", choices=["tiny", "small", "paper"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = dev = device_of(args.device)
    sde = OUVE()
    x0 = images(args.size, args.batch)
    y, what = corrupt(x0)
    x0, y = x0.to(dev), y.to(dev)
    model = ScoreModel.from_preset(args.model, sde, seed=0).eval().to(dev)
    b, c, h, w = x0.shape
    print(
        f"DriftRec samplers, OUVE (paper settings), batch {b}x{c}x{h}x{w} float32, y = {what}, "
        f"U-Net '{args.model}' ({model.num_parameters() / 1e6:.1f} M parameters, untrained), "
        f"{device_label(dev)}, torch threads {args.threads}, medians of {args.repeats} ({clock_name(dev)}).\n"
    )

    # -- part 1: overhead per step ------------------------------------------------------------
    t = torch.full((b,), 0.5, device=dev)
    with torch.no_grad():
        net = median_time(lambda: model(x0, y, t), args.repeats + 2)

    def free(x: Tensor, yy: Tensor, tt: Tensor) -> Tensor:
        return torch.zeros_like(x)

    x1 = sde.prior_sample(y, torch.Generator(dev).manual_seed(0))
    n_over = 200
    gen = torch.Generator(dev).manual_seed(0)
    rows = []
    for name, run in (
        (
            "Euler-Maruyama",
            lambda: euler_maruyama(free, sde, y, x1, steps=n_over, generator=torch.Generator(dev)),
        ),
        ("Euler-Heun", lambda: euler_heun(free, sde, y, x1, steps=n_over // 2, generator=gen)),
        ("ODE RK45 (ours), tol 1e-4", lambda: probability_flow(free, sde, y, x1, rtol=1e-4, atol=1e-4)),
    ):
        _, info = run()
        per = median_time(run, args.repeats) / info.nfe
        rows.append((name, per, info.nfe))
    print("| sampler | overhead per NFE (ms) | one U-Net call (ms) | overhead / network |")
    print("|---|---|---|---|")
    for name, per, _ in rows:
        print(f"| {name} | {per * 1e3:.3f} | {net * 1e3:.2f} | {per / net:.3f} |")
    print()

    # -- part 2: NFE, time and PSNR ---------------------------------------------------------------
    exact = oracle(sde, x0)
    configs: list[tuple[str, dict]] = [
        ("Euler-Maruyama, 100 steps", {"sampler": "euler_maruyama", "steps": 100}),
        ("Euler-Heun, 50 steps", {"sampler": "euler_heun", "steps": 50}),
        ("ODE RK45, tol 1e-2", {"sampler": "ode", "tol": 1e-2}),
        ("ODE RK45, tol 1e-3", {"sampler": "ode", "tol": 1e-3}),
        ("ODE RK45, tol 1e-4", {"sampler": "ode", "tol": 1e-4}),
    ]
    results = []
    for name, kw in configs:
        g = torch.Generator(dev).manual_seed(1)
        out, info_o = solvers.driftrec(
            y, exact, sde=sde, generator=g, color_correction=False, return_info=True, **kw
        )
        q = psnr(out, x0)
        holder: dict = {}

        def timed(kw: dict = kw, holder: dict = holder) -> None:
            _, holder["info"] = solvers.driftrec(
                y, model, sde=sde, generator=torch.Generator(dev).manual_seed(1), return_info=True, **kw
            )

        secs = median_time(timed, args.repeats)
        results.append((name, info_o.nfe, q, holder["info"].nfe, secs))
    base = results[0][4]
    for tol in (1e-3,):
        out, nfe_o = scipy_ode(exact, sde, y, sde.prior_sample(y, torch.Generator(dev).manual_seed(1)), tol)
        holder2: dict = {}

        def timed_scipy(tol: float = tol, holder2: dict = holder2) -> None:
            _, holder2["nfe"] = scipy_ode(
                model, sde, y, sde.prior_sample(y, torch.Generator(dev).manual_seed(1)), tol
            )

        secs = median_time(timed_scipy, args.repeats)
        results.append(
            (f"peer: scipy solve_ivp RK45, tol {tol:g}", nfe_o, psnr(out, x0), holder2["nfe"], secs)
        )
    print(f"PSNR of y against x0: {psnr(y, x0):.2f} dB\n")
    print(
        "| sampler | NFE (oracle) | PSNR vs x0, oracle score (dB) | NFE (U-Net) "
        "| time, U-Net (s) | per NFE (ms) | time / EM-100 |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, nfe_o, q, nfe_m, secs in results:
        print(
            f"| {name} | {nfe_o} | {q:.2f} | {nfe_m} | {secs:.3f} | {secs / nfe_m * 1e3:.1f} "
            f"| {secs / base:.2f} |"
        )


if __name__ == "__main__":
    main()
