"""Entry point of the ``opkit`` command line."""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import opkit
from opkit.io import load_image, save_image

SAMPLES = ("astronaut", "chelsea", "coffee", "camera")


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
        A path, or ``sample:astronaut`` (also chelsea, coffee, camera).

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    p = argparse.ArgumentParser(prog="opkit", description="Degrade and restore images with opkit.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("ops", help="list registered operators and their parameters")
    s.set_defaults(func=cmd_ops)
    s = sub.add_parser("degrade", help="apply an operator to an image")
    s.add_argument("image", help="input image path, or sample:astronaut|chelsea|coffee|camera")
    s.add_argument("--op", required=True, help="operator name (see `opkit ops`)")
    s.add_argument("--param", action="append", metavar="K=V", help="operator parameter (repeatable)")
    s.add_argument("--sigma-y", type=float, default=0.0, help="Gaussian noise std in [0,1] units")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise")
    s.add_argument("-o", "--output", required=True, help="output image path")
    s.add_argument("--force", action="store_true", help="overwrite an existing output")
    s.set_defaults(func=cmd_degrade)
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
