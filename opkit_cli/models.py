"""Models of the ``opkit`` command line: loading a prior with ``--model``, ``--device`` and
``--dtype``, and the ``opkit convert`` command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from opkit_cli.errors import fail
from opkit_cli.parsing import DTYPES


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


def model_folders(args: argparse.Namespace) -> list[Path]:
    """The folder or file of ``--model`` when it is a path (nothing is ever written into it).

    Parameters
    ----------
    args : argparse.Namespace
        ``model``.

    Returns
    -------
    list of pathlib.Path
        ``[]`` for the bundled default (its folder is always protected) and for names.
    """
    return [] if args.model == "default" else [Path(args.model)]


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


def check_device(device: str) -> None:
    """Refuse a ``--device`` this machine does not have, in one line."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        fail(f"--device {device}: {exc}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        fail(f"--device {device}: MPS is not available on this machine")
