"""The ``opkit restore`` command for one image; many images go to :mod:`opkit_cli.many`."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from opkit.images import image_suffixes, save_image
from opkit_cli.entries import check_params
from opkit_cli.errors import EXIT_OK, fail
from opkit_cli.folders import is_many, resolve_device
from opkit_cli.io import check_outputs, read_input
from opkit_cli.many import restore_many
from opkit_cli.models import model_folders
from opkit_cli.parsing import max_pixels_of, parse_params
from opkit_cli.problem import measurement_of
from opkit_cli.runner import Runner


def side_by_side(images: list[torch.Tensor]) -> torch.Tensor:
    """Images ``(1, C, h, w)`` scaled up by pixel replication to the largest height, in a row.

    Parameters
    ----------
    images : list of torch.Tensor
        Grey or colour images.

    Returns
    -------
    torch.Tensor
        One ``(1, 3, H, W)`` image, the panels separated by 4 white columns.
    """
    h = max(int(t.shape[-2]) for t in images)
    row = []
    for t in images:
        t = t.expand(1, 3, *t.shape[-2:]) if t.shape[1] == 1 else t
        k = max(1, h // int(t.shape[-2]))
        t = t.repeat_interleave(k, -2).repeat_interleave(k, -1)
        pad_h = h - int(t.shape[-2])
        row.append(torch.nn.functional.pad(t, (0, 4, 0, pad_h), value=1.0))
    return torch.cat(row, -1)[..., :-4]


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a degraded image with any registered solver, or many (:func:`~opkit_cli.many.restore_many`)."""
    params = parse_params(args.param)
    check_params(args.op, params)
    images = [args.image] if isinstance(args.image, str) else list(args.image)
    if is_many(images) or getattr(args, "shard", None) is not None:
        args.image = images
        return restore_many(args, params)
    args.image = images[0]
    args.device = resolve_device(args.device)
    if args.truth and not args.compare:
        fail("--truth is only used with --compare")
    image_out = image_suffixes()
    check_outputs(
        [("-o", args.output, image_out), ("--compare", args.compare, image_out)],
        inputs=[args.image, args.truth],
        protected=model_folders(args),
        force=args.force,
    )
    truth = read_input(args.truth, max_pixels_of(args)) if args.truth else None
    op, y, shown = measurement_of(args.image, args, params)
    runner = Runner(args, torch.Generator().manual_seed(args.seed), progress=not args.quiet, op=op)
    x = runner(op, y, params)
    out = Path(args.output)
    save_image(x, out)
    print(f"wrote {out} ({args.solver}, {args.op}, {tuple(x.shape[1:])})")
    if args.compare:
        panels = [shown.to(x.dtype), x]
        if truth is not None:
            panels.append(truth.to(x.dtype))
        save_image(side_by_side(panels), Path(args.compare))
        print(f"wrote {args.compare} (input | restoration{' | truth' if truth is not None else ''})")
    return EXIT_OK
