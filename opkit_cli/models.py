"""Models of the ``opkit`` command line: loading a prior with ``--model``, ``--device`` and
``--dtype``, and the ``opkit convert`` command.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from opkit.messages import one_line
from opkit_cli.errors import fail
from opkit_cli.folders import resolve_device
from opkit_cli.io import bundled_weights
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


#: Files up to this size are identified by their content in :func:`model_fingerprint`; larger
#: ones (a 2 GB checkpoint takes seconds to hash) by their size and modification time.
HASHED_BYTES = 64 * 2**20


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex (read in blocks).

    Parameters
    ----------
    path : pathlib.Path
        The file.

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def model_fingerprint(args: argparse.Namespace) -> str:
    """A digest that changes when the model ``--model`` (and ``--model-config``) names changes.

    Every file of a model folder or the checkpoint file, and the ``--model-config`` file, is
    identified by its path inside the model, and by its content (SHA-256) when it holds at most
    :data:`HASHED_BYTES`, else by its size and modification time; ``default`` is the bundled
    models' folder. A preset or hub id that is not a path is identified by its name.

    Parameters
    ----------
    args : argparse.Namespace
        ``model`` and ``model_config``.

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256(f"{args.model}\0{getattr(args, 'model_config', None)}".encode())
    roots = bundled_weights() if args.model == "default" else [Path(args.model)]
    config = getattr(args, "model_config", None)
    if config and Path(config).is_file():
        roots.append(Path(config))
    for root in roots:
        if not root.exists():
            continue
        found = sorted(root.rglob("*")) if root.is_dir() else [root]
        for f in found:
            if not f.is_file():
                continue
            st = f.stat()
            what = file_digest(f) if st.st_size <= HASHED_BYTES else f"{st.st_size}:{st.st_mtime_ns}"
            h.update(os.fsencode(f.relative_to(root) if root.is_dir() else f.name) + f"\0{what}\0".encode())
    return h.hexdigest()


#: Files that make a folder a model folder ``--force`` may replace (a diffusers model, a pipeline,
#: an ADM folder written by ``opkit convert``, a DriftRec model).
MODEL_MARKERS = ("config.json", "unet/config.json", "model_index.json")


def _inside(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b`` or lies inside it (links resolved)."""
    return a.resolve().is_relative_to(b.resolve())


def check_convert_output(out: Path, args: argparse.Namespace) -> None:
    """Refuse a ``convert -o`` folder before any loading: every reason in one line, nothing touched.

    The folder is written whole and swapped in (:func:`opkit.files.atomic_directory`), so an
    existing folder is replaced with every file in it. Refused: a file; a folder inside, or
    holding, the model being converted, its ``--model-config`` file or the bundled models; a
    missing parent folder or one that accepts no new folder; without ``--force`` any non-empty
    folder; with ``--force`` a folder that holds no model (:data:`MODEL_MARKERS`).

    Parameters
    ----------
    out : pathlib.Path
        The ``-o`` folder.
    args : argparse.Namespace
        ``model``, ``model_config`` and ``force``.
    """
    if out.exists() and not out.is_dir():
        fail(f"-o {out} exists and is not a folder")
    sources = [("the model being converted", Path(args.model))] if Path(args.model).exists() else []
    if args.model_config and Path(args.model_config).is_file():
        sources.append(("its --model-config file", Path(args.model_config)))
    for what, src in sources:
        if _inside(out, src) or _inside(src, out):
            fail(f"-o {out}: refusing to write over {what} ({src}); choose another folder")
    for folder in bundled_weights():
        if folder.exists() and (_inside(out, folder) or _inside(folder, out)):
            fail(f"-o {out}: refusing to write over the bundled models ({folder})")
    parent = Path(os.path.abspath(out)).parent
    if not parent.is_dir():
        fail(f"-o {out}: the folder {parent} does not exist")
    if out.is_dir() and any(out.iterdir()):
        if not args.force:
            fail(f"-o {out} exists; pass --force to replace it")
        if not any((out / m).is_file() for m in MODEL_MARKERS):
            fail(
                f"-o {out} is a folder that holds no model ({' or '.join(MODEL_MARKERS)}); --force "
                "replaces a model folder whole, so it refuses any other folder"
            )
    try:
        with tempfile.TemporaryDirectory(dir=parent, prefix=f".{Path(os.path.abspath(out)).name}.probe"):
            pass
    except OSError as exc:
        fail(f"-o {out}: cannot write into {parent}: {exc.strerror or one_line(exc)}")


def cmd_convert(args: argparse.Namespace) -> int:
    """Write any checkpoint ``load_prior`` accepts as a safetensors model directory with its config.

    Every argument is checked before the model is loaded (:func:`check_convert_output`,
    ``--device``); the folder is written beside its target and swapped in whole, so a failed
    write (a full disk) or an interrupted one leaves an existing folder as it was.
    """
    from solvers.priors import save_prior

    out = Path(args.output)
    if args.device is not None:
        args.device = resolve_device(args.device)
    check_convert_output(out, args)
    try:
        prior = load_model(args)
    except (OSError, ValueError, ImportError, NotImplementedError) as exc:
        fail(exc)
    except Exception as exc:  # a damaged checkpoint raises anything
        fail(f"cannot load the model {args.model}: {one_line(exc)}")
    try:
        save_prior(prior, os.path.abspath(out))
    except Exception as exc:  # a full disk: OSError, or safetensors' own error type
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)
        found = re.search(r'message: "([^"]+)"', why)  # safetensors quotes the system's error
        why = found.group(1) if found else why
        fail(f"-o {args.output}: cannot write the model folder: {why}; nothing was changed")
    n = sum(p.numel() for p in prior.net.parameters())
    print(
        f"wrote {args.output} ({type(prior.net).__name__}, {n / 1e6:.1f}M parameters); "
        f"load it with --model {args.output}"
    )
    return 0


def check_device(device: str) -> None:
    """Refuse a ``--device`` this machine lacks, in one line (:func:`~opkit_cli.folders.resolve_device`)."""
    resolve_device(device)
