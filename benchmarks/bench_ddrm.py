"""DDRM solver overhead per step, next to one call of a UNet2DModel prior, on CPU or GPU.

Everything a DDRM step does except the network counts as overhead: the spectral transforms
``V``/``Vᵀ`` of the operator (or ``Encode``/``Decode`` of an encode/decode pair), the VP/VE
conversions, the three-case update and the noise draw. It is measured by running
:func:`solvers.ddrm` with a model that returns a preallocated zero ε (free): the time of a whole
run (constants of the call included) divided by its number of steps, median over repeats. The
peer, measured in the same run, is one forward pass of a small diffusers ``UNet2DModel`` on the
same batch. On the CPU, times are CPU times of the process with one torch thread, robust on a
shared machine (they do not count waiting for a core).

On a GPU (``--device cuda``) times are synchronised wall times, and the default peer is an
**ImageNet-size prior**: a ``UNet2DModel`` shaped like guided-diffusion's 256×256 model (channels
256·(1, 1, 2, 2, 4, 4), two residual blocks per level, attention at 32², 16² and 8², six output
channels; about 500 M parameters, untrained: only its time matters).

Usage::

    python benchmarks/bench_ddrm.py                    # 4 x 3 x 256 x 256, 20 steps, 1 thread
    python benchmarks/bench_ddrm.py --size 128 --repeats 3 --threads 2
    python benchmarks/bench_ddrm.py --device cuda      # peer: the ImageNet-size prior

Prints a markdown table (docs/benchmarks/ddrm.rst holds the latest one).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch
from torch import Tensor

import opkit
import solvers
from solvers.priors import linear_alphas_cumprod

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import clock_name, device_label, device_of, median_time, sync

#: Parameters used for the registered operators (others run with their factory defaults).
PARAMS: dict[str, dict[str, Any]] = {
    "inpaint": {"missing": 0.5, "seed": 0},
    "sr_block": {"factor": 4},
    "sr_bicubic": {"factor": 4},
    "colorize": {},
    "blur": {"kernel": "uniform", "size": 9},
    "jpeg": {"quality": 10},
    "quantize": {"bits": 3},
}
#: Extra rows: (label, registered name, parameters).
EXTRA: list[tuple[str, str, dict[str, Any]]] = [
    ("blur (reflect)", "blur", {"kernel": "uniform", "size": 9, "boundary": "reflect"}),
]


class ZeroEps:
    """A free model: returns the same preallocated zero tensor every call."""

    def __init__(self) -> None:
        self.alphas_cumprod = linear_alphas_cumprod()
        self._zeros: Tensor | None = None

    def __call__(self, x_t: Tensor, t: Any, **kwargs: Any) -> Tensor:
        if self._zeros is None or self._zeros.shape != x_t.shape or self._zeros.dtype != x_t.dtype:
            self._zeros = torch.zeros_like(x_t)
        return self._zeros


def small_unet() -> torch.nn.Module:
    """A small DDPM-style UNet2DModel (about 6 M parameters)."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=256,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64, 128, 128),
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=16,
    ).eval()


