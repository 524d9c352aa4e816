"""Helpers shared by the example scripts: arguments, test images, scores and figures.

The examples import this module as ``_common`` (Python puts a script's own folder on
``sys.path``), so each script stays about the one thing it demonstrates.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from opkit import metrics
from opkit.files import atomic_path
from opkit.images import save_image, to_uint8
from solvers.common.data import EVAL_PHOTOS, photo

#: Metrics of one image per method: ``{"DDRM": {"PSNR": 24.1, "SSIM": 0.71}, ...}``.
Scores = dict[str, dict[str, float]]


def parser(doc: str | None, *, model: bool = True) -> argparse.ArgumentParser:
    """The arguments every example takes (``--out --size --steps --seed --photo [--model]``).

    Parameters
    ----------
    doc : str
        The script's module docstring, shown by ``--help``.
    model : bool
        Add ``--model`` (a DDRM prior: ``"default"`` or a diffusers directory).

    Returns
    -------
    argparse.ArgumentParser
        The parser; a script may add its own options.
    """
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="examples_out", help="output folder (default: examples_out)")
    p.add_argument("--size", type=int, default=256, help="side of the centre crop (default: 256)")
    p.add_argument("--steps", type=int, default=None, help="DDRM steps (default: the prior's tuned setting)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise, masks and solver (default: 0)")
    p.add_argument(
        "--photo", default=EVAL_PHOTOS[0], help=f"held-out photograph, one of {', '.join(EVAL_PHOTOS)}"
    )
    if model:
        p.add_argument(
            "--model", default="default", help="DDRM prior: 'default' or a local diffusers directory"
        )
    return p


def tuned(prior: Any, operator: str, steps: int | None = None) -> dict[str, Any]:
    """The DDRM settings the prior ships for ``operator`` (``prior.settings``), ``steps`` on top.

    The bundled prior carries settings chosen on validation photographs (start time, η, η_b,
    steps and samples per operator; see :func:`solvers.load_prior`); the command line uses the
    same ones. Any other prior gets DDRM's paper defaults.

    Parameters
    ----------
    prior : prior
        A DDRM prior (its ``settings`` attribute, if any, is read).
    operator : str
        The registered operator name, e.g. ``"jpeg"``.
    steps : int, optional
        Replaces the tuned number of steps.

    Returns
    -------
    dict
        Keyword arguments for :func:`solvers.ddrm`.
    """
    kw: dict[str, Any] = dict(getattr(prior, "settings", {}).get(operator, {}))
    if steps is not None:
        kw["steps"] = steps
    return kw


def held_out_crop(name: str, size: int) -> Tensor:
    """The centre ``size × size`` crop of a photograph never used to train the default models.

    Parameters
    ----------
    name : str
        A name from :data:`solvers.common.data.EVAL_PHOTOS` (or any scikit-image photograph).
    size : int
        Side of the crop.

    Returns
    -------
    torch.Tensor
        ``(1, 3, size, size)`` in ``[0, 1]``.
    """
    x = photo(name)
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise SystemExit(f"--size {size} exceeds the {h}×{w} photograph {name!r}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size].contiguous()


def score(img: Tensor, truth: Tensor) -> dict[str, float]:
    """PSNR (dB) and SSIM of one image against the ground truth, after clipping to ``[0, 1]``."""
    img = img.clamp(0, 1).to(truth.dtype)
    return {"PSNR": float(metrics.psnr(img, truth)[0]), "SSIM": float(metrics.ssim(img, truth)[0])}


def bicubic(y: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic upsampling of a small image to ``size`` (the usual super-resolution baseline)."""
    return torch.nn.functional.interpolate(y, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def label(name: str, scores: Scores, method: str | None = None) -> str:
    """A panel title: ``name`` and the PSNR of ``method`` (default ``name``), e.g. ``DDRM 24.10 dB``."""
    return f"{name} {scores[method or name]['PSNR']:.2f} dB"


def report(task: str, scores: Scores) -> None:
    """Print one line per method: ``task: method  PSNR xx.xx dB  SSIM 0.xxx``."""
    for method, m in scores.items():
        extra = "".join(
            f"  {k} {v:.2f} dB" if k.startswith("PSNR") else f"  {k} {v:.3f}"
            for k, v in m.items()
            if k not in ("PSNR", "SSIM")
        )
        print(f"{task}: {method:<16} PSNR {m['PSNR']:6.2f} dB  SSIM {m['SSIM']:.3f}{extra}")


def _as_rgb(img: Tensor, size: tuple[int, int]) -> Tensor:
    """One image as ``(1, 3, H, W)`` at ``size``: grey repeated, smaller ones pixel-replicated."""
    img = img.detach().to("cpu", torch.float64).clamp(0, 1)
    if img.shape[1] == 1:
        img = img.expand(1, 3, *img.shape[-2:])
    if tuple(img.shape[-2:]) != size:
        img = torch.nn.functional.interpolate(img, size=size, mode="nearest")
    return img


def grid(panels: Sequence[tuple[str, Tensor]], *, gap: int = 4, strip: int = 14) -> Image.Image:
    """Images side by side, each under a small title (``[(title, image), ...]``).

    Parameters
    ----------
    panels : sequence of (str, torch.Tensor)
        Titles and ``(1, C, h, w)`` images; every image is shown at the size of the last one
        (the ground truth), smaller ones by pixel replication, grey ones as grey RGB.
    gap : int
        White pixels between panels.
    strip : int
        Height of the title strip.

    Returns
    -------
    PIL.Image.Image
        The figure.
    """
    size = tuple(int(s) for s in panels[-1][1].shape[-2:])
    h, w = size
    fig = Image.new("RGB", (len(panels) * w + (len(panels) - 1) * gap, h + strip), "white")
    font = ImageFont.load_default()
    for k, (title, img) in enumerate(panels):
        x0 = k * (w + gap)
        fig.paste(Image.fromarray(to_uint8(_as_rgb(img, (h, w)))), (x0, strip))
        head = Image.new("RGB", (w, strip), "white")  # a title longer than its panel is cut there
        ImageDraw.Draw(head).text((2, 1), title, fill="black", font=font)
        fig.paste(head, (x0, 0))
    return fig


def save_figures(out: str | Path, task: str, degraded: Tensor, restored: Tensor, panels: Sequence) -> Path:
    """Write ``{task}_input.png``, ``{task}_restored.png`` and the grid ``{task}_grid.png``.

    Parameters
    ----------
    out : str or Path
        Output folder (created).
    task : str
        File name stem.
    degraded, restored : torch.Tensor
        The "before" image (as the user sees the measurement) and the "after" image.
    panels : sequence of (str, torch.Tensor)
        The grid's titled panels, see :func:`grid`.

    Returns
    -------
    Path
        The grid's path.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shown = degraded.expand(1, 3, *degraded.shape[-2:]) if degraded.shape[1] == 1 else degraded
    save_image(shown.clamp(0, 1), out / f"{task}_input.png")
    save_image(restored.clamp(0, 1), out / f"{task}_restored.png")
    path = out / f"{task}_grid.png"
    with atomic_path(path) as tmp:
        grid(panels).save(tmp, format="PNG", optimize=True)
    print(f"wrote {out / task}_{{input,restored,grid}}.png")
    return path
