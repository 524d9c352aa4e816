"""Entry point of the ``opkit`` command line."""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import opkit
from opkit.io import load_image, save_image

SAMPLES = ("astronaut", "chelsea", "coffee", "camera", "rocket")


def parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    """Parse ``k=v`` pairs; values are Python literals where they parse, else strings.

    Parameters
    ----------
    items : sequence of str
        E.g. ``["factor=4", "kernel=gaussian", "sigma=2.0"]``.

    Returns
    -------
    dict
        ``{"factor": 4, "kernel": "gaussian", "sigma": 2.0}``.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"opkit: --param expects key=value, got {item!r}")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out[key.strip()] = value
    return out


def read_input(spec: str) -> torch.Tensor:
    """Load an image file, or ``sample:NAME`` from scikit-image's bundled photographs.

    Parameters
    ----------
    spec : str
        A path, or ``sample:astronaut`` (also chelsea, coffee, camera, rocket).

    Returns
    -------
    torch.Tensor
        ``(1, C, H, W)`` in ``[0, 1]``.
    """
    if spec.startswith("sample:"):
        name = spec.split(":", 1)[1]
        if name not in SAMPLES:
            raise SystemExit(f"opkit: unknown sample {name!r}; choose from {', '.join(SAMPLES)}")
        try:
            from skimage import data
        except ImportError:  # pragma: no cover - scikit-image is a dependency
            raise SystemExit("opkit: sample images need scikit-image (pip install scikit-image)") from None
        arr = torch.from_numpy(getattr(data, name)().copy()).to(torch.float32) / 255.0
        x = arr.unsqueeze(0) if arr.ndim == 2 else arr.permute(2, 0, 1)
        return x.unsqueeze(0)
    try:
        return load_image(spec)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"opkit: {exc}") from None


def check_output(out: Path, inputs: Sequence[str], force: bool) -> None:
    """Refuse to overwrite an input, or an existing file without ``--force``."""
    for spec in inputs:
        if not spec.startswith("sample:") and Path(spec).resolve() == out.resolve():
            raise SystemExit(f"opkit: refusing to overwrite the input {spec}")
    if out.exists() and not force:
        raise SystemExit(f"opkit: {out} exists; pass --force to overwrite it")


def cmd_ops(args: argparse.Namespace) -> int:
    """List the registered operators with their parameters and plugins."""
    reg = opkit.default_registry()
    for entry in reg.entries():
        params = ", ".join(
            name if default is inspect.Parameter.empty else f"{name}={default!r}"
            for name, default in entry.parameters().items()
        )
        print(f"{entry.name:<14} {entry.description}")
        print(f"{'':<14} parameters: {params or '(none)'}   [plugin: {entry.plugin}]")
    for name, why in reg.skipped.items():
        print(f"(skipped plugin {name}: {why})", file=sys.stderr)
    return 0


def jpeg_bytes(x: torch.Tensor, op: Any) -> bytes:
    """Encode ``x`` as a baseline JPEG file with ``op``'s quantization tables and sampling.

    libjpeg (through Pillow) does the encoding, so the file holds what libjpeg computes; the
    ``jpeg`` operator agrees with it on all but a few coefficients in ten thousand.

    Parameters
    ----------
    x : torch.Tensor
        One image ``(1, C, H, W)`` in ``[0, 1]``.
    op : opkit operator
        A JPEG operator (``tables`` ``(C, 8, 8)`` in natural order, ``sampling``).

    Returns
    -------
    bytes
        The file's contents.
    """
    import io

    from PIL import Image

    from opkit.io import to_uint8

    tables = op.tables
    qtables = [tables[0].flatten().tolist()]
    if tables.shape[0] > 1:
        qtables.append(tables[1].flatten().tolist())
    sub = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[op.sampling]
    buf = io.BytesIO()
    Image.fromarray(to_uint8(x)).save(buf, format="JPEG", qtables=qtables, subsampling=sub)
    return buf.getvalue()


def cmd_degrade(args: argparse.Namespace) -> int:
    """Apply an operator (and optional Gaussian noise) to an image and write the result."""
    out = Path(args.output)
    check_output(out, [args.image], args.force)
    x = read_input(args.image)
    try:
        op = opkit.create(args.op, shape=tuple(x.shape[1:]), **parse_params(args.param))
    except KeyError as exc:
        raise SystemExit(f"opkit: {exc.args[0]}") from None
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"opkit: {args.op}: {exc}") from None
    if out.suffix.lower() in (".jpg", ".jpeg") and hasattr(op, "tables") and hasattr(op, "sampling"):
        if args.sigma_y > 0:
            raise SystemExit("opkit: --sigma-y does not apply to a JPEG file")
        out.write_bytes(jpeg_bytes(x, op))
        print(f"wrote {out} (a real JPEG with the operator's tables, {op.sampling})")
        return 0
    y = op(x)
    if isinstance(y, torch.Tensor) and y.ndim == 4 and y.shape[1] in (1, 3):
        if args.sigma_y > 0:
            g = torch.Generator().manual_seed(args.seed)
            y = y + args.sigma_y * torch.randn(y.shape, generator=g, dtype=y.dtype)
        image = y
    else:
        if args.sigma_y > 0:
            raise SystemExit(f"opkit: --sigma-y applies to image-valued measurements, not {args.op}")
        image = op.pinv(y)  # e.g. a coded measurement: write what its decoder gives
    save_image(image, out)
    print(f"wrote {out} ({args.op}, {tuple(image.shape[1:])})")
    return 0


def infer_image_shape(name: str, y_shape: tuple[int, ...], params: dict[str, Any]) -> tuple[int, int, int]:
    """The image shape ``(C, H, W)`` whose measurement under ``name`` has shape ``y_shape``.

    Tries the measurement's own size and, for operators with a ``factor``, the size times the
    factor, with three channels first (colorization) and then the measurement's count; the first
    shape for which the operator builds and its ``out_shape`` equals ``y_shape`` wins.

    Parameters
    ----------
    name : str
        Registered operator name.
    y_shape : tuple of int
        ``(C, h, w)`` of the measurement image.
    params : dict
        Operator parameters.

    Returns
    -------
    tuple of int
        The image shape.
    """
    c, h, w = y_shape
    factor = params.get("factor", 1)
    factors = [1] + ([int(factor)] if isinstance(factor, int) and factor > 1 else [])
    for f in factors:
        for cc in dict.fromkeys([3, c]):
            try:
                op = opkit.create(name, shape=(cc, h * f, w * f), **params)
            except (ValueError, TypeError):
                continue
            if isinstance(op, opkit.LinearOperator) and tuple(op.out_shape) != tuple(y_shape):
                continue
            return (cc, h * f, w * f)
    raise SystemExit(f"opkit: cannot find an image shape whose {name} measurement is {tuple(y_shape)}")


def _measurement(args: argparse.Namespace, params: dict[str, Any]) -> tuple[Any, Any, torch.Tensor]:
    """Operator, measurement and a displayable degraded image for ``restore``."""
    path = Path(args.image)
    if args.op == "jpeg" and path.suffix.lower() in (".jpg", ".jpeg") and not params:
        from opkit_plugins.jpeg import from_file  # the composition root may import plugins

        try:
            op, y = from_file(path)
        except ValueError as exc:
            raise SystemExit(f"opkit: {exc}") from None
        return op, y, op.decode(y, mode="libjpeg")
    img = read_input(args.image)
    shape = infer_image_shape(args.op, tuple(img.shape[1:]), params)
    created = opkit.create(args.op, shape=shape, **params)
    if isinstance(created, opkit.EncodeDecodeOperator):
        y = created(img)  # Encode(Decode(Encode(x))) = Encode(x): re-encoding a decoded image recovers y
        return created, y, img
    return created, img, img


def _side_by_side(images: list[torch.Tensor]) -> torch.Tensor:
    """Images (1, C, h, w) scaled up by pixel replication to the largest height, in a row."""
    h = max(int(t.shape[-2]) for t in images)
    row = []
    for t in images:
        t = t.expand(1, 3, *t.shape[-2:]) if t.shape[1] == 1 else t
        k = max(1, h // int(t.shape[-2]))
        t = t.repeat_interleave(k, -2).repeat_interleave(k, -1)
        pad_h = h - int(t.shape[-2])
        row.append(torch.nn.functional.pad(t, (0, 4, 0, pad_h), value=1.0))
    return torch.cat(row, -1)[..., :-4]


def ddrm_settings(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """DDRM keywords for ``args.op``: the model's tuned settings, then the user's flags on top.

    A model directory may ship ``ddrm_settings.json`` (the bundled default does: start time, η,
    η_b, steps and samples per operator, chosen on validation photographs); flags given on the
    command line (``--steps``, ``--samples``, ``--eta``, ``--eta-b``, ``--t-start``) win.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``op`` and the flags above, ``None`` when not given).
    model : prior
        The loaded prior (``settings`` attribute, if any).

    Returns
    -------
    dict
        Keyword arguments for :func:`solvers.ddrm`.
    """
    kw: dict[str, Any] = dict(getattr(model, "settings", {}).get(args.op, {}))
    flags = {"steps": "steps", "num_samples": "samples", "eta": "eta", "eta_b": "eta_b", "t_start": "t_start"}
    for key, attr in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            kw[key] = value
    return kw


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_model(args: argparse.Namespace) -> Any:
    """The DDRM prior of ``--model`` with ``--model-config``, ``--download``, ``--device``, ``--dtype``.

    Parameters
    ----------
    args : argparse.Namespace
        ``model`` (a directory, checkpoint file, preset name or hub id), ``model_config`` (a JSON
        file or preset name), ``download``, ``device`` and ``dtype`` (a key of :data:`DTYPES`).

    Returns
    -------
    solvers.priors.UNetPrior
        The prior (see :func:`solvers.load_prior`).
    """
    import solvers

    return solvers.load_prior(
        args.model,
        config=args.model_config,
        device=args.device,
        dtype=DTYPES[args.dtype] if args.dtype else None,
        download=args.download,
    )


def cmd_convert(args: argparse.Namespace) -> int:
    """Write any checkpoint ``load_prior`` accepts as a safetensors model directory with its config."""
    from solvers.priors import save_prior

    out = Path(args.output)
    if out.exists() and not args.force and (not out.is_dir() or any(out.iterdir())):
        raise SystemExit(f"opkit: {out} exists; pass --force to overwrite it")
    try:
        prior = load_model(args)
    except (OSError, ValueError, ImportError) as exc:
        raise SystemExit(f"opkit: {exc}") from None
    save_prior(prior, out)
    n = sum(p.numel() for p in prior.net.parameters())
    print(f"wrote {out} ({type(prior.net).__name__}, {n / 1e6:.1f}M parameters); load it with --model {out}")
    return 0


def make_restorer(
    args: argparse.Namespace, generator: torch.Generator, *, progress: bool
) -> Callable[[Any, Any, torch.Tensor | None], torch.Tensor]:
    """Load the chosen solver's model once and return ``restore(op, y, y_image=None)``.

    DDRM uses the operator and its measurement; DriftRec is blind and uses the degraded image
    (``y_image`` when it has the operator's image shape, else ``Decode(y)`` or ``H†y``).

    Parameters
    ----------
    args : argparse.Namespace
        ``solver``, ``model``, ``steps``, ``samples`` and ``sigma_y``.
    generator : torch.Generator
        Randomness of the solver.
    progress : bool
        Show DDRM's progress bar.

    Returns
    -------
    callable
        The restoration function.
    """
    import solvers

    label = getattr(args, "class_label", None)
    model_kwargs = {"class_labels": torch.tensor([label])} if label is not None else None
    if args.solver != "ddrm" and (label is not None or args.model_config or args.download):
        raise SystemExit("opkit: --model-config, --download and --class-label apply to --solver ddrm")
    try:
        if args.solver == "ddrm":
            model = load_model(args)
        else:
            score = solvers.load_driftrec(args.model)
    except (OSError, ValueError, NotImplementedError, ImportError) as exc:
        raise SystemExit(f"opkit: {exc}") from None

    def restore(op: Any, y: Any, y_image: torch.Tensor | None = None) -> torch.Tensor:
        if args.solver == "ddrm":
            out = solvers.ddrm(
                op,
                y,
                model,
                **ddrm_settings(args, model),
                sigma_y=args.sigma_y,
                generator=generator,
                progress=progress,
                model_kwargs=model_kwargs,
            )
        else:
            if y_image is None or tuple(y_image.shape[1:]) != op.shape:
                y_image = op.decode(y) if isinstance(op, opkit.EncodeDecodeOperator) else op.pinv(y)
            out = solvers.driftrec(
                y_image,
                score,
                sde="model",
                steps=args.steps or 100,
                num_samples=args.samples or 1,
                generator=generator,
            )
        assert isinstance(out, torch.Tensor)
        return out

    return restore


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a degraded image with DDRM or DriftRec."""
    out = Path(args.output)
    check_output(out, [args.image], args.force)
    if args.compare:
        check_output(Path(args.compare), [args.image], args.force)
    params = parse_params(args.param)
    try:
        op, y, shown = _measurement(args, params)
    except KeyError as exc:
        raise SystemExit(f"opkit: {exc.args[0]}") from None
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"opkit: {args.op}: {exc}") from None
    g = torch.Generator().manual_seed(args.seed)
    restore = make_restorer(args, g, progress=not args.quiet)
    try:
        x = restore(op, y, shown)
    except (ValueError, NotImplementedError) as exc:
        raise SystemExit(f"opkit: {exc}") from None
    assert isinstance(x, torch.Tensor)
    save_image(x, out)
    print(f"wrote {out} ({args.solver}, {args.op}, {tuple(x.shape[1:])})")
    if args.compare:
        panels = [shown.to(x.dtype), x]
        if args.truth:
            panels.append(read_input(args.truth).to(x.dtype))
        save_image(_side_by_side(panels), Path(args.compare))
        print(f"wrote {args.compare} (input | restoration{' | truth' if args.truth else ''})")
    return 0


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def _crop_to_multiple(x: torch.Tensor, k: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return x[..., : h - h % k, : w - w % k]


def _jpeg_bpp(x: torch.Tensor, op: Any) -> float:
    """Bits per pixel of ``x`` saved by libjpeg with ``op``'s tables (for rate–distortion)."""
    return 8.0 * len(jpeg_bytes(x, op)) / (x.shape[-1] * x.shape[-2])


def evaluate_image(
    x: torch.Tensor, op: Any, restore: Any, *, sigma_y: float, generator: torch.Generator
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
        ``restore(op, y, None) -> x̂`` (see :func:`make_restorer`).
    sigma_y : float
        Measurement noise for linear operators.
    generator : torch.Generator
        Noise source.

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
    candidates["restored"] = restore(op, y, None)
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


def cmd_eval(args: argparse.Namespace) -> int:
    """Degrade and restore every image of a folder; print a metrics table, write a CSV."""
    import csv

    folder = Path(args.folder)
    files = (
        sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    )
    if not files:
        raise SystemExit(f"opkit: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    params = parse_params(args.param)
    qualities = [int(q) for q in args.qualities.split(",")] if args.qualities else [None]
    g = torch.Generator().manual_seed(args.seed)
    restore = make_restorer(args, g, progress=False)

    rows: list[dict[str, Any]] = []
    for path in files:
        x = _crop_to_multiple(load_image(path, mode="RGB"), args.multiple)
        for q in qualities:
            p = dict(params, **({"quality": q} if q is not None else {}))
            try:
                op = opkit.create(args.op, shape=tuple(x.shape[1:]), **p)
            except KeyError as exc:
                raise SystemExit(f"opkit: {exc.args[0]}") from None
            except (ValueError, TypeError) as exc:
                raise SystemExit(f"opkit: {args.op}: {exc}") from None
            scores = evaluate_image(x, op, restore, sigma_y=args.sigma_y, generator=g)
            bpp = _jpeg_bpp(x, op) if hasattr(op, "tables") and hasattr(op, "sampling") else None
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
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.plot and rows[0]["bpp"] is not None:
        plot_rate_distortion(rows, Path(args.plot))
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def plot_rate_distortion(rows: list[dict[str, Any]], path: Path) -> None:
    """PSNR against bits per pixel, one line per method (the DDRM-JPEG paper's Figure 3).

    Parameters
    ----------
    rows : list of dict
        Rows of ``opkit eval`` with ``quality``, ``bpp``, ``method`` and ``PSNR``.
    path : Path
        Output PNG.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("opkit: --plot needs matplotlib (pip install matplotlib)") from None
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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _training_images(folder: str | None, crop: int) -> list[torch.Tensor]:
    """Images of a folder, or scikit-image's training photographs when ``folder`` is ``builtin``."""
    from solvers.data import TRAIN_PHOTOS, photo

    if folder in (None, "builtin"):
        return [photo(name) for name in TRAIN_PHOTOS]
    root = Path(folder)
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else []
    images = [load_image(p, mode="RGB") for p in files]
    images = [im for im in images if min(im.shape[-2:]) >= crop]
    if not images:
        raise SystemExit(f"opkit: no training images of at least {crop}² pixels in {root}")
    return images


def cmd_train(args: argparse.Namespace) -> int:
    """Train a DDRM prior or a DriftRec model (resumes from the output directory)."""
    images = _training_images(args.data, args.crop)
    if args.what == "prior":
        from solvers.prior_training import train_prior

        res = train_prior(
            args.output,
            images,
            preset=args.preset or "small",
            steps=args.steps,
            batch_size=args.batch,
            crop_size=args.crop,
            lr=args.lr or 2e-4,
            seed=args.seed,
            device=args.device,
            max_seconds=args.max_seconds,
        )
        print(
            f"prior: {res['step']} steps, {res['parameters'] / 1e6:.2f}M parameters, {res['seconds']:.0f} s"
        )
        return 0
    from solvers.training import train_driftrec

    lo, _, hi = (args.qualities or "1-100").partition("-")
    out = train_driftrec(
        [im[0] for im in images],
        args.op,
        size=args.preset or "tiny",
        steps=args.steps,
        batch_size=args.batch,
        crop_size=args.crop,
        lr=args.lr or 1e-4,
        seed=args.seed,
        device=args.device,
        quality_range=(int(lo), int(hi or lo)) if args.op == "jpeg" else None,
        operator_params=parse_params(args.param) or None,
        checkpoint_dir=args.output,
        checkpoint_every=250,
        resume=True,
    )
    print(f"driftrec: {out.step} steps, last loss {out.losses[-1]:.4f}")
    return 0


def _ddrm_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--eta", type=float, default=None, help="DDRM η (default: the model's tuned setting)")
    s.add_argument("--eta-b", type=float, default=None, help="DDRM η_b (default: the model's setting)")
    s.add_argument("--t-start", type=int, default=None, help="DDRM first timestep (default: the model's)")


MODEL_HELP = (
    "DDRM prior: 'default', a diffusers or converted directory, an ADM checkpoint (.pt/.safetensors), "
    "a preset (imagenet256-uncond, imagenet256-cond, ffhq256, lsun-bedroom, ddpm-celebahq-256, ...) "
    "or a Hugging Face hub id"
)


def add_model_arguments(s: argparse.ArgumentParser) -> None:
    """``--model-config``, ``--download``, ``--device`` and ``--dtype`` (see :func:`load_model`)."""
    s.add_argument("--model-config", help="ADM checkpoint settings: a JSON file or a preset name")
    s.add_argument("--download", action="store_true", help="fetch a preset's file or a hub model if missing")
    s.add_argument("--device", default=None, help="device of the network (default cpu)")
    s.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="dtype of the network")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    p = argparse.ArgumentParser(prog="opkit", description="Degrade and restore images with opkit.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("ops", help="list registered operators and their parameters")
    s.set_defaults(func=cmd_ops)
    s = sub.add_parser("degrade", help="apply an operator to an image")
    s.add_argument("image", help="input image path, or sample:astronaut|chelsea|coffee|camera|rocket")
    s.add_argument("--op", required=True, help="operator name (see `opkit ops`)")
    s.add_argument("--param", action="append", metavar="K=V", help="operator parameter (repeatable)")
    s.add_argument("--sigma-y", type=float, default=0.0, help="Gaussian noise std in [0,1] units")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise")
    s.add_argument("-o", "--output", required=True, help="output image path")
    s.add_argument("--force", action="store_true", help="overwrite an existing output")
    s.set_defaults(func=cmd_degrade)
    s = sub.add_parser("restore", help="restore a degraded image (DDRM or DriftRec)")
    s.add_argument("image", help="degraded image (for --op jpeg, a .jpg file is read with its own tables)")
    s.add_argument("--op", required=True, help="the operator that degraded it")
    s.add_argument("--param", action="append", metavar="K=V", help="operator parameter (repeatable)")
    s.add_argument("--solver", choices=("ddrm", "driftrec"), default="ddrm")
    s.add_argument("--model", default="default", help=MODEL_HELP)
    add_model_arguments(s)
    s.add_argument("--class-label", type=int, help="class of a class-conditional prior (DDRM-CC)")
    s.add_argument("--steps", type=int, default=None, help="solver steps (default: the model's)")
    s.add_argument("--samples", type=int, default=None, help="samples averaged (default: the model's)")
    _ddrm_flags(s)
    s.add_argument("--sigma-y", type=float, default=0.0, help="measurement noise std (DDRM, [0,1] units)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--truth", help="ground-truth image for --compare")
    s.add_argument("--compare", help="also write input | restoration [| truth] side by side here")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--force", action="store_true", help="overwrite existing outputs")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_restore)
    s = sub.add_parser("eval", help="degrade and restore a folder of images; print PSNR/SSIM/PSNR-B/BEF")
    s.add_argument("folder", help="folder of ground-truth images")
    s.add_argument("--op", required=True)
    s.add_argument("--param", action="append", metavar="K=V")
    s.add_argument("--qualities", help="comma-separated JPEG qualities to sweep (rate–distortion)")
    s.add_argument("--solver", choices=("ddrm", "driftrec"), default="ddrm")
    s.add_argument("--model", default="default", help=MODEL_HELP)
    add_model_arguments(s)
    s.add_argument("--steps", type=int, default=None)
    s.add_argument("--samples", type=int, default=None)
    _ddrm_flags(s)
    s.add_argument("--sigma-y", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--multiple", type=int, default=16, help="crop images to a multiple of this size")
    s.add_argument("--csv", help="write every score here")
    s.add_argument("--plot", help="rate–distortion plot (PNG) for a JPEG quality sweep")
    s.set_defaults(func=cmd_eval)
    s = sub.add_parser("train", help="train a DDRM prior or a DriftRec model (resumable)")
    s.add_argument("what", choices=("prior", "driftrec"))
    s.add_argument(
        "data", nargs="?", default="builtin", help="image folder, or 'builtin' (scikit-image photos)"
    )
    s.add_argument("-o", "--output", required=True, help="model directory (resumed if it exists)")
    s.add_argument("--op", default="jpeg", help="DriftRec: the corruption operator")
    s.add_argument("--param", action="append", metavar="K=V", help="DriftRec: operator parameter")
    s.add_argument("--qualities", help="DriftRec + jpeg: quality range drawn per image, e.g. 1-100")
    s.add_argument("--preset", help="network size (prior: tiny/small/base; DriftRec: tiny/small/paper)")
    s.add_argument("--steps", type=int, default=1000)
    s.add_argument("--batch", type=int, default=16)
    s.add_argument("--crop", type=int, default=64)
    s.add_argument("--lr", type=float, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="cpu")
    s.add_argument("--max-seconds", type=float, default=None, help="prior: stop (and save) after this long")
    s.set_defaults(func=cmd_train)
    s = sub.add_parser("convert", help="write a checkpoint once as a safetensors model directory")
    s.add_argument("model", help=MODEL_HELP)
    add_model_arguments(s)
    s.add_argument("-o", "--output", required=True, help="the model directory to write")
    s.add_argument("--force", action="store_true", help="write into an existing, non-empty directory")
    s.set_defaults(func=cmd_convert)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    args = build_parser().parse_args(argv)
    return int(args.func(args))
