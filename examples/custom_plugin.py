"""A third-party operator, defined and registered at runtime, restored by DDRM unchanged.

``HorizontalDecimation`` averages each pair of neighbouring columns, ``y[..., j] =
(x[..., 2j] + x[..., 2j+1]) / 2`` (a 2× horizontal downsampling, e.g. a line-skipping sensor).
Its SVD is one 2×2 rotation per pair of columns::

    Vᵀ x = ((a + b)/√2, (a − b)/√2) per pair (a, b),   singular values (1/√2, 0),   U = I

so, as an :class:`opkit.SVDOperator`, it states only ``Vt``, ``V``, ``Ut``, ``U``, ``singulars``
and ``out_shape``; ``H``, ``Hᵀ`` and ``H†`` are derived. The script

1. registers it in the process-wide registry with the same hook a plugin package uses
   (this module defines ``opkit_register_operators`` and ``registry.register_plugin`` runs it;
   a package publishes such a module under the ``opkit`` entry-point group instead, see
   ``examples/plugin_channel_gain``);
2. checks every pseudo-inverse law with ``opkit.testing.check_operator``, including ``H x``
   against a direct implementation of the averaging;
3. restores a held-out photograph with ``solvers.ddrm``, which knows nothing about it, and
   compares with the pseudo-inverse ``H†y`` (column replication) and bicubic upsampling.

Run::

    python examples/custom_plugin.py --out examples_out --size 256
"""

from __future__ import annotations

import math
import sys

import torch
from _common import Scores, bicubic, held_out_crop, label, parser, report, save_figures, score, tuned
from einops import rearrange
from torch import Tensor

import opkit
import solvers
from opkit.testing.strategies import shapes

NAME = "hdecimate2"


class HorizontalDecimation(opkit.SVDOperator):
    """Average each pair of neighbouring columns (2× horizontal downsampling)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__(shape)
        if self.shape[2] % 2:
            raise ValueError(f"shape: the width must be even, got {self.shape}")

    @property
    def out_shape(self) -> tuple[int, ...]:
        c, h, w = self.shape
        return (c, h, w // 2)

    @property
    def singulars(self) -> Tensor:
        # spectral layout (2, C, H, W/2): index 0 = pair sums, 1 = pair differences (null space)
        return torch.tensor([1 / math.sqrt(2), 0.0], dtype=torch.float64).view(2, 1, 1, 1)

    def Vt(self, x: Tensor) -> Tensor:
        a, b = rearrange(x, "b c h (w two) -> two b c h w", two=2)
        return torch.stack([a + b, a - b], 1) / math.sqrt(2)

    def V(self, v: Tensor) -> Tensor:
        s, d = v[:, 0], v[:, 1]
        return rearrange(torch.stack([s + d, s - d]) / math.sqrt(2), "two b c h w -> b c h (w two)")

    def Ut(self, y: Tensor) -> Tensor:
        return torch.stack([y, torch.zeros_like(y)], 1)  # y measures the sum coordinates only

    def U(self, v: Tensor) -> Tensor:
        return v[:, 0]


def hdecimate2(*, shape: tuple[int, int, int]) -> HorizontalDecimation:
    """2× horizontal decimation: the mean of each pair of columns (example runtime plugin)."""
    return HorizontalDecimation(shape)


@opkit.hookimpl
def opkit_register_operators(registry: opkit.Registry) -> None:
    """The plugin hook, exactly as a plugin package's module defines it.

    The strategy draws the factory's keyword arguments (even widths) for opkit's generic property
    suite, which then checks this operator like the built-in ones.
    """
    registry.add_operator(NAME, hdecimate2, strategy=shapes(multiple_of=2).map(lambda s: {"shape": s}))


def register() -> opkit.Registry:
    """Register this module as a plugin of the process-wide registry (once per process)."""
    reg = opkit.default_registry()
    if NAME not in reg.operator_names():
        # Any module or object holding an ``opkit_register_operators`` hook is a plugin; this
        # script's own module is one. A failing plugin is skipped with a warning saying why.
        if not reg.register_plugin(sys.modules[__name__], "example_hdecimate2"):
            raise RuntimeError(f"registering {NAME} failed: {reg.skipped['example_hdecimate2']}")
    return reg


def main(argv: list[str] | None = None) -> dict[str, Scores]:
    """Run the example; returns ``{"custom_plugin": {method: {"PSNR", "SSIM"}}}``."""
    args = parser(__doc__).parse_args(argv)
    register()
    print(f"registered operators: {', '.join(opkit.available())}")

    x = held_out_crop(args.photo, args.size)
    op = opkit.create(NAME, shape=tuple(x.shape[1:]))  # built through the registry like any other

    # Every law of the testing kit, and H x against the direct definition (pair means).
    laws = opkit.testing.check_operator(op, reference=lambda t: (t[..., 0::2] + t[..., 1::2]) / 2)
    print(f"check_operator: {len(laws.errors)} laws hold, largest error {max(laws.errors.values()):.1e}")

    y = op(x)  # (1, 3, S, S/2)
    prior = solvers.load_prior(args.model)
    g = torch.Generator().manual_seed(args.seed)
    restored = solvers.ddrm(op, y, prior, **tuned(prior, "decimate", args.steps), generator=g, progress=False)

    scores = {
        "H†y": score(op.pinv(y), x),
        "bicubic": score(bicubic(y, x.shape[-2:]), x),
        "DDRM": score(restored, x),
    }
    report("custom_plugin", scores)
    panels = [(label("H†y", scores), op.pinv(y)), (label("DDRM", scores), restored), ("ground truth", x)]
    save_figures(args.out, "custom_plugin", op.pinv(y), restored, panels)
    return {"custom_plugin": scores}


if __name__ == "__main__":
    main()