def imagenet_unet() -> torch.nn.Module:
    """A UNet2DModel the size of guided-diffusion's ImageNet 256 model (about 500 M parameters)."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=256,
        in_channels=3,
        out_channels=6,  # learned variance, as the ADM checkpoint
        layers_per_block=2,
        block_out_channels=(256, 256, 512, 512, 1024, 1024),
        down_block_types=("DownBlock2D",) * 3 + ("AttnDownBlock2D",) * 3,
        up_block_types=("AttnUpBlock2D",) * 3 + ("UpBlock2D",) * 3,
        attention_head_dim=64,
        resnet_time_scale_shift="scale_shift",
    ).eval()


PEERS = {"small": small_unet, "imagenet": imagenet_unet}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--unet-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peer", choices=sorted(PEERS), help="default: small on CPU, imagenet on GPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = device_of(args.device)
    peer = args.peer or ("small" if dev.type == "cpu" else "imagenet")
    shape = (3, args.size, args.size)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((args.batch, *shape), generator=g).to(dev)

    net = PEERS[peer]().to(dev)
    n_params = sum(p.numel() for p in net.parameters())
    t_in = torch.full((args.batch,), 500, dtype=torch.long, device=dev)
    with torch.no_grad():
        net(x, t_in)  # warm-up
        unet_med = median_time(lambda: net(x, t_in), args.unet_repeats, dev)
    net = None  # free the peer's memory before the operators run
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    rows = []
    cases = [(name, name, PARAMS.get(name, {})) for name in opkit.available()]
    cases += [c for c in EXTRA if c[1] in opkit.available()]
    for label, name, params in cases:
        try:
            op = opkit.create(name, shape=shape, **params)
        except Exception as exc:  # an operator this benchmark cannot configure: say so
            nan = float("nan")
            rows.append((label, "-", nan, nan, nan, f"not run: {type(exc).__name__}: {exc}"))
            continue
        if isinstance(op, opkit.SVDOperator):
            kind = "SVD"
            y = op(x)
            sigma_y = 0.05
            y = y + sigma_y * torch.randn(y.shape, generator=g).to(dev)
        elif isinstance(op, opkit.EncodeDecodeOperator):
            kind = "encode/decode"
            y, sigma_y = op(x), 0.0
        else:
            continue
        model = ZeroEps()

        def run(op: Any = op, y: Any = y, model: Any = model, sigma_y: float = sigma_y) -> None:
            gen = torch.Generator(dev)
            solvers.ddrm(op, y, model, steps=args.steps, sigma_y=sigma_y, progress=False, generator=gen)

        run()  # warm-up (operator caches)
        med = median_time(run, args.repeats, dev)
        # Parts measured on the same batch: the operator's own transforms per step (V and Vᵀ, or
        # Encode and Decode) and the standard normal draw every DDRM step needs.
        if kind == "SVD":
            spec = op.Vt(x)
            parts = lambda op=op, spec=spec: (op.V(spec), op.Vt(x))  # noqa: E731
        else:
            parts = lambda op=op: op.decode(op.encode(x))  # noqa: E731
        parts()
        t_op = median_time(parts, 2 * args.repeats + 1, dev)
        gd = torch.Generator(dev).manual_seed(0)

        def draw(gd: torch.Generator = gd) -> Tensor:
            return torch.randn(x.shape, generator=gd, device=dev)

        t_noise = median_time(draw, 2 * args.repeats + 1, dev)
        sync(dev)
        rows.append((label, kind, med / args.steps * 1e3, t_op * 1e3, t_noise * 1e3, ""))

    where = device_label(dev)
    print(
        f"DDRM overhead per step, batch {args.batch} x 3 x {args.size}^2, {args.steps} steps, float32, "
        f"{where}, torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s); median "
        f"{clock_name(dev)} of {args.repeats} runs (the parts too)."
    )
    print(
        f"Peer: one UNet2DModel call ('{peer}', {n_params / 1e6:.1f} M parameters) on the same batch: "
        f"{unet_med * 1e3:.1f} ms.\n"
    )
    pct_target = 2.0 if dev.type == "cpu" else 1.0
    ms_target = 10.0 if dev.type == "cpu" else float("inf")
    head = f"≤ {ms_target:g} ms and ≤ {pct_target:g} %" if dev.type == "cpu" else f"≤ {pct_target:g} %"
    print(
        "| operator | kind | overhead ms/step | of which operator (V+Vᵀ or Enc+Dec) | of which noise draw "
        f"| solver arithmetic | % of one UNet call | {head} |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, kind, med, t_op, t_noise, note in rows:
        if note:
            print(f"| {name} | {kind} | {note} | | | | | |")
            continue
        pct = med / (unet_med * 1e3) * 100
        ok = "yes" if med <= ms_target and pct <= pct_target else "no"
        rest = med - t_op - t_noise
        cells = f"{med:.2f} | {t_op:.2f} | {t_noise:.2f} | {rest:.2f} | {pct:.2f} % | {ok}"
        print(f"| {name} | {kind} | {cells} |")


if __name__ == "__main__":
    main()
