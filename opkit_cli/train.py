"""The ``opkit train prior|driftrec`` command: training data, resumable output folders."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from opkit.messages import one_line
from opkit_cli.entries import create_operator, operator_entry
from opkit_cli.errors import EXIT_OK, fail
from opkit_cli.io import IMAGE_SUFFIXES, bundled_weights, read_input
from opkit_cli.models import check_device
from opkit_cli.parsing import max_pixels_of, parse_params


def _training_images(folder: str | None, crop: int, max_pixels: int | None) -> list[torch.Tensor]:
    """Images of a folder, or scikit-image's training photographs when ``folder`` is ``builtin``."""
    from solvers.common.data import TRAIN_PHOTOS, photo

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


#: Files whose presence marks a folder as a resumable run of ``opkit train prior|driftrec``
#: (``training_state.json`` is :data:`solvers.common.state.STATE_JSON`, spelled out here so that
#: the command line starts without importing the solvers; a test keeps the two equal).
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


#: Qualities ``opkit train driftrec`` draws per image for an operator with a ``quality``
#: parameter when neither ``--qualities`` nor ``--param quality=`` is given (the IJG scale).
DEFAULT_QUALITIES = (1, 100)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a DDRM prior or a DriftRec model (resumes from the output directory)."""
    out = Path(args.output)
    check_training_output(out, args.what)
    check_device(args.device)
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
    # what both trainers take alike
    common = {
        "steps": args.steps,
        "batch_size": args.batch,
        "crop_size": args.crop,
        "seed": args.seed,
        "device": args.device,
    }
    try:
        if args.what == "prior":
            from solvers.priors.training import train_prior

            res = train_prior(
                args.output,
                images,
                preset=args.preset or "small",
                lr=args.lr or 2e-4,
                max_seconds=args.max_seconds,
                **common,
            )
            print(
                f"prior: {res['step']} steps, {res['parameters'] / 1e6:.2f}M parameters, "
                f"{res['seconds']:.0f} s"
            )
            return EXIT_OK
        from solvers.sdes.training import train_driftrec

        quality_range = args.qualities
        if (
            quality_range is None
            and "quality" not in params
            and "quality" in operator_entry(args.op).parameters()
        ):
            quality_range = DEFAULT_QUALITIES  # an operator with a quality: the paper's uniform draw
        result = train_driftrec(
            [im[0] for im in images],
            args.op,
            size=args.preset or "tiny",
            lr=args.lr or 1e-4,
            quality_range=quality_range,
            operator_params=params or None,
            checkpoint_dir=args.output,
            checkpoint_every=250,
            resume=True,
            **common,
        )
    except ValueError as exc:
        fail(exc)
    except RuntimeError as exc:
        fail(f"training failed: {one_line(exc)}")
    print(f"driftrec: {result.step} steps, last loss {result.losses[-1]:.4f}")
    return EXIT_OK
