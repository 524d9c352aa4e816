"""Entry point of the ``opkit`` command line.

Guarantees (see the command-line page of the documentation): every error is one line starting
with ``opkit:``; inputs are never overwritten, existing outputs only with ``--force``, model
folders never; every file is written atomically (a temporary file beside the target, renamed
onto it when complete); outputs are checked before any work starts. Exit codes:
:data:`EXIT_OK`, :data:`EXIT_ERROR`, :data:`EXIT_USAGE` and :data:`EXIT_INTERRUPTED`.

The commands live in their own modules (:mod:`opkit_cli.listing`, :mod:`opkit_cli.degrade`,
:mod:`opkit_cli.restore` and :mod:`opkit_cli.many`, :mod:`opkit_cli.eval`, :mod:`opkit_cli.train`,
:mod:`opkit_cli.models`); every solver call is assembled by :class:`opkit_cli.runner.Runner`;
errors and exit codes sit in the leaf :mod:`opkit_cli.errors`. This module composes the commands
into one parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from opkit.messages import one_line
from opkit_cli.degrade import cmd_degrade
from opkit_cli.errors import EXIT_ERROR, EXIT_INTERRUPTED, one_line_warnings
from opkit_cli.eval import cmd_eval
from opkit_cli.folders import shard_spec
from opkit_cli.listing import cmd_ops, cmd_solvers
from opkit_cli.models import cmd_convert
from opkit_cli.parsing import (
    MODEL_HELP,
    Parser,
    add_max_pixels,
    add_model_arguments,
    class_label,
    nonnegative_float,
    positive_float,
    positive_int,
    quality_list,
    quality_range,
    solve_parent,
)
from opkit_cli.restore import cmd_restore
from opkit_cli.train import cmd_train

__all__ = ["build_parser", "main"]


def _eval_usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], None]:
    """The usage check of ``opkit eval`` argparse cannot make: ``--op`` or ``--task``, not both."""

    def check(args: argparse.Namespace) -> None:
        if (args.op is None) == (args.task is None):
            parser.error(
                "give --op (one operator) or --task (named tasks), not both"
                if args.op
                else "one of --op, --task is required"
            )
        if args.op is not None and len(args.solver) > 1:
            parser.error("several --solver names make a table of --task presets; with --op give one solver")

    return check


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    p = Parser(prog="opkit", description="Degrade and restore images with opkit.")
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
    add_max_pixels(s)
    s.set_defaults(func=cmd_degrade)
    solve = solve_parent()
    s = sub.add_parser("restore", parents=[solve], help="restore a degraded image with any registered solver")
    s.add_argument(
        "image",
        nargs="+",
        help="degraded image (for --op jpeg, a .jpg file is read with its own tables); several files, "
        "a folder or a glob restore every image into the -o folder",
    )
    s.add_argument(
        "--class-label", type=class_label, help="class of a class-conditional prior (DDRM-CC), from 0"
    )
    s.add_argument("--truth", help="ground-truth image for --compare")
    s.add_argument("--compare", help="also write input | restoration [| truth] side by side here")
    s.add_argument("-o", "--output", required=True, help="output image, or the folder of <stem>.png outputs")
    s.add_argument("--force", action="store_true", help="overwrite existing outputs (many images: redo them)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument(
        "--batch", type=positive_int, default=1, help="images of one size restored together (default 1)"
    )
    s.add_argument(
        "--shard", type=shard_spec, metavar="I/N", help="restore only shard I of N (0-based), e.g. 0/4"
    )
    s.set_defaults(func=cmd_restore)
    s = sub.add_parser(
        "eval",
        parents=[solve_parent(table=True)],
        help="degrade and restore a folder of images; print PSNR/SSIM/PSNR-B/BEF",
    )
    s.add_argument("folder", help="folder of ground-truth images")
    s.add_argument(
        "--qualities", type=quality_list, help="comma-separated JPEG qualities to sweep, e.g. 5,10,30"
    )
    s.add_argument("--multiple", type=positive_int, default=16, help="crop images to a multiple of this size")
    s.add_argument("--csv", help="write every score here (with --task: the task × solver table)")
    s.add_argument(
        "--plot",
        help="rate–distortion plot (PNG, PDF, SVG) for a JPEG quality sweep; with --task: PSNR per task "
        "and solver",
    )
    s.add_argument(
        "--force", action="store_true", help="overwrite existing --csv/--plot files, redo every image"
    )
    s.add_argument(
        "--save", metavar="DIR", help="keep the degraded input and the restoration of every image here"
    )
    s.add_argument(
        "--shard", type=shard_spec, metavar="I/N", help="evaluate only shard I of N (0-based), e.g. 0/4"
    )
    s.set_defaults(func=cmd_eval, usage=_eval_usage(s))
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
    add_max_pixels(s)
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
        usage = getattr(args, "usage", None)
        if usage is not None:
            usage(args)
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
