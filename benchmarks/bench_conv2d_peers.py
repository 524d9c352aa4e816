"""Orthonormality of conv2d's SVD beside the spectral layout of DeepInverse's ``BlurFFT``, in float64.

DeepInverse's ``BlurFFT`` (``deepinv.physics.BlurFFT``) is a circular blur given as an SVD with
the published maps (written out here from their formulas; deepinv is not installed)::

    Vᵀx = view_as_real(rfft2(x, norm="ortho"))
    V v = irfft2(view_as_complex(v), norm="ortho")
    Uᵀy = view_as_real(rfft2(y, norm="ortho") · e^{−iφ})
    U v = irfft2(view_as_complex(v) · e^{iφ}, norm="ortho")
    Σ   = |K| on both the real and the imaginary slot of every rfft2 bin

Its coordinates are the real and imaginary parts of every ``rfft2`` bin, ``2·H·(W/2+1)`` numbers
for ``H·W`` pixels (80 for 64 on 8×8): the self-conjugate bins contribute an imaginary part that is
always zero, and every other pair of conjugate frequencies is counted once where it holds two
pixels' worth of energy. So ``Vᵀ`` does not preserve norms and ``V`` is not its transpose. opkit's
``conv2d`` keeps exactly ``H·W`` coordinates (√2·Re and √2·Im of one member of each pair, one real
coordinate per self-conjugate bin).

Printed for each layout, on seeded images (uniform in [0, 1], and standard normal) and random
coordinates, and for the dense matrices of the maps (small sizes): the coordinate count,
``‖Vᵀx‖² / ‖x‖²``, the errors of ``VᵀV = I``, ``VVᵀ = I``, ``<Vv, x> = <v, Vᵀx>`` (is ``V``
the transpose of ``Vᵀ``?), the same for ``U``, ``UΣVᵀx = Hx``, and the variance per pixel of
``V z`` for white ``z`` (what DDRM's noise becomes: it must be 1 for the marginals
``N(x₀, σ_t² I)`` of the paper's Proposition 3.1).

    python benchmarks/bench_conv2d_peers.py                 # 8×8 (the issue's example) and 15×12
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
from torch import Tensor

import opkit
from opkit import kernels

F64 = torch.float64


class DeepinvBlurFFT:
    """The maps of ``deepinv.physics.BlurFFT``, from its published formulas, for one channel."""

    def __init__(self, kernel: Tensor, h: int, w: int) -> None:
        self.h, self.w = h, w
        # filter_fft: the kernel zero-padded to the image and rolled so its centre is at (0, 0)
        kh, kw = kernel.shape
        pad = torch.zeros((h, w), dtype=F64)
        pad[:kh, :kw] = kernel
        pad = torch.roll(pad, (-(kh // 2), -(kw // 2)), dims=(0, 1))
        K = torch.fft.rfft2(pad)
        self.angle = torch.exp(1j * torch.angle(K))
        self.mask = torch.stack([K.abs(), K.abs()], dim=-1)  # (H, W//2+1, 2)

    def Vt(self, x: Tensor) -> Tensor:
        return torch.view_as_real(torch.fft.rfft2(x, norm="ortho"))

    def V(self, v: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.view_as_complex(v.contiguous()), norm="ortho", s=(self.h, self.w))

    def Ut(self, y: Tensor) -> Tensor:
        return torch.view_as_real(torch.fft.rfft2(y, norm="ortho") * self.angle.conj())

    def U(self, v: Tensor) -> Tensor:
        return torch.fft.irfft2(
            torch.view_as_complex(v.contiguous()) * self.angle, norm="ortho", s=(self.h, self.w)
        )

    def H(self, x: Tensor) -> Tensor:
        return self.U(self.mask * self.Vt(x))


class Opkit:
    """opkit's ``conv2d`` for one channel, with the same five maps."""

    def __init__(self, kernel: Tensor, h: int, w: int) -> None:
        self.op = opkit.create("conv2d", shape=(1, h, w), kernel=kernel, threshold=0.0)
        self.mask = self.op.singulars[0]

    def Vt(self, x: Tensor) -> Tensor:
        return self.op.Vt(x[:, None])[:, 0]

    def V(self, v: Tensor) -> Tensor:
        return self.op.V(v[:, None])[:, 0]

    def Ut(self, y: Tensor) -> Tensor:
        return self.op.Ut(y[:, None])[:, 0]

    def U(self, v: Tensor) -> Tensor:
        return self.op.U(v[:, None])[:, 0]

    def H(self, x: Tensor) -> Tensor:
        return self.op(x[:, None])[:, 0]


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def dense(fn: Callable[[Tensor], Tensor], in_shape: tuple[int, ...]) -> Tensor:
    """Matrix of a linear map: column j = fn(e_j), flattened."""
    n = math.prod(in_shape)
    return fn(torch.eye(n, dtype=F64).reshape(n, *in_shape)).reshape(n, -1).T


