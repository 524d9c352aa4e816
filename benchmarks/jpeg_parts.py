"""Where the time of the bit-exact JPEG round trip goes on the CPU: library work against torch work.

The ``libjpeg`` row of ``bench_jpeg.py`` hands 8-bit batches to libjpeg itself (Pillow encodes,
``jpeglib``'s C reader returns the coefficients, Pillow decodes). This script times, on the same
batch and interleaved, Pillow's encode, Pillow's decode, the coefficient read alone and the
operator's whole round trip, and prints the ceiling the library work alone leaves against
Pillow's round trip (encode + decode) and the remainder, the torch side. Median process CPU
time, one torch thread.

    python benchmarks/jpeg_parts.py --repeats 15
"""

from __future__ import annotations

import argparse
import ctypes
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

import opkit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_jpeg import _images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    from jpeglib._bind import CJpegLib

    torch.set_num_threads(1)
    imgs = _images(args.batch)
    b, h, w, _ = imgs.shape
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    op = opkit.create("jpeg", decode="libjpeg", shape=(3, h, w), quality=75, subsampling="4:2:0")
    files = []
    for a in imgs:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=75, subsampling=2)
        files.append(buf.getvalue())
    outs = [np.empty((b, rows, cols, 64), np.int16) for rows, cols in op._geo.blocks]

    def pillow_encode() -> None:
        for a in imgs:
            Image.fromarray(a).save(io.BytesIO(), format="JPEG", quality=75, subsampling=2)

    def pillow_decode() -> None:
        for data in files:
            np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "parts.jpg")

        def read_coefficients() -> None:
            for i, data in enumerate(files):
                with open(path, "wb") as fh:
                    fh.write(data)
                qt, slots = ((ctypes.c_ushort * 64) * 4)(), (ctypes.c_short * 4)()
                bufs = [np.ctypeslib.as_ctypes(o[i]) for o in outs]
                CJpegLib.read_jpeg_dct(path, bufs[0], bufs[1], bufs[2], None, qt, slots)

        fns: dict[str, Callable[[], object]] = {
            "Pillow encode": pillow_encode,
            "Pillow decode": pillow_decode,
            "coefficient read (jpeglib's C reader)": read_coefficients,
            "opkit round trip (libjpeg route)": lambda: op.decode(op(x)),
        }
        times: dict[str, list[float]] = {k: [] for k in fns}
        for f in fns.values():
            f()  # warm-up
        for _ in range(args.repeats):
            for k, f in fns.items():
                tic = time.process_time()
                f()
                times[k].append(time.process_time() - tic)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    print(f"JPEG round-trip parts, batch {b} RGB {h}x{w}, quality 75, 4:2:0, median process CPU time")
    print("\n| part | ms / batch |\n|---|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:.1f} |")
    pil = med["Pillow encode"] + med["Pillow decode"]
    lib = pil + med["coefficient read (jpeglib's C reader)"]
    total = med["opkit round trip (libjpeg route)"]
    print(
        f"\nPillow round trip {pil:.1f} ms; library work of the route {lib:.1f} ms (ceiling {pil / lib:.2f}x "
        f"of Pillow's throughput); torch side {total - lib:.1f} ms; round trip {pil / total:.2f}x"
    )


if __name__ == "__main__":
    main()
