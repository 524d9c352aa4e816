"""The ``opkit eval`` command: degrade, restore and score the images of a folder."""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import opkit
from opkit.files import atomic_path, write_atomic
from opkit.images import save_image
from opkit_cli.entries import check_params, create_operator, operator_entry
from opkit_cli.errors import EXIT_OK, fail
from opkit_cli.folders import image_seed, running
from opkit_cli.io import IMAGE_SUFFIXES, check_outputs, read_input
from opkit_cli.models import model_folders
from opkit_cli.parsing import max_pixels_of, parse_params
from opkit_cli.runner import Runner


def _crop_to_multiple(x: torch.Tensor, k: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return x[..., : h - h % k, : w - w % k]


def file_bpp(x: torch.Tensor, op: Any) -> float | None:
    """Bits per pixel of ``op``'s measurement of ``x`` as its format plugin's file (rate–distortion).

    ``None`` when no file format plugin writes ``op`` (:func:`opkit.write_measurement`); for
    ``jpeg``, the size of the ``.jpg`` file libjpeg writes with the operator's tables.
    """
    written = opkit.write_measurement(op, x)
    return None if written is None else 8.0 * len(written[1]) / (x.shape[-1] * x.shape[-2])


def evaluate_image(
    x: torch.Tensor,
    op: Any,
    restore: Any,
    *,
    sigma_y: float,
    generator: torch.Generator,
    params: dict[str, Any] | None = None,
    keep: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict[str, float]]:
    """Degrade one image, restore it, and score the baseline and the restoration.

    The baseline is ``H†y`` for a linear operator (and bicubic upsampling when ``y`` is a
    smaller image), and for an encode/decode pair what a viewer shows
    (:meth:`~opkit.EncodeDecodeOperator.display`: libjpeg's decoder for JPEG).

    Parameters
    ----------
    x : torch.Tensor
        Ground truth ``(1, C, H, W)``.
    op : opkit.Operator
        The degradation.
    restore : callable
        ``restore(op, y, params) -> x̂`` (a :class:`~opkit_cli.runner.Runner`).
    sigma_y : float
        Measurement noise for linear operators.
    generator : torch.Generator
        Noise source.
    params : dict, optional
        The operator's parameters.
    keep : dict, optional
        Receives the images: ``"degraded"`` (the measurement when it is an image, else the
        baseline) and ``"restored"``.

    Returns
    -------
    dict
        ``{method: {"PSNR", "SSIM", "PSNR-B", "BEF"}}``.
    """
    from opkit import metrics

    y = op(x)
    candidates: dict[str, torch.Tensor] = {}
    if isinstance(op, opkit.EncodeDecodeOperator):
        candidates["decode"] = op.display(y)
    else:
        if sigma_y > 0:
            from solvers.common import randn

            y = y + sigma_y * randn(y.shape, y, generator)
        candidates["pinv"] = op.pinv(y)
        if y.ndim == 4 and y.shape[-1] < x.shape[-1] and y.shape[1] == x.shape[1]:
            up = torch.nn.functional.interpolate(
                y, size=tuple(x.shape[-2:]), mode="bicubic", align_corners=False
            )
            candidates["bicubic"] = up
    candidates["restored"] = restore(op, y, params)
    if keep is not None:
        image_like = isinstance(y, torch.Tensor) and y.ndim == 4 and y.shape[1] in (1, 3)
        keep["degraded"] = y if image_like and y.is_floating_point() else next(iter(candidates.values()))
        keep["restored"] = candidates["restored"]
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


#: The options that decide an ``opkit eval`` score; a resumed run must not change them.
SETTINGS = (
    "op", "param", "qualities", "solver", "model", "model_config", "class_label", "steps", "samples",
    "eta", "eta_b", "t_start", "sigma_y", "solver_option", "seed", "multiple", "dtype", "save",
)  # fmt: skip


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k, None) for k in SETTINGS}


