"""Operators of the ``opkit`` command line: registry look-ups, parameter checks, shape inference,
and the ``opkit ops`` and ``opkit degrade`` commands.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import opkit
from opkit.files import write_atomic
from opkit.images import save_image
from opkit.messages import one_line
from opkit_cli.io import LOSSLESS_SUFFIXES, check_outputs, read_input
from opkit_cli.parsing import EXIT_OK, fail, max_pixels_of, parse_params


def _entry_or_fail(lookup: Callable[[str], Any], name: str) -> Any:
    try:
        return lookup(name)
    except KeyError as exc:  # the registry's message lists the names
        fail(exc.args[0])


def operator_entry(name: str) -> opkit.OperatorEntry:
    """The registry entry of ``name``, or a one-line error listing the operators."""
    return _entry_or_fail(opkit.default_registry().operator_entry, name)  # type: ignore[no-any-return]


def solver_entry(name: str) -> opkit.SolverEntry:
    """The registry entry of the solver ``name``, or a one-line error listing the solvers."""
    return _entry_or_fail(opkit.default_registry().solver_entry, name)  # type: ignore[no-any-return]


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


def quiet_registry() -> opkit.Registry:
    """The default registry, loaded without plugin warnings (the listings name skipped plugins)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", opkit.OpkitPluginWarning)
        return opkit.default_registry()


def _keywords(defaults: dict[str, Any]) -> str:
    """``name`` or ``name=default`` for each keyword, comma-separated, or ``(none)``."""
    text = ", ".join(
        name if default is inspect.Parameter.empty else f"{name}={default!r}"
        for name, default in defaults.items()
    )
    return text or "(none)"


def _print_skipped(reg: opkit.Registry) -> None:
    for name, why in reg.skipped.items():
        print(f"(skipped plugin {name}: {one_line(why)})", file=sys.stderr)


def cmd_ops(args: argparse.Namespace) -> int:
    """List the registered operators with their parameters and plugins."""
    reg = quiet_registry()
    for entry in reg.operator_entries():
        print(f"{entry.name:<14} {entry.description}")
        print(f"{'':<14} parameters: {_keywords(entry.parameters())}   [plugin: {entry.plugin}]")
    _print_skipped(reg)
    return EXIT_OK


def cmd_solvers(args: argparse.Namespace) -> int:
    """List the registered solvers: operator kinds, model, options and plugin."""
    reg = quiet_registry()
    for entry in reg.solver_entries():
        print(f"{entry.name:<14} {entry.description}")
        kinds = ", ".join(entry.accepts)
        print(f"{'':<14} operators: {kinds}   model: {entry.model}   [plugin: {entry.plugin}]")
        print(f"{'':<14} options: {_keywords(entry.options())}")
    _print_skipped(reg)
    return EXIT_OK


def cmd_degrade(args: argparse.Namespace) -> int:
    """Apply an operator (and optional Gaussian noise) to an image and write the result."""
    params = parse_params(args.param)
    check_params(args.op, params)
    out = Path(args.output)
    suffix = out.suffix.lower()
    # any suffix may name a format plugin's file (checked once the operator exists)
    check_outputs([("-o", args.output, None)], inputs=[args.image], force=args.force)
    x = read_input(args.image, max_pixels_of(args))
    op = create_operator(args.op, tuple(x.shape[1:]), params)
    coded = isinstance(op, opkit.EncodeDecodeOperator)
    if args.sigma_y > 0 and coded:
        fail(f"--sigma-y does not apply to --op {args.op}: its measurement is a noiseless code")
    if suffix not in LOSSLESS_SUFFIXES:
        # a file format plugin writes the measurement itself (the jpeg plugin: a real .jpg file)
        written = opkit.write_measurement(op, x, suffix)
        if written is None:
            fail(
                f"-o {out}: no file format plugin writes {suffix or 'suffix-less'} files for --op "
                f"{args.op} (a lossy image file would degrade the result again); write a lossless "
                f"format ({', '.join(LOSSLESS_SUFFIXES)})"
            )
        data = written[1]
        write_atomic(out, data)
        bpp = 8 * len(data) / (x.shape[-1] * x.shape[-2])
        size = f"{len(data)} bytes, {bpp:.2f} bits/pixel"
        print(f"wrote {out} (the {args.op} measurement as a {suffix} file: {size})")
        return EXIT_OK
    y = op(x)
    if coded:
        image = op.decode(y)  # a viewable image: Decode(Encode(x)), never the raw codes
    elif isinstance(y, torch.Tensor) and y.ndim == 4 and y.shape[1] in (1, 3):
        if args.sigma_y > 0:
            g = torch.Generator().manual_seed(args.seed)
            from solvers.common import randn

            y = y + args.sigma_y * randn(y.shape, y, g)
        image = y
    else:
        if args.sigma_y > 0:
            fail(f"--sigma-y applies to image-valued measurements, not {args.op}")
        image = op.pinv(y)
    save_image(image, out)
    print(f"wrote {out} ({args.op}, {tuple(image.shape[1:])})")
    return EXIT_OK
