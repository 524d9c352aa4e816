"""Argument parsing of the ``opkit`` command line: argument types, ``--param`` values, and the
option groups (argparse parent parsers) that several commands share.
"""

from __future__ import annotations

import argparse
import ast
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch

from opkit.images import DEFAULT_MAX_PIXELS
from opkit.messages import one_line
from opkit.params import check_non_negative, check_positive, check_positive_int, check_unit
from opkit_cli.entries import quiet_registry
from opkit_cli.errors import EXIT_USAGE, fail


class Parser(argparse.ArgumentParser):
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


def _checked(name: str, kind: type, check: Callable[[str, Any], Any], what: str) -> Callable[[str], Any]:
    """The argparse type ``name``: ``text`` parsed as ``kind``, then the :mod:`opkit.params` ``check``.

    The rule is the one the library applies to the same value (its message, without the name,
    becomes the command line's: ``argument --steps: must be a positive integer, got '0'``).
    """

    def parse(text: str) -> Any:
        value = _number(text, kind)
        try:
            check("value", value)
        except ValueError as exc:
            rule = str(exc).removeprefix("value ").rsplit(", got ", 1)[0]
            raise argparse.ArgumentTypeError(f"{rule}, got {text!r}") from None
        return value

    parse.__name__ = parse.__qualname__ = name
    parse.__doc__ = f"argparse type: {what}."
    return parse


positive_int = _checked("positive_int", int, check_positive_int, "an integer ``>= 1``")
nonnegative_int = _checked("nonnegative_int", int, check_non_negative, "an integer ``>= 0``")
nonnegative_float = _checked("nonnegative_float", float, check_non_negative, "a finite number ``>= 0``")
positive_float = _checked("positive_float", float, check_positive, "a finite number ``> 0``")
unit_float = _checked("unit_float", float, check_unit, "a number in ``[0, 1]``")


def class_label(text: str) -> int:
    """argparse type of ``--class-label``: a class index, an integer ``>= 0`` that fits int64."""
    value = _number(text, int)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected a class index (an integer >= 0), got {text!r}")
    return int(value)


def _quality(text: str) -> int:
    try:
        q = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"JPEG quality {text.strip()!r} is not an integer") from None
    if not 1 <= q <= 100:
        raise argparse.ArgumentTypeError(f"JPEG quality {q} is not in 1..100")
    return q


def solver_name(text: str) -> str:
    """argparse type of ``--solver``: a registered solver name (see ``opkit solvers``)."""
    names = quiet_registry().solver_names()  # `opkit solvers` lists skipped plugins
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown solver {text!r}; available: {', '.join(names)}")
    return text


def solver_list(text: str) -> list[str]:
    """argparse type of ``opkit eval --solver``: one registered solver name or several, comma-separated."""
    names = [solver_name(part.strip()) for part in text.split(",")]
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a solver is named twice in {text!r}")
    return names


def task_list(text: str) -> list[str]:
    """argparse type of ``--task``: comma-separated preset names (:mod:`opkit_cli.tasks`), or ``all``."""
    from opkit_cli.tasks import PRESETS

    if text.strip() == "all":
        return list(PRESETS)
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if name not in PRESETS:
            raise argparse.ArgumentTypeError(f"unknown task {name!r}; available: {', '.join(PRESETS)}, all")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a task is named twice in {text!r}")
    return names


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


def parse_params(items: Sequence[str] | None, flag: str = "--param") -> dict[str, Any]:
    """Parse ``k=v`` pairs; values are Python literals where they parse, else strings.

    Parameters
    ----------
    items : sequence of str
        E.g. ``["factor=4", "kernel=gaussian", "sigma=2.0"]``.
    flag : str
        The option they came from, for the message.

    Returns
    -------
    dict
        ``{"factor": 4, "kernel": "gaussian", "sigma": 2.0}``.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"{flag} expects key=value, got {item!r}")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = raw
        out[key.strip()] = value
    return out


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_max_pixels(s: argparse.ArgumentParser) -> None:
    """``--max-pixels``: refuse larger input images before decoding them."""
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


def add_model_arguments(s: argparse.ArgumentParser, *, auto_device: bool = False) -> None:
    """``--model-config``, ``--download``, ``--device`` and ``--dtype`` (see :func:`load_model`).

    With ``auto_device`` the device defaults to ``auto``: this rank's GPU when there is one,
    else the CPU (:func:`opkit_cli.folders.resolve_device`).
    """
    s.add_argument("--model-config", help="ADM checkpoint settings: a JSON file or a preset name")
    s.add_argument("--download", action="store_true", help="fetch a preset's file or a hub model if missing")
    if auto_device:
        s.add_argument(
            "--device",
            default="auto",
            metavar="auto|cpu|cuda[:i]",
            help="where the solver and the network run (default auto: the GPU of this rank if any, else cpu)",
        )
    else:
        s.add_argument("--device", default=None, help="device of the network (default cpu)")
    s.add_argument(
        "--dtype", choices=tuple(DTYPES), default=None, help="dtype of the network (default float32)"
    )


def solve_parent(*, table: bool = False) -> Parser:
    """Options ``restore`` and ``eval`` share, as an argparse parent parser.

    The operator (``--op``, ``--param``), the solver and its model (``--solver``, ``--model`` and
    :func:`add_model_arguments`), the solver's settings (``--steps``, ``--samples``, ``--eta``,
    ``--eta-b``, ``--t-start``, ``--sigma-y``, ``--solver-option``, ``--seed``) and ``--max-pixels``.

    With ``table=True`` (``opkit eval``): ``--op`` or ``--task`` (named task presets,
    :mod:`opkit_cli.tasks`), and ``--solver`` takes several names, comma-separated (a list).

    Returns
    -------
    Parser
        A parser without ``--help``, for ``add_parser(..., parents=[...])``.
    """
    s = Parser(add_help=False)
    s.add_argument("--op", required=not table, help="the operator (see `opkit ops`)")
    if table:
        s.add_argument(
            "--task",
            type=task_list,
            help="named tasks instead of --op, comma-separated, or 'all': "
            "sr4, gauss_deblur, motion_deblur, box_inpaint, random_inpaint, colorize, jpeg10, cs25 "
            "(the papers' settings); with several --solver names: the comparison table",
        )
    s.add_argument("--param", action="append", metavar="K=V", help="operator parameter (repeatable)")
    if table:
        s.add_argument(
            "--solver",
            type=solver_list,
            default=["ddrm"],
            help=SOLVER_HELP.removesuffix(")")
            + "); with --task several, comma-separated: ddrm,pigdm,diffpir,dps",
        )
    else:
        s.add_argument("--solver", type=solver_name, default="ddrm", help=SOLVER_HELP)
    s.add_argument("--model", default="default", help=MODEL_HELP)
    add_model_arguments(s, auto_device=True)
    s.add_argument("--steps", type=positive_int, default=None, help="solver steps (default: the model's)")
    s.add_argument(
        "--samples", type=positive_int, default=None, help="samples averaged (default: the model's)"
    )
    _ddrm_flags(s)
    s.add_argument(
        "--sigma-y", type=nonnegative_float, default=0.0, help="measurement noise std (DDRM, [0,1] units)"
    )
    s.add_argument(
        "--solver-option",
        action="append",
        metavar="K=V",
        help="any other solver keyword (repeatable), e.g. lam=7 or zeta=0.5; see `opkit solvers`"
        + ("; with --task, NAME.K=V applies to the solver NAME only, e.g. dps.steps=100" if table else ""),
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the solver's randomness")
    add_max_pixels(s)
    return s
