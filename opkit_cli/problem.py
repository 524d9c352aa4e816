"""Reading a restoration problem from a file: the operator, its measurement, and what a viewer shows."""

from __future__ import annotations

import argparse
from typing import Any

import torch

import opkit
from opkit.images import ImageTooLargeError
from opkit_cli.entries import create_operator, infer_image_shape
from opkit_cli.errors import fail
from opkit_cli.io import is_sample, read_input
from opkit_cli.parsing import max_pixels_of


def measurement_of(
    image: str, args: argparse.Namespace, params: dict[str, Any]
) -> tuple[Any, Any, torch.Tensor]:
    """Operator, measurement and a displayable degraded image of the file ``image``.

    A file format plugin may own the file (:func:`opkit.read_measurement`: the jpeg plugin reads a
    ``.jpg`` with its own tables) when no ``--param`` is given and its operator is ``--op``; any
    other file is the measurement image, whose operator shape
    :func:`~opkit_cli.entries.infer_image_shape` finds.

    Parameters
    ----------
    image : str
        The file (or ``sample:NAME``).
    args : argparse.Namespace
        ``op`` and ``max_pixels``.
    params : dict
        The operator's ``--param`` values.

    Returns
    -------
    (opkit.Operator, measurement, torch.Tensor)
        The operator, its measurement, and the image a viewer shows for it.
    """
    if not params and not is_sample(image):
        try:
            got = opkit.read_measurement(image, max_pixels_of(args))
        except ImageTooLargeError as exc:
            fail(f"{exc}; raise the limit with --max-pixels")
        except (FileNotFoundError, ValueError) as exc:
            fail(exc)
        if got is not None and got[0].name == args.op:
            op, y = got
            return op, y, read_input(image, max_pixels_of(args))  # the file as a viewer shows it
    img = read_input(image, max_pixels_of(args))
    shape = infer_image_shape(args.op, tuple(img.shape[1:]), params)
    created = create_operator(args.op, shape, params)
    if isinstance(created, opkit.EncodeDecodeOperator):
        y = created(img)  # Encode(Decode(Encode(x))) = Encode(x): re-encoding a decoded image recovers y
        return created, y, img
    return created, img, img
