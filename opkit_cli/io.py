"""Inputs and outputs of the ``opkit`` command line: reading images and samples, and checking
outputs before any work. (Measurement files, such as JPEG files, are the format plugins' job:
:func:`opkit.read_measurement` and :func:`opkit.write_measurement`.)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from opkit.files import check_output, same_file
from opkit.images import DEFAULT_MAX_PIXELS, ImageTooLargeError, load_image
from opkit_cli.errors import fail

SAMPLES = ("astronaut", "chelsea", "coffee", "camera", "rocket")

#: Suffixes ``degrade`` writes losslessly (any other is left to a file format plugin:
#: :func:`opkit.write_measurement`, e.g. ``.jpg`` for a ``jpeg`` operator).
LOSSLESS_SUFFIXES = (".bmp", ".pgm", ".png", ".ppm", ".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def is_sample(spec: str) -> bool:
    """Whether ``spec`` names one of scikit-image's photographs (``sample:NAME``), not a file."""
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
        As :func:`opkit.images.load_image`.

    Returns
    -------
    torch.Tensor
        ``(1, C, H, W)`` in ``[0, 1]``.
    """
    if is_sample(spec):
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
    """Check every output of a command before any work starts (:func:`opkit.files.check_output`).

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
    files = [i for i in inputs if i and not is_sample(i)]
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
