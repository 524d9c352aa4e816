"""The ``opkit eval`` command: degrade, restore and score the images of a folder."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import opkit
from opkit.files import atomic_path, check_folder, same_file, write_atomic
from opkit.images import save_image
from opkit.messages import printable
from opkit_cli.entries import check_params, create_operator, operator_entry
from opkit_cli.errors import EXIT_OK, fail, reason
from opkit_cli.folders import finish_scores, gathered, image_seed, planned_ranks, running
from opkit_cli.io import IMAGE_SUFFIXES, bundled_weights, check_outputs, read_input
from opkit_cli.models import file_digest, model_fingerprint, model_folders
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
#: The fields of every CSV row, in order.
FIELDS = ("image", "quality", "bpp", "method", "PSNR", "SSIM", "PSNR-B", "BEF")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :data:`SETTINGS`, as JSON gives them back."""
    mine: dict[str, Any] = json.loads(json.dumps({k: getattr(args, k, None) for k in SETTINGS}))
    return mine


def _parts_folder(args: argparse.Namespace) -> Path | None:
    """Where a run keeps the rows of each finished image until the CSV is written (``CSV.parts``)."""
    return Path(f"{args.csv}.parts") if args.csv else None


@dataclass
class Resume:
    """What the ``CSV.parts`` folder of an earlier run holds, found before any work.

    Attributes
    ----------
    folder : pathlib.Path or None
        ``CSV.parts`` (``None`` without ``--csv``).
    settings : dict or None
        The settings the folder was made with (``None``: no folder yet, or a damaged
        ``settings.json``).
    same : bool
        The folder exists and was made with this run's settings: this run continues it.
    """

    folder: Path | None
    settings: dict[str, Any] | None = None
    same: bool = False


def _check_parts(parts: Path | None, args: argparse.Namespace, mine: dict[str, Any] | None = None) -> Resume:
    """Look at ``CSV.parts`` before any work, writing nothing.

    Refused: a file or a link in its place; a folder that is not an ``opkit eval`` resume folder
    (no ``settings.json``, and not empty): it is the user's, never used nor removed; without
    ``--force``, a resume folder made with other settings. A ``settings.json`` that does not
    parse is this command's own damaged state: it is rewritten, and the parts are checked one by
    one by their keys.
    """
    if parts is None or not (parts.exists() or parts.is_symlink()):
        return Resume(parts)
    if parts.is_symlink() or not parts.is_dir():
        fail(f"--csv {args.csv}: {parts} exists and is not a resume folder of `opkit eval`; move it away")
    info = parts / "settings.json"
    if not info.is_file():
        if any(parts.iterdir()):
            fail(
                f"--csv {args.csv}: {parts} is a folder that `opkit eval` did not make (no settings.json); "
                "refusing to use or remove it: move it away"
            )
        return Resume(parts)
    try:
        theirs = json.loads(info.read_text(encoding="utf-8"))
        if not isinstance(theirs, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError, RecursionError):
        print(
            f"opkit: warning: {parts / 'settings.json'} is damaged; it is rewritten and each finished "
            "image is checked by its key",
            file=sys.stderr,
        )
        return Resume(parts)
    mine = _settings(args) if mine is None else mine
    if theirs != mine and not args.force:
        diff = sorted(k for k in mine if mine.get(k) != theirs.get(k))
        fail(
            f"{parts} holds an interrupted run with other settings ({', '.join(diff)}); "
            "pass --force to start over"
        )
    return Resume(parts, theirs, theirs == mine)


def _part_name(path: Path) -> str:
    return f"{path.name}.json"


def part_key(path: Path, settings: dict[str, Any], model: str) -> str:
    """The key of an image's finished rows: it names the work, so that no other work is taken for it.

    SHA-256 of the image file's content, the run's settings (:data:`SETTINGS`) and the model's
    fingerprint (:func:`~opkit_cli.models.model_fingerprint`).

    Parameters
    ----------
    path : pathlib.Path
        The image file.
    settings : dict
        The run's settings.
    model : str
        The model's fingerprint.

    Returns
    -------
    str
        64 hex digits.
    """
    work = {"image": file_digest(path), "settings": settings, "model": model}
    return hashlib.sha256(json.dumps(work, sort_keys=True).encode()).hexdigest()


