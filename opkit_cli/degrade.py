"""The ``opkit degrade`` command: an operator (and optional noise) applied to an image, written as an
image or, through a file format plugin, as the measurement's own file (a JPEG's ``.jpg``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import opkit
from opkit.files import write_atomic
from opkit.images import save_image
from opkit_cli.entries import check_params, create_operator
from opkit_cli.errors import EXIT_OK, fail
from opkit_cli.io import LOSSLESS_SUFFIXES, check_outputs, read_input
from opkit_cli.parsing import max_pixels_of, parse_params


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