def _parts_folder(args: argparse.Namespace) -> Path | None:
    """Where a run keeps the rows of each finished image until the CSV is written (``CSV.parts``)."""
    return Path(f"{args.csv}.parts") if args.csv else None


def _open_parts(parts: Path, args: argparse.Namespace) -> None:
    """Create the rows folder, or check that the run it holds had the same settings."""
    mine = _settings(args)
    info = parts / "settings.json"
    if parts.is_dir() and info.exists():
        theirs = json.loads(info.read_text())
        if theirs != json.loads(json.dumps(mine)):
            diff = sorted(k for k in mine if json.loads(json.dumps(mine.get(k))) != theirs.get(k))
            fail(
                f"{parts} holds an interrupted run with other settings ({', '.join(diff)}); "
                "pass --force to start over"
            )
        return
    parts.mkdir(exist_ok=True)
    if not info.exists():
        write_atomic(info, json.dumps(mine, indent=1))


def _part_name(path: Path) -> str:
    return f"{path.name}.json"


def _read_part(parts: Path | None, path: Path) -> list[dict[str, Any]]:
    assert parts is not None
    rows: list[dict[str, Any]] = json.loads((parts / _part_name(path)).read_text())
    return rows


def _score_one(
    path: Path,
    args: argparse.Namespace,
    params: dict[str, Any],
    qualities: list[int | None],
    restore: Runner,
) -> list[dict[str, Any]]:
    """The CSV rows of one image (every quality and method); ``--save`` images written."""
    x = _crop_to_multiple(read_input(str(path), max_pixels_of(args), mode="RGB"), args.multiple)
    g = torch.Generator().manual_seed(image_seed(args.seed, path.name))
    restore.generator = g  # one stream per image: its scores depend on nothing else
    rows: list[dict[str, Any]] = []
    for q in qualities:
        p = dict(params, **({"quality": q} if q is not None else {}))
        op = create_operator(args.op, tuple(x.shape[1:]), p)
        keep: dict[str, torch.Tensor] | None = {} if args.save else None
        scores = evaluate_image(x, op, restore, sigma_y=args.sigma_y, generator=g, params=p, keep=keep)
        if keep:
            tag = f"{path.stem}_q{q}" if q is not None else path.stem
            for what, img in keep.items():
                save_image(img.clamp(0, 1), Path(args.save) / f"{tag}_{what}.png")
        bpp = file_bpp(x, op)
        for method, m in scores.items():
            rows.append({"image": path.name, "quality": q, "bpp": bpp, "method": method, **m})
        print(
            f"{path.name} q={q}: " + ", ".join(f"{k} {v['PSNR']:.2f} dB" for k, v in scores.items()),
            file=sys.stderr,
        )
    return rows