def _valid_rows(rows: Any, name: str) -> bool:
    """Whether ``rows`` are CSV rows of the image ``name`` as :func:`_score_one` makes them."""
    if not isinstance(rows, list) or not rows:
        return False
    for r in rows:
        if not isinstance(r, dict) or tuple(r) != FIELDS or r["image"] != name:
            return False
        numbers = [r[k] for k in FIELDS[4:]] + ([r["bpp"]] if r["bpp"] is not None else [])
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            return False
    return True


def _read_part(parts: Path, path: Path, key: str) -> tuple[str, list[dict[str, Any]]]:
    """``(status, rows)`` of an image's part: ``"done"``, ``"missing"``, ``"damaged"`` (it does not
    parse as rows) or ``"other"`` (the rows of other work: another file, settings or model)."""
    file = parts / _part_name(path)
    if not file.is_file():
        return "missing", []
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError, OSError):
        return "damaged", []
    if not isinstance(data, dict) or not _valid_rows(data.get("rows"), path.name):
        return "damaged", []
    if data.get("key") != key:
        return "other", []
    return "done", data["rows"]


def _save_targets(
    args: argparse.Namespace, files: Sequence[Path], qualities: Sequence[int | None]
) -> dict[Path, list[Path]]:
    """Every image's ``--save`` files: ``<stem>[_q<Q>]_degraded.png`` and ``..._restored.png``.

    Images that share a stem (``a.png`` and ``a.jpg``) are named by their whole file name
    (``a.png_degraded.png``, ``a.jpg_degraded.png``) so that none overwrites another.
    """
    if not args.save:
        return {}
    save = Path(args.save)
    stems = Counter(f.stem for f in files)
    out: dict[Path, list[Path]] = {}
    for f in files:
        base = f.stem if stems[f.stem] == 1 else f.name
        tags = [f"{base}_q{q}" if q is not None else base for q in qualities]
        out[f] = [save / f"{tag}_{what}.png" for tag in tags for what in ("degraded", "restored")]
    seen: dict[Path, Path] = {}
    for f, targets in out.items():
        for t in targets:
            if t in seen:
                fail(f"--save: {seen[t]} and {f} would both be saved as {t}; rename one of them")
            seen[t] = f
    return out


def _check_eval_outputs(
    args: argparse.Namespace,
    files: Sequence[Path],
    targets: dict[Path, list[Path]],
    mine: Sequence[Path],
    resume: Resume,
) -> None:
    """Check every output of ``opkit eval`` before any work, writing nothing.

    ``--csv`` and ``--plot`` (:func:`~opkit_cli.io.check_outputs`); nothing is written into the
    evaluated folder (its images are the inputs of the next run), into ``--model`` or the bundled
    models; the ``--save`` folder and the files this process will save there: none may exist
    unless ``--force`` is given or this run continues the very same work (its own files).
    """
    folder = Path(args.folder)
    outputs: list[tuple[str, str | None, Sequence[str] | None]] = [("--csv", args.csv, None)]
    if args.plot:
        outputs.append(("--plot", args.plot, _plot_suffixes()))
    protected = [*model_folders(args), *bundled_weights()]
    check_outputs(
        outputs, inputs=[str(p) for p in files], protected=protected, force=args.force or resume.same
    )
    for flag, path, _ in outputs:
        if path and same_file(Path(path).absolute().parent, folder):
            fail(
                f"{flag} {path} lies in the evaluated folder {folder}, whose files are inputs; "
                "write it elsewhere"
            )
    if not args.save:
        return
    save = Path(args.save)
    if save.exists() and not save.is_dir():
        fail(f"--save {save} is a file, not a folder")
    if same_file(save, folder):
        fail(f"--save {save} is the folder of the images; choose another one")
    for model in protected:
        if save.resolve().is_relative_to(Path(model).resolve()):
            fail(f"--save {save}: refusing to write into the model folder {model}")
    try:
        check_folder(save)
    except ValueError as exc:
        fail(f"--save {exc}")
    others = [Path(p) for _, p, _ in outputs if p]
    existing: list[Path] = []
    for f in mine:
        for t in targets[f]:
            if t.is_dir():
                fail(f"--save: {t} is a folder; move it away")
            if any(same_file(t, o) for o in others):
                fail(f"--save: {t} is also a --csv or --plot output")
            if t.exists():
                existing.append(t)
    if existing and not (args.force or resume.same):
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        fail(f"--save: {existing[0]}{more} exist(s); pass --force to overwrite them")


