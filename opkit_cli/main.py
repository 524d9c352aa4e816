"""Entry point of the ``opkit`` command line.

Guarantees (see the command-line page of the documentation): every error is one line starting
with ``opkit:``; inputs are never overwritten, existing outputs only with ``--force``, model
folders never; every file is written atomically (a temporary file beside the target, renamed
onto it when complete); outputs are checked before any work starts. Exit codes:
:data:`EXIT_OK`, :data:`EXIT_ERROR`, :data:`EXIT_USAGE` and :data:`EXIT_INTERRUPTED`.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import inspect
import math
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

import opkit
from opkit.io import (
    DEFAULT_MAX_PIXELS,
    ImageTooLargeError,
    atomic_path,
    check_output,
    image_suffixes,
    load_image,
    same_file,
    save_image,
    write_atomic,
)

SAMPLES = ("astronaut", "chelsea", "coffee", "camera", "rocket")

#: Exit status of a command that succeeded.
EXIT_OK = 0
#: Exit status of a command that failed (one ``opkit: ...`` line on stderr says why).
EXIT_ERROR = 1
#: Exit status of a command line argparse refuses (a bad option or value).
EXIT_USAGE = 2
#: Exit status after Ctrl-C (128 + SIGINT); partial files are removed.
EXIT_INTERRUPTED = 130

#: Suffixes ``degrade`` writes losslessly (``.jpg`` only for a JPEG operator).
LOSSLESS_SUFFIXES = (".bmp", ".pgm", ".png", ".ppm", ".tif", ".tiff")
JPEG_SUFFIXES = (".jpeg", ".jpg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


# ----------------------------------------------------------------------------------------------
# errors, warnings, argument types
# ----------------------------------------------------------------------------------------------
def one_line(text: object) -> str:
    """``text`` (or an exception's message) with its whitespace, newlines included, collapsed.

    Parameters
    ----------
    text : object
        A string or an exception.

    Returns
    -------
    str
        One line (the exception's type name when its message is empty).
    """
    s = " ".join(str(text).split())
    return s or type(text).__name__


def fail(message: object) -> NoReturn:
    """Stop the command with ``opkit: MESSAGE`` on stderr and exit status :data:`EXIT_ERROR`.

    Parameters
    ----------
    message : str or Exception
        What went wrong, naming the file, option or value.

    Raises
    ------
    SystemExit
        Always.
    """
    raise SystemExit(f"opkit: {one_line(message)}")


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line: ``opkit: restore: argument --steps: ...``."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("opkit").strip()
        head = f"opkit: {where}: " if where else "opkit: "
        self.exit(EXIT_USAGE, f"{head}{one_line(message)} (see '{self.prog} --help')\n")


def _number(text: str, kind: type) -> Any:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer ``>= 1``."""
    value: int = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer ``>= 0``."""
    value: int = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number ``>= 0``."""
    value: float = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number ``> 0``."""
    value: float = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a number in ``[0, 1]``."""
    value: float = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def _quality(text: str) -> int:
    try:
        q = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"JPEG quality {text.strip()!r} is not an integer") from None
    if not 1 <= q <= 100:
        raise argparse.ArgumentTypeError(f"JPEG quality {q} is not in 1..100")
    return q


def quality_list(text: str) -> list[int]:
    """argparse type: comma-separated JPEG qualities, each in 1..100 (``"5,10,30"``)."""
    return [_quality(part) for part in text.split(",")]


def quality_range(text: str) -> tuple[int, int]:
    """argparse type: a JPEG quality range ``LO-HI`` (or one quality), within 1..100."""
    lo, sep, hi = text.partition("-")
    a = _quality(lo)
    b = _quality(hi) if sep else a
    if a > b:
        raise argparse.ArgumentTypeError(f"empty quality range {text!r}")
    return a, b


def max_pixels_of(args: argparse.Namespace) -> int | None:
    """The ``--max-pixels`` limit of a command (``0`` means none)."""
    value: int = args.max_pixels
    return value or None


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show every warning as one ``opkit: warning: ...`` line on stderr while the block runs."""

    def show(
        message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None
    ) -> None:
        print(f"opkit: warning: {one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
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
            fail(f"--param expects key=value, got {item!r}")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = raw
        out[key.strip()] = value
    return out


def _is_sample(spec: str) -> bool:
    return spec.startswith("sample:")


def read_input(
    spec: str, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, mode: str | None = None
) -> torch.Tensor:
    """Load an image file, or ``sample:NAME`` from scikit-image's bundled photographs.

    Parameters
    ----------
    spec : str
        A path, or ``sample:astronaut`` (also chelsea, coffee, camera, rocket).
    max_pixels : int or None
        Refuse larger files (``--max-pixels``), from the header, before decoding.
    mode : {None, "RGB", "L"}
        As :func:`opkit.io.load_image`.

    Returns
    -------
    torch.Tensor
        ``(1, C, H, W)`` in ``[0, 1]``.
    """
    if _is_sample(spec):
        name = spec.split(":", 1)[1]
        if name not in SAMPLES:
            fail(f"unknown sample {name!r}; choose from {', '.join(SAMPLES)}")
        try:
            from skimage import data
        except ImportError:  # pragma: no cover - scikit-image is a dependency
            fail("sample images need scikit-image (pip install scikit-image)")
        arr = torch.from_numpy(getattr(data, name)().copy()).to(torch.float32) / 255.0
        x = arr.unsqueeze(0) if arr.ndim == 2 else arr.permute(2, 0, 1)
        x = x.unsqueeze(0)
        return x.expand(1, 3, *x.shape[2:]).contiguous() if mode == "RGB" and x.shape[1] == 1 else x
    try:
        return load_image(spec, max_pixels=max_pixels, mode=mode)
    except ImageTooLargeError as exc:
        fail(f"{exc}; raise the limit with --max-pixels")
    except (FileNotFoundError, ValueError) as exc:
        fail(exc)


# ----------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------
def bundled_weights() -> list[Path]:
    """Folders of the models bundled with the package (``solvers/weights``), found without importing.

    Returns
    -------
    list of pathlib.Path
        The folders (none when the solvers package is not installed).
    """
    spec = importlib.util.find_spec("solvers")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(loc) / "weights" for loc in spec.submodule_search_locations]


def check_outputs(
    outputs: Sequence[tuple[str, str | None, Sequence[str] | None]],
    *,
    inputs: Sequence[str | None] = (),
    protected: Sequence[Path] = (),
    force: bool = False,
) -> None:
    """Check every output of a command before any work starts (:func:`opkit.io.check_output`).

    Parameters
    ----------
    outputs : sequence of (str, str or None, sequence of str or None)
        ``(option, path, accepted suffixes)``; options without a path are skipped.
    inputs : sequence of str
        Input files (``sample:`` specs and ``None`` are skipped); never overwritten.
    protected : sequence of Path
        Folders nothing may be written into; the bundled model folders are always added.
    force : bool
        ``--force``: existing outputs may be replaced.
    """
    given = [(flag, path, sfx) for flag, path, sfx in outputs if path]
    files = [i for i in inputs if i and not _is_sample(i)]
    folders = [*protected, *bundled_weights()]
    for i, (flag, path, suffixes) in enumerate(given):
        for other_flag, other, _ in given[:i]:
            if same_file(path, other):
                fail(f"{other_flag} and {flag} name the same file {path}")
        try:
            check_output(path, inputs=files, protected=folders, suffixes=suffixes, force=force)
        except FileExistsError:
            fail(f"{path} exists; pass --force to overwrite it")
        except ValueError as exc:
            fail(f"{flag} {exc}")


def _is_jpeg(op: Any) -> bool:
    return hasattr(op, "tables") and hasattr(op, "sampling")


# ----------------------------------------------------------------------------------------------
# operators
# ----------------------------------------------------------------------------------------------
def operator_entry(name: str) -> opkit.OperatorEntry:
    """The registry entry of ``name``, or a one-line error listing the operators."""
    try:
        return opkit.default_registry().entry(name)
    except KeyError as exc:
        fail(exc.args[0])


def _takes_any_keyword(factory: Any) -> bool:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return True
    return any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def check_params(name: str, params: dict[str, Any]) -> None:
    """Refuse ``--param`` names the operator ``name`` does not take (naming its parameters)."""
    entry = operator_entry(name)
    if _takes_any_keyword(entry.factory):
        return
    known = entry.parameters()
    for key in params:
        if key not in known:
            fail(f"{name} has no parameter {key!r}; its parameters: {', '.join(known) or '(none)'}")


def create_operator(name: str, shape: tuple[int, ...], params: dict[str, Any]) -> Any:
    """``opkit.create(name, shape=shape, **params)`` with one-line errors naming the parameter."""
    check_params(name, params)
    try:
        return opkit.create(name, shape=shape, **params)
    except (ValueError, TypeError) as exc:
        fail(f"{name}: {exc}")


def infer_image_shape(name: str, y_shape: tuple[int, ...], params: dict[str, Any]) -> tuple[int, int, int]:
    """The image shape ``(C, H, W)`` whose measurement under ``name`` has shape ``y_shape``.

    Tries the measurement's own size and, for operators with a ``factor`` (given, or the
    operator's default, e.g. 4 for super-resolution), the size times the factor, with three
    channels first (colorization) and then the measurement's count; the first shape for which
    the operator builds and its ``out_shape`` equals ``y_shape`` wins. An encode/decode operator
    keeps the image's own shape. When no shape builds, the operator's own error (which names the
    bad parameter) is reported.

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
    check_params(name, params)
    c, h, w = y_shape
    factor = params.get("factor", operator_entry(name).parameters().get("factor", 1))
    factors = [1]
    if isinstance(factor, int) and not isinstance(factor, bool) and factor > 1:
        factors.append(factor)
    errors: list[str] = []
    candidates = [(f, cc) for f in factors for cc in dict.fromkeys([3, c])]
    for f, cc in candidates:
        try:
            op = opkit.create(name, shape=(cc, h * f, w * f), **params)
        except (ValueError, TypeError) as exc:
            errors.append(one_line(exc))
            continue
        if isinstance(op, opkit.LinearOperator):
            if tuple(op.out_shape) != tuple(y_shape):
                continue
        elif (cc, f) != (c, 1):  # an encode/decode pair keeps the image's shape
            continue
        return (cc, h * f, w * f)
    if len(errors) == len(candidates):  # no shape builds: the parameters are at fault
        fail(f"{name}: {Counter(errors).most_common(1)[0][0]}")
    fail(f"cannot find an image shape whose {name} measurement is {tuple(y_shape)}; check --param")


# ----------------------------------------------------------------------------------------------
# opkit ops
# ----------------------------------------------------------------------------------------------
def cmd_ops(args: argparse.Namespace) -> int:
    """List the registered operators with their parameters and plugins."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", opkit.OpkitPluginWarning)  # listed below instead
        reg = opkit.default_registry()
    for entry in reg.entries():
        params = ", ".join(
            name if default is inspect.Parameter.empty else f"{name}={default!r}"
            for name, default in entry.parameters().items()
        )
        print(f"{entry.name:<14} {entry.description}")
        print(f"{'':<14} parameters: {params or '(none)'}   [plugin: {entry.plugin}]")
    for name, why in reg.skipped.items():
        print(f"(skipped plugin {name}: {one_line(why)})", file=sys.stderr)
    return EXIT_OK


def cmd_solvers(args: argparse.Namespace) -> int:
    """List the registered solvers: operator kinds, model, options and plugin."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", opkit.OpkitPluginWarning)  # listed below instead
        reg = opkit.default_registry()
    for entry in reg.solver_entries():
        opts = ", ".join(
            name if default is inspect.Parameter.empty else f"{name}={default!r}"
            for name, default in entry.options().items()
        )
        print(f"{entry.name:<14} {entry.description}")
        kinds = ", ".join(entry.accepts)
        print(f"{'':<14} operators: {kinds}   model: {entry.model}   [plugin: {entry.plugin}]")
        print(f"{'':<14} options: {opts or '(none)'}")
    for name, why in reg.skipped.items():
        print(f"(skipped plugin {name}: {one_line(why)})", file=sys.stderr)
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# opkit degrade
# ----------------------------------------------------------------------------------------------
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
    params = parse_params(args.param)
    check_params(args.op, params)
    out = Path(args.output)
    suffixes = (*LOSSLESS_SUFFIXES, *JPEG_SUFFIXES)
    check_outputs([("-o", args.output, suffixes)], inputs=[args.image], force=args.force)
    x = read_input(args.image, max_pixels_of(args))
    op = create_operator(args.op, tuple(x.shape[1:]), params)
    coded = isinstance(op, opkit.EncodeDecodeOperator)
    if args.sigma_y > 0 and coded:
        fail(f"--sigma-y does not apply to --op {args.op}: its measurement is a noiseless code")
    if out.suffix.lower() in JPEG_SUFFIXES:
        if not _is_jpeg(op):
            fail(
                f"-o {out}: a JPEG file would add JPEG compression to the {args.op} result; "
                f"write a lossless format ({', '.join(LOSSLESS_SUFFIXES)}) or use --op jpeg"
            )
        write_atomic(out, jpeg_bytes(x, op))
        print(f"wrote {out} (a real JPEG with the operator's tables, {op.sampling})")
        return EXIT_OK
    y = op(x)
    if coded:
        image = op.decode(y)  # a viewable image: Decode(Encode(x)), never the raw codes
    elif isinstance(y, torch.Tensor) and y.ndim == 4 and y.shape[1] in (1, 3):
        if args.sigma_y > 0:
            g = torch.Generator().manual_seed(args.seed)
            y = y + args.sigma_y * torch.randn(y.shape, generator=g, dtype=y.dtype)
        image = y
    else:
        if args.sigma_y > 0:
            fail(f"--sigma-y applies to image-valued measurements, not {args.op}")
        image = op.pinv(y)
    save_image(image, out)
    print(f"wrote {out} ({args.op}, {tuple(image.shape[1:])})")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# opkit restore
