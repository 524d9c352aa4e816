"""The ``opkit eval`` command: degrade, restore and score the images of a folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import opkit
from opkit.io import (
    atomic_path,
    write_atomic,
)
from opkit_cli.io import IMAGE_SUFFIXES, _is_jpeg, check_outputs, jpeg_bytes, read_input
from opkit_cli.operators import check_params, create_operator, operator_entry
from opkit_cli.parsing import EXIT_OK, fail, max_pixels_of, parse_params
from opkit_cli.restore import Restorer, _protected_model, check_steps


def _crop_to_multiple(x: torch.Tensor, k: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return x[..., : h - h % k, : w - w % k]


def _jpeg_bpp(x: torch.Tensor, op: Any) -> float:
    """Bits per pixel of ``x`` saved by libjpeg with ``op``'s tables (for rate–distortion)."""
    return 8.0 * len(jpeg_bytes(x, op)) / (x.shape[-1] * x.shape[-2])


def evaluate_image(
    x: torch.Tensor,
    op: Any,
    restore: Any,
    *,
    sigma_y: float,
    generator: torch.Generator,
    params: dict[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Degrade one image, restore it, and score the baseline and the restoration.

    The baseline is ``H†y`` for a linear operator (and bicubic upsampling when ``y`` is a
    smaller image), ``Decode(y)`` for an encode/decode pair (libjpeg's decoder for JPEG).

    Parameters
    ----------
    x : torch.Tensor
        Ground truth ``(1, C, H, W)``.
    op : opkit.Operator
        The degradation.
    restore : callable
        ``restore(op, y, None, params) -> x̂`` (see :class:`Restorer`).
    sigma_y : float
        Measurement noise for linear operators.
    generator : torch.Generator
        Noise source.
    params : dict, optional
        The operator's parameters.

    Returns
    -------
    dict
        ``{method: {"PSNR", "SSIM", "PSNR-B", "BEF"}}``.
    """
    from opkit import metrics

    y = op(x)
    candidates: dict[str, torch.Tensor] = {}
    if isinstance(op, opkit.EncodeDecodeOperator):
        try:
            candidates["decode"] = op.decode(y, mode="libjpeg")  # type: ignore[call-arg]
        except TypeError:
            candidates["decode"] = op.decode(y)
    else:
        if sigma_y > 0:
            y = y + sigma_y * torch.randn(y.shape, generator=generator, dtype=y.dtype)
        candidates["pinv"] = op.pinv(y)
        if y.ndim == 4 and y.shape[-1] < x.shape[-1] and y.shape[1] == x.shape[1]:
            up = torch.nn.functional.interpolate(
                y, size=tuple(x.shape[-2:]), mode="bicubic", align_corners=False
            )
            candidates["bicubic"] = up
    candidates["restored"] = restore(op, y, None, params)
    out = {}
    for name, img in candidates.items():
        img = img.clamp(0, 1).to(x.dtype)
        out[name] = {
            "PSNR": float(metrics.psnr(img, x)[0]),
            "SSIM": float(metrics.ssim(img, x)[0]),
            "PSNR-B": float(metrics.psnr_b(img, x)[0]),
            "BEF": float(metrics.bef(img)[0]),
        }
    return out


def _plot_suffixes() -> tuple[str, ...]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        fail("--plot needs matplotlib (pip install matplotlib)")
    return tuple(f".{ext}" for ext in FigureCanvasBase.get_supported_filetypes())


def _eval_images(args: argparse.Namespace) -> list[Path]:
    """The image files of the eval folder, each read once before any work (a damaged one stops here)."""
    folder = Path(args.folder)
    if not folder.is_dir():
        fail(f"{folder} is not a folder" if folder.exists() else f"no such folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        fail(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    for p in files:
        h, w = read_input(str(p), max_pixels_of(args)).shape[-2:]
        if min(h, w) < args.multiple:
            fail(f"{p} ({w}x{h}) is smaller than --multiple {args.multiple}")
    return files


def cmd_eval(args: argparse.Namespace) -> int:
    """Degrade and restore every image of a folder; print a metrics table, write a CSV."""
    import csv
    import io

    params = parse_params(args.param)
    check_params(args.op, params)
    if args.qualities and "quality" not in operator_entry(args.op).parameters():
        fail(f"--qualities sweeps JPEG qualities; {args.op} has no quality parameter")
    files = _eval_images(args)
    outputs: list[tuple[str, str | None, Sequence[str] | None]] = [("--csv", args.csv, None)]
    if args.plot:
        outputs.append(("--plot", args.plot, _plot_suffixes()))
    check_outputs(outputs, inputs=[str(p) for p in files], protected=_protected_model(args), force=args.force)
    qualities: list[int | None] = list(args.qualities) if args.qualities else [None]
    first = _crop_to_multiple(read_input(str(files[0]), max_pixels_of(args), mode="RGB"), args.multiple)
    p0 = dict(params, **({"quality": qualities[0]} if qualities[0] is not None else {}))
    op0 = create_operator(args.op, tuple(first.shape[1:]), p0)
    if args.plot and not _is_jpeg(op0):
        fail(f"--plot draws PSNR against JPEG bits per pixel; it needs a JPEG operator, not {args.op}")
    if args.sigma_y > 0 and isinstance(op0, opkit.EncodeDecodeOperator):
        fail(f"--sigma-y does not apply to --op {args.op}: its measurement is a noiseless code")
    check_steps(args, op0)
    g = torch.Generator().manual_seed(args.seed)
    restore = Restorer(args, g, progress=False)

    rows: list[dict[str, Any]] = []
    for path in files:
        x = _crop_to_multiple(read_input(str(path), max_pixels_of(args), mode="RGB"), args.multiple)
        for q in qualities:
            p = dict(params, **({"quality": q} if q is not None else {}))
            op = create_operator(args.op, tuple(x.shape[1:]), p)
            scores = evaluate_image(x, op, restore, sigma_y=args.sigma_y, generator=g, params=p)
            bpp = _jpeg_bpp(x, op) if _is_jpeg(op) else None
            for method, m in scores.items():
                rows.append({"image": path.name, "quality": q, "bpp": bpp, "method": method, **m})
            print(
                f"{path.name} q={q}: " + ", ".join(f"{k} {v['PSNR']:.2f} dB" for k, v in scores.items()),
                file=sys.stderr,
            )
    keys = ["PSNR", "SSIM", "PSNR-B", "BEF"]
    print(f"| quality | method | {' | '.join(keys)} |")
    print("|---|---|" + "---|" * len(keys))
    groups: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["quality"], r["method"]), []).append(r)
    for (q, method), rs in groups.items():
        means = [sum(r[k] for r in rs) / len(rs) for k in keys]
        print(f"| {q if q is not None else '-'} | {method} | " + " | ".join(f"{v:.3f}" for v in means) + " |")
    if args.csv:
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(args.csv, buf.getvalue())
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.plot:
        plot_rate_distortion(rows, Path(args.plot))
        print(f"wrote {args.plot}", file=sys.stderr)
    return EXIT_OK


def plot_rate_distortion(rows: list[dict[str, Any]], path: Path) -> None:
    """PSNR against bits per pixel, one line per method (the DDRM-JPEG paper's Figure 3).

    Written atomically (:func:`opkit.io.atomic_path`), in the format of ``path``'s suffix.

    Parameters
    ----------
    rows : list of dict
        Rows of ``opkit eval`` with ``quality``, ``bpp``, ``method`` and ``PSNR``.
    path : Path
        Output image (PNG, PDF, SVG, ...).
    """
    _plot_suffixes()  # matplotlib with the Agg backend
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts: dict[int, list[tuple[float, float]]] = {}
        for r in rows:
            if r["method"] == method:
                pts.setdefault(r["quality"], []).append((r["bpp"], r["PSNR"]))
        qs = sorted(pts)
        xs = [sum(b for b, _ in pts[q]) / len(pts[q]) for q in qs]
        ys = [sum(p for _, p in pts[q]) / len(pts[q]) for q in qs]
        ax.plot(xs, ys, marker="o", label=method)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".").lower())
    finally:
        plt.close(fig)