def _score_one(
    path: Path,
    args: argparse.Namespace,
    params: dict[str, Any],
    qualities: list[int | None],
    restore: Runner,
    targets: list[Path] | None,
) -> list[dict[str, Any]]:
    """The CSV rows of one image (every quality and method); ``--save`` images written."""
    x = _crop_to_multiple(read_input(str(path), max_pixels_of(args), mode="RGB"), args.multiple)
    g = torch.Generator().manual_seed(image_seed(args.seed, path.name))
    restore.generator = g  # one stream per image: its scores depend on nothing else
    rows: list[dict[str, Any]] = []
    for i, q in enumerate(qualities):
        p = dict(params, **({"quality": q} if q is not None else {}))
        op = create_operator(args.op, tuple(x.shape[1:]), p)
        keep: dict[str, torch.Tensor] | None = {} if targets else None
        scores = evaluate_image(x, op, restore, sigma_y=args.sigma_y, generator=g, params=p, keep=keep)
        if keep and targets:
            save_image(keep["degraded"].clamp(0, 1), targets[2 * i])
            save_image(keep["restored"].clamp(0, 1), targets[2 * i + 1])
        bpp = file_bpp(x, op)
        for method, m in scores.items():
            rows.append({"image": path.name, "quality": q, "bpp": bpp, "method": method, **m})
        print(
            f"{printable(path.name)} q={q}: "
            + ", ".join(f"{k} {v['PSNR']:.2f} dB" for k, v in scores.items()),
            file=sys.stderr,
        )
    return rows