# ----------------------------------------------------------------------------------------------
def _measurement(args: argparse.Namespace, params: dict[str, Any]) -> tuple[Any, Any, torch.Tensor]:
    """Operator, measurement and a displayable degraded image for ``restore``."""
    if not params and not _is_sample(args.image):
        # a file format plugin may own the file (the jpeg plugin reads .jpg files with their tables)
        try:
            got = opkit.read_measurement(args.image, max_pixels_of(args))
        except ImageTooLargeError as exc:
            fail(f"{exc}; raise the limit with --max-pixels")
        except (FileNotFoundError, ValueError) as exc:
            fail(exc)
        if got is not None and got[0].name == args.op:
            op, y = got
            return op, y, read_input(args.image, max_pixels_of(args))  # the file as a viewer shows it
    img = read_input(args.image, max_pixels_of(args))
    shape = infer_image_shape(args.op, tuple(img.shape[1:]), params)
    created = create_operator(args.op, shape, params)
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


#: Luma weights (ITU-R 601, as JPEG and Pillow use them) that turn RGB back into grey.
LUMA = (0.299, 0.587, 0.114)


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` to ``(B, 1, H, W)`` with the :data:`LUMA` weights."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def lift_to_rgb(name: str, params: dict[str, Any], op: Any, y: Any) -> tuple[Any, Any]:
    """The three-channel problem whose solutions, in grey (:func:`to_grey`), solve ``(op, y)``.

    A greyscale image ``x`` repeated to three channels has the measurement ``y`` repeated (for
    operators that treat the channels alike, checked on a random image), and for JPEG the luma
    coefficients of ``y`` with zero chroma (a grey RGB image has ``Cb = Cr = 128`` exactly).
    Every restoration of the lifted problem, converted to grey, fits ``y`` again: the luma of
    images that fit a per-channel measurement is a convex combination of them.

    Parameters
    ----------
    name : str
        Registered name of ``op``.
    params : dict
        Its parameters.
    op : opkit.Operator
        The operator for ``(1, H, W)`` images.
    y : measurement
        Its measurement.

    Returns
    -------
    (opkit.Operator, measurement)
        The operator for ``(3, H, W)`` images and its measurement.
    """
    import attrs

    from opkit_plugins.jpeg import JPEG, JpegCoefficients

    _, h, w = op.shape
    if isinstance(op, JPEG) and isinstance(y, JpegCoefficients):
        luma = op.tables[0].flatten().tolist()
        op3 = create_operator(name, (3, h, w), {"tables": [luma, luma], "subsampling": "4:4:4"})
        lum = y.components[0]
        y3 = attrs.evolve(
            y,
            components=(lum, torch.zeros_like(lum), torch.zeros_like(lum)),
            tables=op3.tables.clone(),
            sampling="4:4:4",
        )
        return op3, y3
    op3 = create_operator(name, (3, h, w), params)
    probe = torch.rand((1, 1, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    try:
        lifted = op3(probe.expand(1, 3, h, w))
        direct = op(probe)
        same = isinstance(direct, torch.Tensor) and torch.allclose(
            lifted.double(), direct.double().expand(1, 3, *direct.shape[2:]), atol=1e-9
        )
    except (ValueError, TypeError, RuntimeError):
        same = False
    if not same:
        fail(
            f"cannot restore a greyscale image with a colour model for {name} with these parameters "
            "(the operator treats the three channels differently)"
        )
    return op3, y.expand(y.shape[0], 3, *y.shape[2:]).contiguous()


def _model_channels(model: Any) -> int | None:
    """Image channels a loaded prior or DriftRec model works on, when it says."""
    for attr, key in (("net", "in_channels"), ("unet", "out_channels")):
        cfg = getattr(getattr(model, attr, None), "config", None)
        value = getattr(cfg, key, None)
        if isinstance(value, int):
            return value
    return None


def solver_entry(name: str) -> opkit.SolverEntry:
    """The registry entry of the solver ``name``, or a one-line error listing the solvers."""
    try:
        return opkit.default_registry().solver_entry(name)
    except KeyError as exc:
        fail(exc.args[0])


def solver_name(text: str) -> str:
    """argparse type of ``--solver``: a registered solver name (see ``opkit solvers``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", opkit.OpkitPluginWarning)  # `opkit solvers` lists them
        names = opkit.default_registry().solvers_available()
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown solver {text!r}; available: {', '.join(names)}")
    return text


def check_solver_flags(args: argparse.Namespace) -> None:
    """Refuse ``--sigma-y`` for a solver without the option, before any work."""
    if args.sigma_y > 0 and "sigma_y" not in solver_entry(args.solver).options():
        fail(f"--sigma-y does not apply to --solver {args.solver}")


class Restorer:
    """The chosen solver with its model, loaded once: ``restorer(op, y, y_image, params)``.

    Any registered solver (``opkit solvers``) is called through the one solver contract,
    ``solver(op, y, model, steps=..., num_samples=..., generator=..., progress=...)``, with the
    options it declares (``sigma_y``, ``eta``, ...) from the flags. The model is loaded by the
    kind the solver declares: a diffusion prior (:func:`load_model`), a DriftRec score model, or
    none. A greyscale problem and a three-channel model are bridged by :func:`lift_to_rgb`.

    Parameters
    ----------
    args : argparse.Namespace
        ``solver``, ``model``, ``steps``, ``samples`` and ``sigma_y``.
    generator : torch.Generator
        Randomness of the solver.
    progress : bool
        Show the solver's progress bar.
    """

    def __init__(self, args: argparse.Namespace, generator: torch.Generator, *, progress: bool) -> None:
        import solvers

        self.args, self.generator, self.progress = args, generator, progress
        self.entry = solver_entry(args.solver)
        self.options = self.entry.options()
        label = getattr(args, "class_label", None)
        self.model_kwargs = {"class_labels": torch.tensor([label])} if label is not None else None
        if self.entry.model != "prior" and (label is not None or args.model_config or args.download):
            fail(
                "--model-config, --download and --class-label apply to --solver ddrm and the other "
                f"solvers with a diffusion prior, not {args.solver}"
            )
        try:
            if self.entry.model == "prior":
                self.model: Any = load_model(args)
            elif self.entry.model == "driftrec":
                self.model = solvers.load_driftrec(args.model)
            else:
                self.model = None
        except (FileNotFoundError, ValueError, NotImplementedError, ImportError) as exc:
            fail(exc)
        except Exception as exc:  # a damaged model folder raises anything
            fail(f"cannot load the model {args.model}: {one_line(exc)}")
        self.channels = _model_channels(self.model)

    def keywords(self, op: Any) -> dict[str, Any]:
        """The solver's keywords: the model's tuned DDRM settings (``ddrm`` only), then the flags."""
        args, opts = self.args, self.options
        kw: dict[str, Any] = ddrm_settings(args, self.model) if args.solver == "ddrm" else {}
        if args.steps is not None:
            kw["steps"] = args.steps
        if args.samples is not None:
            kw["num_samples"] = args.samples
        for key, flag in (("eta", "--eta"), ("eta_b", "--eta-b"), ("t_start", "--t-start")):
            value = getattr(args, key, None)
            if value is not None and key not in opts:
                fail(f"{flag} does not apply to --solver {args.solver}")
            if value is not None:
                kw[key] = value
        if "sigma_y" in opts:
            kw["sigma_y"] = args.sigma_y
        elif args.sigma_y > 0:
            fail(f"--sigma-y does not apply to --solver {args.solver}")
        if self.model_kwargs is not None and "model_kwargs" in opts:
            kw["model_kwargs"] = self.model_kwargs
        return kw

    def __call__(
        self, op: Any, y: Any, y_image: torch.Tensor | None = None, params: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """Restore ``y`` (see the class docstring); errors end the command with one line."""
        from opkit.solver import accepts

        args, entry = self.args, self.entry
        kind = opkit.operator_kind(op)
        if not accepts(kind, entry.accepts):
            fail(
                f"--solver {entry.name} does not take --op {args.op} ({kind or type(op).__name__}); "
                f"it takes {', '.join(entry.accepts)} operators"
            )
        settings = self.keywords(op)
        check_steps(args, op, self.model, settings)
        grey = op.shape[0] == 1 and self.channels == 3
        if self.channels is not None and not grey and self.channels != op.shape[0]:
            fail(f"the model works on {self.channels}-channel images; this one has {op.shape[0]}")
        try:
            if grey:
                op, y = lift_to_rgb(args.op, params or {}, op, y)
            out = entry.solver(
                op, y, self.model, **settings, generator=self.generator, progress=self.progress
            )
        except (ValueError, NotImplementedError) as exc:
            fail(exc)
        except RuntimeError as exc:
            fail(f"{args.solver} failed: {one_line(exc)}")
        if not isinstance(out, torch.Tensor):
            fail(f"--solver {args.solver} returned {type(out).__name__}, not an image tensor")
        return to_grey(out) if grey else out


def check_steps(
    args: argparse.Namespace, op: Any, model: Any = None, settings: dict[str, Any] | None = None
) -> None:
    """Refuse DDRM settings (steps, start, ``--sigma-y``) the solver would reject, in CLI terms.

    Parameters
    ----------
    args : argparse.Namespace
        ``solver``, ``op``, ``steps`` and ``sigma_y``.
    op : opkit.Operator
        The operator.
    model : prior, optional
        The loaded DDRM prior (its schedule length bounds the steps).
    settings : dict, optional
        The DDRM keywords in effect (:func:`ddrm_settings`: the model's tuned ones and the flags).
    """
    if args.solver != "ddrm":
        return
    from solvers._ddrm import DDRM_DEFAULTS

    kw = settings or {}
    coded = isinstance(op, opkit.EncodeDecodeOperator)
    if coded and args.sigma_y > 0:
        fail(f"--sigma-y does not apply to --op {args.op}: its measurement is a noiseless code")
    steps = kw.get("steps")
    if steps is None:
        return
    t_start = kw.get("t_start", DDRM_DEFAULTS["encode_decode" if coded else "svd"][2])
    if t_start is not None and steps > t_start + 1:
        fail(
            f"--steps {steps} is too many for --op {args.op}: DDRM starts at timestep {t_start} "
            f"(--t-start) and goes down to 0, so at most {t_start + 1} steps"
        )
    total = getattr(getattr(model, "alphas_cumprod", None), "numel", lambda: None)()
    if total is not None and steps > total:
        fail(f"--steps {steps} is more than the model's {total} timesteps")


def _protected_model(args: argparse.Namespace) -> list[Path]:
    return [] if args.model == "default" else [Path(args.model)]


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a degraded image with any registered solver."""
    params = parse_params(args.param)
    check_params(args.op, params)
    if args.truth and not args.compare:
        fail("--truth is only used with --compare")
    check_solver_flags(args)
    image_out = image_suffixes()
    check_outputs(
        [("-o", args.output, image_out), ("--compare", args.compare, image_out)],
        inputs=[args.image, args.truth],
        protected=_protected_model(args),
        force=args.force,
    )
    truth = read_input(args.truth, max_pixels_of(args)) if args.truth else None
    op, y, shown = _measurement(args, params)
    check_steps(args, op)
    g = torch.Generator().manual_seed(args.seed)
    restorer = Restorer(args, g, progress=not args.quiet)
    x = restorer(op, y, shown, params)
    out = Path(args.output)
    save_image(x, out)
    print(f"wrote {out} ({args.solver}, {args.op}, {tuple(x.shape[1:])})")
    if args.compare:
        panels = [shown.to(x.dtype), x]
        if truth is not None:
            panels.append(truth.to(x.dtype))
        save_image(_side_by_side(panels), Path(args.compare))
        print(f"wrote {args.compare} (input | restoration{' | truth' if truth is not None else ''})")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# opkit eval
# ----------------------------------------------------------------------------------------------
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
    check_solver_flags(args)
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


# ----------------------------------------------------------------------------------------------
# opkit train
# ----------------------------------------------------------------------------------------------
def _training_images(folder: str | None, crop: int, max_pixels: int | None) -> list[torch.Tensor]:
    """Images of a folder, or scikit-image's training photographs when ``folder`` is ``builtin``."""
    from solvers.data import TRAIN_PHOTOS, photo

    if folder in (None, "builtin"):
        where = "the built-in photographs"
        images = [photo(name) for name in TRAIN_PHOTOS]
    else:
        root = Path(folder)
        if not root.is_dir():
            fail(f"{root} is not a folder" if root.exists() else f"no such folder: {root}")
        where = str(root)
        files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        images = [read_input(str(p), max_pixels, mode="RGB") for p in files]
    images = [im for im in images if min(im.shape[-2:]) >= crop]
    if not images:
        fail(f"no training images of at least {crop}x{crop} pixels in {where} (--crop {crop})")
    return images


#: Files whose presence marks a folder as a resumable run of ``opkit train prior|driftrec``.
TRAINING_RUN_MARKERS = {
    "prior": ("training_state.json", "unet"),
    "driftrec": ("training_state.json", "driftrec.json"),
}


def training_run_kind(folder: Path) -> str | None:
    """``"prior"`` or ``"driftrec"`` when ``folder`` holds a resumable training run, else ``None``.

    Parameters
    ----------
    folder : pathlib.Path
        A folder.

    Returns
    -------
    str or None
        The kind of run.
    """
    for kind, names in TRAINING_RUN_MARKERS.items():
        if all((folder / n).exists() for n in names):
            return kind
    return None


def check_training_output(out: Path, what: str) -> None:
    """Refuse a ``train -o`` folder that training would damage (before any work).

    Accepted: a new folder in an existing, writable folder; an empty folder; a resumable run of
    the same kind (training continues it). Refused: the bundled models, a file, any other
    existing folder (a model folder is never replaced), a run of the other kind.

    Parameters
    ----------
    out : pathlib.Path
        The ``-o`` folder.
    what : str
        ``"prior"`` or ``"driftrec"``.
    """
    for folder in bundled_weights():
        if out.resolve().is_relative_to(folder.resolve()):
            fail(f"-o {out}: refusing to write into the bundled models ({folder})")
    if out.exists():
        if not out.is_dir():
            fail(f"-o {out} exists and is not a folder")
        kind = training_run_kind(out)
        if kind is not None and kind != what:
            fail(f"-o {out} holds an `opkit train {kind}` run, not a `train {what}` one")
        if kind is None and any(out.iterdir()):
            fail(
                f"-o {out} exists and is not a resumable `opkit train {what}` run; training never "
                "replaces a model folder: choose a new folder"
            )
    elif not out.parent.is_dir():
        fail(f"-o {out}: the folder {out.parent} does not exist")
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.probe"):
            pass
    except OSError as exc:
        fail(f"-o {out}: cannot write into {out.parent}: {exc.strerror or one_line(exc)}")


def _check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        fail(f"--device {device}: {exc}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        fail(f"--device {device}: MPS is not available on this machine")


def cmd_train(args: argparse.Namespace) -> int:
    """Train a DDRM prior or a DriftRec model (resumes from the output directory)."""
    out = Path(args.output)
    check_training_output(out, args.what)
    _check_device(args.device)
    params = parse_params(args.param)
    if args.what == "prior" and (params or args.qualities):
        fail("--param and --qualities apply to `opkit train driftrec` only")
    if args.what == "driftrec":
        if args.qualities and "quality" not in operator_entry(args.op).parameters():
            fail(f"--qualities draws JPEG qualities; {args.op} has no quality parameter")
        q0 = {"quality": args.qualities[0]} if args.qualities else {}
        create_operator(
            args.op, (3, args.crop, args.crop), {**params, **q0}
        )  # fails fast, names the parameter
    images = _training_images(args.data, args.crop, max_pixels_of(args))
    try:
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
                f"prior: {res['step']} steps, {res['parameters'] / 1e6:.2f}M parameters, "
                f"{res['seconds']:.0f} s"
            )
            return EXIT_OK
        from solvers.training import train_driftrec

        quality_range = (args.qualities or (1, 100)) if args.op == "jpeg" else args.qualities
        result = train_driftrec(
            [im[0] for im in images],
            args.op,
            size=args.preset or "tiny",
            steps=args.steps,
            batch_size=args.batch,
            crop_size=args.crop,
            lr=args.lr or 1e-4,
            seed=args.seed,
            device=args.device,
            quality_range=quality_range,
            operator_params=params or None,
            checkpoint_dir=args.output,
            checkpoint_every=250,
            resume=True,
        )
    except ValueError as exc:
        fail(exc)
    except RuntimeError as exc:
        fail(f"training failed: {one_line(exc)}")
    print(f"driftrec: {result.step} steps, last loss {result.losses[-1]:.4f}")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# parser and main
# ----------------------------------------------------------------------------------------------
def _add_max_pixels(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--max-pixels",
        type=nonnegative_int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse larger input images, before decoding (default {DEFAULT_MAX_PIXELS}; 0: no limit)",
    )


def _ddrm_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--eta", type=unit_float, default=None, help="DDRM η (default: the model's tuned setting)")
    s.add_argument("--eta-b", type=unit_float, default=None, help="DDRM η_b (default: the model's setting)")
    s.add_argument("--t-start", type=nonnegative_int, default=None, help="DDRM first timestep")


MODEL_HELP = (
    "DDRM prior: 'default', a diffusers or converted directory, an ADM checkpoint (.pt/.safetensors), "
    "a preset (imagenet256-uncond, imagenet256-cond, ffhq256, lsun-bedroom, ddpm-celebahq-256, ...) "
    "or a Hugging Face hub id"
)


SOLVER_HELP = "a registered solver (see `opkit solvers`): ddrm, pigdm, driftrec or a plugin's (default ddrm)"


def add_model_arguments(s: argparse.ArgumentParser) -> None:
    """``--model-config``, ``--download``, ``--device`` and ``--dtype`` (see :func:`load_model`)."""
    s.add_argument("--model-config", help="ADM checkpoint settings: a JSON file or a preset name")
    s.add_argument("--download", action="store_true", help="fetch a preset's file or a hub model if missing")
    s.add_argument("--device", default=None, help="device of the network (default cpu)")
    s.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="dtype of the network")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    p = _Parser(prog="opkit", description="Degrade and restore images with opkit.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("ops", help="list registered operators and their parameters")
    s.set_defaults(func=cmd_ops)
    s = sub.add_parser("solvers", help="list registered solvers, the operators and models they take")
    s.set_defaults(func=cmd_solvers)
    s = sub.add_parser("degrade", help="apply an operator to an image")
    s.add_argument("image", help="input image path, or sample:astronaut|chelsea|coffee|camera|rocket")
    s.add_argument("--op", required=True, help="operator name (see `opkit ops`)")
    s.add_argument("--param", action="append", metavar="K=V", help="operator parameter (repeatable)")
    s.add_argument("--sigma-y", type=nonnegative_float, default=0.0, help="Gaussian noise std in [0,1] units")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise")
    s.add_argument(
        "-o", "--output", required=True, help="output image path (.png, .tif, .bmp; .jpg for jpeg)"
    )
    s.add_argument("--force", action="store_true", help="overwrite an existing output")
    _add_max_pixels(s)
    s.set_defaults(func=cmd_degrade)
    s = sub.add_parser("restore", help="restore a degraded image with any registered solver")
    s.add_argument("image", help="degraded image (for --op jpeg, a .jpg file is read with its own tables)")
    s.add_argument("--op", required=True, help="the operator that degraded it")
    s.add_argument("--param", action="append", metavar="K=V", help="operator parameter (repeatable)")
    s.add_argument("--solver", type=solver_name, default="ddrm", help=SOLVER_HELP)
    s.add_argument("--model", default="default", help=MODEL_HELP)
    add_model_arguments(s)
    s.add_argument("--class-label", type=int, help="class of a class-conditional prior (DDRM-CC)")
    s.add_argument("--steps", type=positive_int, default=None, help="solver steps (default: the model's)")
    s.add_argument(
        "--samples", type=positive_int, default=None, help="samples averaged (default: the model's)"
    )
    _ddrm_flags(s)
    s.add_argument(
        "--sigma-y", type=nonnegative_float, default=0.0, help="measurement noise std (DDRM, [0,1] units)"
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--truth", help="ground-truth image for --compare")
    s.add_argument("--compare", help="also write input | restoration [| truth] side by side here")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--force", action="store_true", help="overwrite existing outputs")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_max_pixels(s)
    s.set_defaults(func=cmd_restore)
    s = sub.add_parser("eval", help="degrade and restore a folder of images; print PSNR/SSIM/PSNR-B/BEF")
    s.add_argument("folder", help="folder of ground-truth images")
    s.add_argument("--op", required=True)
    s.add_argument("--param", action="append", metavar="K=V")
    s.add_argument(
        "--qualities", type=quality_list, help="comma-separated JPEG qualities to sweep, e.g. 5,10,30"
    )
    s.add_argument("--solver", type=solver_name, default="ddrm", help=SOLVER_HELP)
    s.add_argument("--model", default="default", help=MODEL_HELP)
    add_model_arguments(s)
    s.add_argument("--steps", type=positive_int, default=None)
    s.add_argument("--samples", type=positive_int, default=None)
    _ddrm_flags(s)
    s.add_argument("--sigma-y", type=nonnegative_float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--multiple", type=positive_int, default=16, help="crop images to a multiple of this size")
    s.add_argument("--csv", help="write every score here")
    s.add_argument("--plot", help="rate–distortion plot (PNG, PDF, SVG) for a JPEG quality sweep")
    s.add_argument("--force", action="store_true", help="overwrite existing --csv/--plot files")
    _add_max_pixels(s)
    s.set_defaults(func=cmd_eval)
    s = sub.add_parser("train", help="train a DDRM prior or a DriftRec model (resumable)")
    s.add_argument("what", choices=("prior", "driftrec"))
    s.add_argument(
        "data", nargs="?", default="builtin", help="image folder, or 'builtin' (scikit-image photos)"
    )
    s.add_argument("-o", "--output", required=True, help="model directory (a run there is resumed)")
    s.add_argument("--op", default="jpeg", help="DriftRec: the corruption operator")
    s.add_argument("--param", action="append", metavar="K=V", help="DriftRec: operator parameter")
    s.add_argument(
        "--qualities", type=quality_range, help="DriftRec + jpeg: quality range drawn per image, e.g. 1-100"
    )
    s.add_argument("--preset", help="network size (prior: tiny/small/base; DriftRec: tiny/small/paper)")
    s.add_argument("--steps", type=positive_int, default=1000)
    s.add_argument("--batch", type=positive_int, default=16)
    s.add_argument("--crop", type=positive_int, default=64)
    s.add_argument("--lr", type=positive_float, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="cpu")
    s.add_argument(
        "--max-seconds", type=positive_float, default=None, help="prior: stop (and save) after this long"
    )
    _add_max_pixels(s)
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

    Errors end the command with one ``opkit: ...`` line on stderr (``SystemExit`` with status
    :data:`EXIT_ERROR`, or :data:`EXIT_USAGE` for a bad command line); Ctrl-C prints
    ``opkit: interrupted`` and returns :data:`EXIT_INTERRUPTED` after the partial files are
    removed. An unexpected exception is reported on one line too (``OPKIT_TRACEBACK=1`` shows
    the traceback instead).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    try:
        args = build_parser().parse_args(argv)
        with one_line_warnings():
            return int(args.func(args))
    except KeyboardInterrupt:
        print("opkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"opkit: {one_line(exc.strerror or exc)}{where}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # the promise is one line, even for a bug
        if os.environ.get("OPKIT_TRACEBACK"):
            raise
        print(
            f"opkit: internal error: {type(exc).__name__}: {one_line(exc)} "
            "(please report it; OPKIT_TRACEBACK=1 shows where)",
            file=sys.stderr,
        )
        return EXIT_ERROR
