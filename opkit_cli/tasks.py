r"""The field's named restoration tasks, shared by ``opkit eval --task`` and the benchmarks.

Each preset names a registered operator, its parameters for an image of a given size (and, for
the tasks that draw at random, the image's seed), the measurement noise :math:`\sigma_y` and the
paper its setting comes from. The settings are those of DPS (Chung et al., ICLR 2023, §4 and its
released configs), DiffPIR (Zhu et al., CVPRW 2023) and DAPS (Zhang et al., CVPR 2025) on 256²
images; where a parameter is a size in pixels it is given at 256² and scaled with the image:

==================  ===========  ==========================================================  ====
preset              operator     parameters (at 256²)                                        σ_y
==================  ===========  ==========================================================  ====
``sr4``             sr_bicubic   factor 4                                                    0.05
``gauss_deblur``    conv2d       61×61 Gaussian, σ = 3 px                                    0.05
``motion_deblur``   conv2d       61×61 motion, intensity 0.5, a kernel drawn per image       0.05
``box_inpaint``     inpaint      a 128×128 box at a random position, 16 px from the border   0.05
``random_inpaint``  inpaint      70 % of the pixels missing (all channels)                   0.05
``colorize``        colorize     the channel mean                                            0
``jpeg10``          jpeg         quality 10, 4:2:0                                           0
``cs25``            cs           25 % of the Walsh–Hadamard coefficients                     0
==================  ===========  ==========================================================  ====

The measurement of the two deblurring presets is the exact circular convolution (``conv2d`` with
``threshold=0``); the solvers are given ``conv2d`` with its default threshold, which drops the
frequencies the kernel all but erases (:attr:`Preset.measure`).

Examples
--------
>>> from opkit_cli.tasks import PRESETS
>>> p = PRESETS["box_inpaint"]
>>> p.op, p.params(256, 256, seed=7)["box_size"], p.sigma_y
('inpaint', 128, 0.05)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["PRESETS", "Preset", "degrade", "preset_names"]


@dataclass(frozen=True)
class Preset:
    """A named restoration task.

    Attributes
    ----------
    name : str
        The name ``--task`` takes.
    op : str
        The registered operator.
    build : callable
        ``build(h, w, seed) -> dict``: the operator's parameters for an ``h × w`` image whose
        random draws (motion kernel, mask) come from ``seed``.
    sigma_y : float
        Measurement noise, in [0, 1] image units.
    title : str
        What the task is, in a few words (table headers).
    source : str
        Where the setting comes from.
    measure : dict
        Parameters that differ for the measurement only (the field's exact forward model).
    """

    name: str
    op: str
    build: Callable[[int, int, int], dict[str, Any]]
    sigma_y: float
    title: str
    source: str
    measure: dict[str, Any] = field(default_factory=dict)

    def params(self, h: int, w: int, seed: int = 0) -> dict[str, Any]:
        """The operator's parameters for an ``h × w`` image with the random draws of ``seed``."""
        return self.build(h, w, seed)


def _scaled(pixels_at_256: int, side: int) -> int:
    """A length given at 256² scaled to an image side (at least 1)."""
    return max(1, round(pixels_at_256 * side / 256))


def _seed31(seed: int) -> int:
    return seed % (2**31 - 1)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "sr4",
            "sr_bicubic",
            lambda h, w, s: {"factor": 4},
            0.05,
            "4× bicubic SR",
            "DPS §4 and DAPS (4× bicubic downsampling, σ_y = 0.05); DiffPIR's SR ×4 with bicubic",
        ),
        Preset(
            "gauss_deblur",
            "conv2d",
            lambda h, w, s: {"kernel": "gaussian", "size": 61, "sigma": 3.0},
            0.05,
            "Gaussian deblur",
            "DPS §4, DiffPIR and DAPS (61×61 Gaussian kernel, σ = 3.0, σ_y = 0.05)",
            {"threshold": 0.0},
        ),
        Preset(
            "motion_deblur",
            "conv2d",
            lambda h, w, s: {"kernel": "motion", "size": 61, "intensity": 0.5, "seed": _seed31(s)},
            0.05,
            "motion deblur",
            "DPS §4, DiffPIR and DAPS (61×61 motion kernel of the motionblur package, intensity 0.5, "
            "σ_y = 0.05)",
            {"threshold": 0.0},
        ),
        Preset(
            "box_inpaint",
            "inpaint",
            lambda h, w, s: {
                "mask": "box",
                "box_size": _scaled(128, min(h, w)),
                "position": "random",
                "margin": _scaled(16, min(h, w)),
                "seed": _seed31(s),
            },
            0.05,
            "box inpainting",
            "DPS §4 and its config (128×128 box, random position 16 px from the border, σ_y = 0.05); DAPS",
        ),
        Preset(
            "random_inpaint",
            "inpaint",
            lambda h, w, s: {"mask": "random", "missing": 0.7, "seed": _seed31(s)},
            0.05,
            "random inpainting",
            "DAPS (70 % of the pixels missing, σ_y = 0.05)",
        ),
        Preset(
            "colorize",
            "colorize",
            lambda h, w, s: {},
            0.0,
            "colourization",
            "DDRM and DDNM (the channel mean, noiseless)",
        ),
        Preset(
            "jpeg10",
            "jpeg",
            lambda h, w, s: {"quality": 10},
            0.0,
            "JPEG q10",
            "DDRM-JPEG (Kawar et al. 2022) and ΠGDM (quality 10, libjpeg tables, 4:2:0)",
        ),
        Preset(
            "cs25",
            "cs",
            lambda h, w, s: {"ratio": 4.0, "seed": 0},
            0.0,
            "CS 25 %",
            "DDNM (compressed sensing with Walsh–Hadamard sampling at ratio 25 %, noiseless)",
        ),
    )
}


def preset_names() -> tuple[str, ...]:
    """The names of :data:`PRESETS`, in the order of the papers' tables."""
    return tuple(PRESETS)


def degrade(
    name: str, x: torch.Tensor, seed: int, generator: torch.Generator
) -> tuple[Any, Any, dict[str, Any]]:
    """Degrade the clean ``x`` ``(1, C, H, W)`` with the preset ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`PRESETS`.
    x : torch.Tensor
        The clean image.
    seed : int
        The image's seed (motion kernel, mask).
    generator : torch.Generator
        Source of the measurement noise.

    Returns
    -------
    (opkit.Operator, measurement, dict)
        The operator the solvers are given, the measurement (with noise ``σ_y``) and its
        parameters.
    """
    import opkit

    preset = PRESETS[name]
    shape = tuple(x.shape[1:])
    params = preset.params(shape[1], shape[2], seed)
    op = opkit.create(preset.op, shape=shape, **params)
    measure = opkit.create(preset.op, shape=shape, **params, **preset.measure) if preset.measure else op
    y = measure(x)
    if preset.sigma_y > 0:
        from solvers.common import randn

        y = y + preset.sigma_y * randn(y.shape, y, generator)
    return op, y, params