def cmd_eval(args: argparse.Namespace) -> int:
    """Degrade and restore every image of a folder; print a metrics table, write a CSV.

    Every image gets its own random stream (:func:`~opkit_cli.folders.image_seed`). With
    ``--csv`` the rows of each finished image are kept in ``CSV.parts`` until the CSV is
    written, so an interrupted run resumes (``--force`` starts over). The images are dealt to
    ``--shard i/n`` and to the ranks of ``torchrun``; rank 0 gathers the rows and writes the CSV,
    in the order of the image names, the same as one process writes.
    """
    params = parse_params(args.param)
    check_params(args.op, params)
    if args.qualities and "quality" not in operator_entry(args.op).parameters():
        fail(f"--qualities sweeps JPEG qualities; {args.op} has no quality parameter")
    files = _eval_images(args)
    parts = _parts_folder(args)
    if parts is not None and args.force and parts.is_dir():
        shutil.rmtree(parts, ignore_errors=True)
    resuming = parts is not None and parts.is_dir()
    outputs: list[tuple[str, str | None, Sequence[str] | None]] = [("--csv", args.csv, None)]
    if args.plot:
        outputs.append(("--plot", args.plot, _plot_suffixes()))
    check_outputs(
        outputs,
        inputs=[str(p) for p in files],
        protected=model_folders(args),
        force=args.force or resuming,
    )
    if args.save:
        save = Path(args.save)
        if save.exists() and not save.is_dir():
            fail(f"--save {save} is a file, not a folder")
        if any(save.resolve() == p.parent.resolve() for p in files):
            fail(f"--save {save} is the folder of the images; choose another one")
    qualities: list[int | None] = list(args.qualities) if args.qualities else [None]
    first = _crop_to_multiple(read_input(str(files[0]), max_pixels_of(args), mode="RGB"), args.multiple)
    p0 = dict(params, **({"quality": qualities[0]} if qualities[0] is not None else {}))
    op0 = create_operator(args.op, tuple(first.shape[1:]), p0)
    if args.plot and opkit.write_measurement(op0, torch.zeros((1, *op0.shape))) is None:
        fail(
            "--plot draws PSNR against the bits per pixel of the measurement's file; no file format "
            f"plugin writes one for --op {args.op}"
        )
    with running(args) as ranks:
        if parts is not None:
            _open_parts(parts, args)
        if args.save:
            Path(args.save).mkdir(exist_ok=True)
        mine = ranks.take(files)
        done = {p.name for p in parts.iterdir()} if parts is not None else set()
        todo = [f for f in mine if _part_name(f) not in done]
        restore = Runner(args, torch.Generator(), progress=False, op=op0) if todo else None
        fresh: dict[str, list[dict[str, Any]]] = {}
        for path in todo:
            assert restore is not None
            fresh[path.name] = _score_one(path, args, params, qualities, restore)
            if parts is not None:
                write_atomic(parts / _part_name(path), json.dumps(fresh[path.name]))
        mine_rows: list[dict[str, Any]] = []
        for f in mine:  # earlier runs' rows from CSV.parts (only with --csv are images skipped)
            mine_rows += fresh[f.name] if f.name in fresh else _read_part(parts, f)
        everyone = ranks.gather((len(mine) - len(todo), mine_rows))  # on failure CSV.parts keeps them
    if not ranks.main:
        return EXIT_OK
    resumed = sum(n for n, _ in everyone)
    rows = [r for _, rs in everyone for r in rs]
    complete = ranks.shard[1] == 1
    if not complete and parts is not None and all((parts / _part_name(f)).exists() for f in files):
        rows = [r for f in files for r in _read_part(parts, f)]
        complete = True  # the last shard to finish writes the whole CSV
    order = {f.name: i for i, f in enumerate(files)}
    rows.sort(key=lambda r: order[r["image"]])  # stable: each image's rows keep their order
    _print_summary(rows, len({r["image"] for r in rows}), resumed)
    if not complete:
        print(
            f"shard {ranks.shard[0]}/{ranks.shard[1]} done; the CSV is written when every shard is "
            "done (or rerun without --shard to gather)",
            file=sys.stderr,
        )
        return EXIT_OK
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
    if parts is not None:
        shutil.rmtree(parts, ignore_errors=True)
    return EXIT_OK


def _print_summary(rows: list[dict[str, Any]], images: int, resumed: int) -> None:
    """The mean of every metric per quality and method, as a Markdown table on stdout."""
    keys = ["PSNR", "SSIM", "PSNR-B", "BEF"]
    print(f"| quality | method | {' | '.join(keys)} |")
    print("|---|---|" + "---|" * len(keys))
    groups: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["quality"], r["method"]), []).append(r)
    for (q, method), rs in groups.items():
        means = [sum(r[k] for r in rs) / len(rs) for k in keys]
        print(f"| {q if q is not None else '-'} | {method} | " + " | ".join(f"{v:.3f}" for v in means) + " |")
    if resumed:
        print(f"{images} image(s) scored, {resumed} of them by an earlier run (resumed)", file=sys.stderr)


def plot_rate_distortion(rows: list[dict[str, Any]], path: Path) -> None:
    """PSNR against bits per pixel, one line per method (the DDRM-JPEG paper's Figure 3).

    Written atomically (:func:`opkit.files.atomic_path`), in the format of ``path``'s suffix.

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