def cmd_eval(args: argparse.Namespace) -> int:
    """Degrade and restore every image of a folder; print a metrics table, write a CSV.

    Every image gets its own random stream (:func:`~opkit_cli.folders.image_seed`). Every
    argument and output is checked before any work and before anything is written or removed.
    With ``--csv`` the rows of each finished image are kept in ``CSV.parts`` under a key that
    names the work (:func:`part_key`) until the CSV is written, so an interrupted run resumes
    (``--force`` redoes every image); a part that does not parse, or holds other work, is
    redone. The images are dealt to ``--shard i/n`` and to the ranks of ``torchrun``; rank 0
    gathers the rows and writes the CSV, in the order of the image names, the same as one
    process writes. An image whose restoration fails is reported and the others go on; the CSV
    is then not written (exit status 1) and a rerun scores only what is missing.
    """
    if args.task:
        from opkit_cli.table import cmd_table

        return cmd_table(args, _eval_images(args))
    if len(args.solver) > 1:
        fail("several --solver names make a table: give the tasks with --task (see `opkit eval --help`)")
    args.solver = args.solver[0]
    params = parse_params(args.param)
    check_params(args.op, params)
    if args.qualities and "quality" not in operator_entry(args.op).parameters():
        fail(f"--qualities sweeps JPEG qualities; {args.op} has no quality parameter")
    files = _eval_images(args)
    qualities: list[int | None] = list(args.qualities) if args.qualities else [None]
    first = _crop_to_multiple(read_input(str(files[0]), max_pixels_of(args), mode="RGB"), args.multiple)
    p0 = dict(params, **({"quality": qualities[0]} if qualities[0] is not None else {}))
    op0 = create_operator(args.op, tuple(first.shape[1:]), p0)
    if args.plot:
        _plot_suffixes()
        if opkit.write_measurement(op0, torch.zeros((1, *op0.shape))) is None:
            fail(
                "--plot draws PSNR against the bits per pixel of the measurement's file; no file format "
                f"plugin writes one for --op {args.op}"
            )
    parts = _parts_folder(args)
    resume = _check_parts(parts, args)
    targets = _save_targets(args, files, qualities)
    planned = planned_ranks(args).take(files)
    _check_eval_outputs(args, files, targets, planned, resume)
    settings = _settings(args)
    keys: dict[Path, str] = {}
    if parts is not None:  # only a run with a resume folder needs to name its work
        fingerprint = model_fingerprint(args)
        keys = {f: part_key(f, settings, fingerprint) for f in files}
    with running(args) as ranks:
        mine = ranks.take(files)
        found: dict[str, list[dict[str, Any]]] = {}
        status = Counter[str]()
        if parts is not None and not args.force:
            for f in mine:
                state, rows = _read_part(parts, f, keys[f])
                status[state] += 1
                if state == "done":
                    found[f.name] = rows
        todo = [f for f in mine if f.name not in found]
        restore = Runner(args, torch.Generator(), progress=False, op=op0) if todo else None
        # every argument is checked and the model is loaded: only now is anything written
        if parts is not None:
            parts.mkdir(exist_ok=True)
            if resume.settings != settings:  # new, damaged, or --force over other settings
                write_atomic(parts / "settings.json", json.dumps(settings, indent=1))
        if args.save:
            Path(args.save).mkdir(exist_ok=True)
        fresh: dict[str, list[dict[str, Any]]] = {}
        failed: list[tuple[str, str]] = []
        for path in todo:
            assert restore is not None
            try:
                fresh[path.name] = _score_one(path, args, params, qualities, restore, targets.get(path))
            except (SystemExit, Exception) as exc:  # this image fails; the others go on
                failed.append((path.name, reason(exc)))
                continue
            if parts is not None:
                part = {"key": keys[path], "rows": fresh[path.name]}
                write_atomic(parts / _part_name(path), json.dumps(part))
        mine_rows = [r for f in mine for r in (fresh.get(f.name) or found.get(f.name) or [])]
        everyone = ranks.gather((len(found), mine_rows, failed, dict(status)))
    if not ranks.main:  # rank 0 reports for every rank
        return EXIT_OK
    resumed, rows, all_failed, counts = gathered(everyone)
    if parts is not None:
        _say_redone(parts, counts)
    complete = ranks.shard[1] == 1 and not all_failed
    if ranks.shard[1] > 1 and not all_failed and parts is not None:
        every = {f: _read_part(parts, f, keys[f]) for f in files}
        if all(state == "done" for state, _ in every.values()):
            rows = [r for f in files for r in every[f][1]]
            complete = True  # the last shard to finish writes the whole CSV
    order = {f.name: i for i, f in enumerate(files)}
    rows.sort(key=lambda r: order[r["image"]])  # stable: each image's rows keep their order
    if rows:
        _print_summary(rows, len({r["image"] for r in rows}), resumed)
    shown = ({**r, "image": printable(r["image"])} for r in rows)
    ended = finish_scores(
        args, ranks, all_failed, complete, unit="image", product="the CSV", fields=FIELDS, rows=shown
    )
    if ended is not None:
        return ended
    if args.plot:
        plot_rate_distortion(rows, Path(args.plot))
        print(f"wrote {args.plot}", file=sys.stderr)
    if parts is not None:
        shutil.rmtree(parts, ignore_errors=True)
    return EXIT_OK


def _say_redone(parts: Path, counts: Counter[str]) -> None:
    """One warning line for the parts of an earlier run that were not taken (scored again)."""
    damaged, other = counts.get("damaged", 0), counts.get("other", 0)
    if damaged:
        print(
            f"opkit: warning: {parts}: {damaged} finished image(s) could not be read (damaged); "
            "they were scored again",
            file=sys.stderr,
        )
    if other:
        print(
            f"opkit: warning: {parts}: {other} finished image(s) were scored from another file, "
            "model or settings; they were scored again",
            file=sys.stderr,
        )


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