def measure(layout: DeepinvBlurFFT | Opkit, h: int, w: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((1, h, w), generator=g, dtype=F64)
    vx = layout.Vt(x)
    spec = tuple(vx.shape[1:])
    v = torch.randn((1, *spec), generator=g, dtype=F64)
    xn = torch.randn((1, h, w), generator=g, dtype=F64)
    Vm, Vtm = dense(layout.V, spec), dense(layout.Vt, (h, w))
    Um, Utm = dense(layout.U, spec), dense(layout.Ut, (h, w))
    n = h * w
    out = {
        "coordinates per channel": float(vx[0].numel()),
        "pixels per channel": float(n),
        "‖Vᵀx‖² / ‖x‖², x uniform in [0, 1]": float(vx.square().sum() / x.square().sum()),
        "‖Vᵀx‖² / ‖x‖², x standard normal": float(layout.Vt(xn).square().sum() / xn.square().sum()),
        "‖VᵀV v − v‖ / ‖v‖": _rel(layout.Vt(layout.V(v)), v),
        "‖VVᵀx − x‖ / ‖x‖": _rel(layout.V(vx), x),
        "|<Vv, x> − <v, Vᵀx>| / (‖Vv‖‖x‖)": float(
            ((layout.V(v) * x).sum() - (v * vx).sum()).abs() / (layout.V(v).norm() * x.norm())
        ),
        "‖Vᵀ − (matrix of V)ᵀ‖_F / ‖V‖_F": float((Vtm - Vm.T).norm() / Vm.norm()),
        "‖UᵀU v − v‖ / ‖v‖": _rel(layout.Ut(layout.U(v)), v),
        "‖Uᵀ − (matrix of U)ᵀ‖_F / ‖U‖_F": float((Utm - Um.T).norm() / Um.norm()),
        "‖UΣVᵀx − Hx‖ / ‖Hx‖": _rel(layout.U(layout.mask * vx), layout.H(x)),
        "variance per pixel of V z, z white (must be 1)": float(torch.diagonal(Vm @ Vm.T).mean()),
        "‖V Vᵀ(matrices) − I‖₂ (spectral norm)": float(torch.linalg.matrix_norm(Vm @ Vm.T - torch.eye(n), 2)),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="8x8,15x12", help="comma-separated HxW")
    a = p.parse_args(argv)
    for spec in a.sizes.split(","):
        h, w = (int(v) for v in spec.split("x"))
        k = kernels.gaussian(min(h, w) // 2 * 2 - 1 if min(h, w) > 2 else 1, 1.0)
        rows_deepinv = measure(DeepinvBlurFFT(k, h, w), h, w)
        rows_opkit = measure(Opkit(k, h, w), h, w)
        print(
            f"\n{h}×{w} image, one channel, float64, Gaussian kernel σ = 1 ({k.shape[0]}×{k.shape[1]}), "
            "seed 0; v, z standard normal\n"
        )
        print("| quantity | opkit conv2d | deepinv BlurFFT layout |")
        print("|---|---|---|")
        for name in rows_opkit:
            a_, b_ = rows_opkit[name], rows_deepinv[name]
            fmt = (lambda t: f"{int(t)}") if name.endswith("per channel") else (lambda t: f"{t:.3g}")
            print(f"| {name} | {fmt(a_)} | {fmt(b_)} |")


if __name__ == "__main__":
    main()
