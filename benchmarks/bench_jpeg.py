"""Benchmark: JPEG encode+decode round trip of a batch of RGB images, opkit vs Pillow (libjpeg-turbo).

Both sides do the lossy part on the same 8 RGB 256x256 crops of scikit-image photos, in one run:
Pillow ``save`` + ``open().load()`` per image (libjpeg-turbo with SIMD, Huffman coding included),
and ``opkit`` ``decode(encode(x))`` on the whole batch (no entropy coding). Rows:

* ``libjpeg``: the default encoder on 8-bit input (libjpeg arithmetic, bit-exact with Pillow)
  and ``decode="libjpeg"``; the output equals Pillow's pixel for pixel (checked here).
* ``float + exact``: the float encoder and the exact decoder (what DDRM-JPEG uses).

Medians over interleaved rounds (one call of each per round) of the process CPU time on the CPU
(the wall time, synchronised, on a GPU); the machine may be shared, so compare ratios, not
absolute times. On the CPU the ``libjpeg`` row hands 8-bit images to libjpeg itself (Pillow, and
``jpeglib``'s coefficient reader and writer) when ``jpeglib`` is installed.

Usage::

    python benchmarks/bench_jpeg.py [--repeats 15] [--threads 1] [--quality 75] [--device cpu]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from skimage import data

import opkit


def _images(n: int = 8, size: int = 256) -> np.ndarray:
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        y0 = (i * 37) % (p.shape[0] - size)
        x0 = (i * 53) % (p.shape[1] - size)
        out.append(np.ascontiguousarray(p[y0 : y0 + size, x0 : x0 + size]))
    return np.stack(out)


def _interleaved_medians(
    fns: list[Callable[[], object]], repeats: int, sync: Callable[[], None], tick: Callable[[], float]
) -> list[float]:
    """Median time (ms) of each function, timed in interleaved rounds after one warm-up.

    ``tick`` is the process CPU time on the CPU (Pillow and opkit both run in this process, one
    thread each; waiting for a core on a shared machine is not counted) and the wall clock with
    a device synchronisation on a GPU.
    """
    for fn in fns:
        fn()
    sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            t0 = tick()
            fn()
            sync()
            acc.append(tick() - t0)
    return [1e3 * statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quality", type=int, default=75)
    ap.add_argument("--subsampling", default="4:2:0", choices=["4:2:0", "4:2:2", "4:4:4"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8, help="images per batch (the GPU target is for 64)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    imgs = _images(args.batch)
    b, h, w, _ = imgs.shape
    pil_sub = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[args.subsampling]

    def pillow() -> list[np.ndarray]:
        out = []
        for a in imgs:
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="JPEG", quality=args.quality, subsampling=pil_sub)
            buf.seek(0)
            out.append(np.asarray(Image.open(buf).convert("RGB")))
        return out

    x = (torch.from_numpy(imgs).permute(0, 3, 1, 2).to(torch.float32) / 255.0).to(dev)
    kw = {"shape": (3, h, w), "quality": args.quality, "subsampling": args.subsampling}
    lj = opkit.create("jpeg", decode="libjpeg", **kw)
    fl = opkit.create("jpeg", encoder="float", **kw)
    xf = (x + 0.25 / 255).clamp(0, 1)  # continuous input for the float row

    ref = torch.from_numpy(np.stack(pillow())).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    same = bool(torch.equal(lj.decode(lj(x)).cpu(), ref))

    tick = time.process_time if dev.type == "cpu" else time.perf_counter
    clock_words = "process CPU" if dev.type == "cpu" else "wall"
    t_pil, t_lj, t_fl = _interleaved_medians(
        [pillow, lambda: lj.decode(lj(x)), lambda: fl.pinv(fl(xf))], args.repeats, sync, tick
    )
    rows = [
        ("Pillow save+load (libjpeg-turbo)", t_pil, "reference"),
        ("opkit libjpeg encode + libjpeg decode", t_lj, "equal to Pillow" if same else "DIFFERS from Pillow"),
        ("opkit float encode + exact decode", t_fl, "Encode(Decode(y)) == y"),
    ]
    print(
        f"JPEG round trip, batch {b} RGB {h}x{w}, quality {args.quality}, {args.subsampling}, "
        f"device {dev}, torch threads {args.threads}, median {clock_words} time of {args.repeats} "
        "interleaved rounds"
    )
    print()
    print("| method | ms / batch | images / s | throughput vs Pillow | output |")
    print("|---|---:|---:|---:|---|")
    for name, ms, note in rows:
        print(f"| {name} | {ms:.1f} | {1e3 * b / ms:.0f} | {t_pil / ms:.2f}x | {note} |")


if __name__ == "__main__":
    main()
