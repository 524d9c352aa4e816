"""DDRM solver overhead per step, next to one call of a small UNet2DModel, on CPU.

Everything a DDRM step does except the network counts as overhead: the spectral transforms
``V``/``Vᵀ`` of the operator (or ``Encode``/``Decode`` of an encode/decode pair), the VP/VE
conversions, the three-case update and the noise draw. It is measured by running
:func:`solvers.ddrm` with a model that returns a preallocated zero ε (free): the time of a whole
run (constants of the call included) divided by its number of steps, median over repeats. The
peer, measured in the same run, is one forward pass of a small diffusers ``UNet2DModel`` on the
same batch. Times are CPU times of the process with one torch thread, robust on a shared
machine (they do not count waiting for a core); wall times are printed beside them.

Usage::

    python benchmarks/bench_ddrm.py                    # 4 x 3 x 256 x 256, 20 steps, 1 thread
    python benchmarks/bench_ddrm.py --size 128 --repeats 3 --threads 2

Prints a markdown table (docs/benchmarks/ddrm.rst holds the latest one).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

import torch
from torch import Tensor

import opkit
import solvers
from solvers.priors import linear_alphas_cumprod

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


def _median_time(fn: Any, repeats: int) -> tuple[float, float]:
    """Median CPU time and median wall time of ``repeats`` calls of ``fn``.

    On a shared machine the CPU time of the process (one torch thread) is the robust measure:
    it does not count the time the process waits for a core. Wall time is reported beside it.
    """
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--unet-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = (3, args.size, args.size)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((args.batch, *shape), generator=g)

    net = small_unet()
    n_params = sum(p.numel() for p in net.parameters())
    t_in = torch.full((args.batch,), 500, dtype=torch.long)
    with torch.no_grad():
        net(x, t_in)  # warm-up
        unet_med, unet_wall = _median_time(lambda: net(x, t_in), args.unet_repeats)

    rows = []
    for name in opkit.available():
        try:
            op = opkit.create(name, shape=shape, **PARAMS.get(name, {}))
        except Exception as exc:  # an operator this benchmark cannot configure: say so
            nan = float("nan")
            rows.append((name, "-", nan, nan, nan, nan, f"not run: {type(exc).__name__}: {exc}"))
            continue
        if isinstance(op, opkit.SVDOperator):
            kind = "SVD"
            y = op(x)
            sigma_y = 0.05
            y = y + sigma_y * torch.randn(y.shape, generator=g)
        elif isinstance(op, opkit.EncodeDecodeOperator):
            kind = "encode/decode"
            y, sigma_y = op(x), 0.0
        else:
            continue
        model = ZeroEps()

        def run(op: Any = op, y: Any = y, model: Any = model, sigma_y: float = sigma_y) -> None:
            solvers.ddrm(
                op, y, model, steps=args.steps, sigma_y=sigma_y, progress=False, generator=torch.Generator()
            )

        run()  # warm-up (operator caches)
        med, wall = _median_time(run, args.repeats)
        # Parts measured on the same batch: the operator's own transforms per step (V and Vᵀ, or
        # Encode and Decode) and the standard normal draw every DDRM step needs.
        if kind == "SVD":
            spec = op.Vt(x)
            parts = lambda op=op, spec=spec: (op.V(spec), op.Vt(x))  # noqa: E731
        else:
            parts = lambda op=op: op.decode(op.encode(x))  # noqa: E731
        t_op, _ = _median_time(parts, 2 * args.repeats + 1)
        t_noise, _ = _median_time(lambda: torch.randn(x.shape, generator=g), 2 * args.repeats + 1)
        per_step = med / args.steps
        rows.append((name, kind, per_step * 1e3, wall / args.steps * 1e3, t_op * 1e3, t_noise * 1e3, ""))

    print(
        f"DDRM overhead per step, batch {args.batch} x 3 x {args.size}^2, {args.steps} steps, float32, "
        f"CPU {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); median CPU time of {args.repeats} runs "
        "(wall time in brackets; the parts are CPU times too)."
    )
    print(
        f"Peer: one UNet2DModel call ({n_params / 1e6:.1f} M parameters, channels (32, 64, 128, 128), "
        f"attention at 32^2) on the same batch: {unet_med * 1e3:.0f} ms CPU "
        f"(wall {unet_wall * 1e3:.0f} ms).\n"
    )
    print(
        "| operator | kind | overhead ms/step | of which operator (V+Vᵀ or Enc+Dec) | of which noise draw "
        "| solver arithmetic | % of one UNet call | ≤ 10 ms and ≤ 2 % |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, kind, med, wall, t_op, t_noise, note in rows:
        if note:
            print(f"| {name} | {kind} | {note} | | | | | |")
            continue
        pct = med / (unet_med * 1e3) * 100
        ok = "yes" if med <= 10 and pct <= 2 else "no"
        rest = med - t_op - t_noise
        print(
            f"| {name} | {kind} | {med:.1f} (wall {wall:.1f}) | {t_op:.1f} | {t_noise:.1f} | {rest:.1f} "
            f"| {pct:.2f} % | {ok} |"
        )


if __name__ == "__main__":
    main()
