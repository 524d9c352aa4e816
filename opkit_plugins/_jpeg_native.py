"""8-bit CPU batches through the codec library itself: Pillow's libjpeg-turbo and a coefficient reader.

The torch pipeline of :mod:`opkit_plugins._jpeg_core` emulates libjpeg-turbo operation for
operation, in batches, on any device and for autograd. On the CPU, for images that are exactly
8-bit, the library is faster than its emulation: per image,

* **encode**: Pillow writes the JPEG with the operator's tables and sampling (libjpeg-turbo: the
  same fixed-point colour conversion, biased chroma means, ``islow`` DCT and quantiser the
  emulation reproduces), and ``jpeglib``'s C reader (``jpeg_read_coefficients``) returns the
  quantised coefficients the file holds;
* **decode** (``mode="libjpeg"``): ``jpeglib``'s C writer stores the coefficients losslessly in a
  baseline file (``jpeg_write_coefficients``, Huffman coding only) and Pillow decodes it with
  libjpeg-turbo's default decoder (``islow`` IDCT, fancy upsampling, clamping) — exactly the
  decoder the emulation follows. A measurement made here keeps its file: decoding it, while its
  coefficient tensors are the very objects encode returned and are unmodified (their version
  counters unchanged), decodes those bytes without writing them again.

Both routes are bit-exact with the emulation (tested on every sampling, odd sizes and qualities
1–100). This path is used only when it applies: CPU tensors, 8-bit input, ``jpeglib``
installed (PyPI wheels bundle their own libjpeg builds; nothing to compile), tables with
entries of at most 255 (baseline), and one table shared by both chroma components. Otherwise the
torch pipeline runs, with the same results.
"""

from __future__ import annotations

import atexit
import ctypes
import io
import os
import shutil
import tempfile
import threading
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from opkit_plugins._jpeg_core import Geometry

__all__ = ["available", "decode", "encode", "usable"]

_PIL_SUBSAMPLING = {(1, 1): 0, (2, 1): 1, (2, 2): 2}
_LOCAL = threading.local()


@cache
def available() -> bool:
    """Whether ``jpeglib``'s C reader and writer can be used here."""
    try:
        from jpeglib._bind import CJpegLib  # noqa: F401
    except Exception:  # pragma: no cover - jpeglib absent or changed
        return False
    return True


def usable(x: Tensor, geo: Geometry, tables: Tensor) -> bool:
    """Whether the library route applies (CPU tensor, baseline tables, shared chroma table)."""
    if x.device.type != "cpu" or not available():
        return False
    if bool((tables > 255).any()):
        return False
    return geo.channels == 1 or torch.equal(tables[1], tables[2])


def _workdir() -> str:
    """This thread's scratch folder for the library's files (in memory where ``/dev/shm`` is).

    Removed when the interpreter exits, so no process leaves one behind.
    """
    d = getattr(_LOCAL, "dir", None)
    if d is None or not os.path.isdir(d):
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        d = tempfile.mkdtemp(prefix="opkit-jpeg-", dir=base)
        atexit.register(shutil.rmtree, d, ignore_errors=True)
        _LOCAL.dir = d
    return str(d)


class _Source:
    """The JPEG files a measurement was read from, valid while its tensors are untouched."""

    def __init__(self, files: list[bytes], components: tuple[Tensor, ...]) -> None:
        self.files = files
        self.components = components
        self.versions = tuple(c._version for c in components)

    def matches(self, components: tuple[Tensor, ...]) -> bool:
        return len(components) == len(self.components) and all(
            a is b and a._version == v for a, b, v in zip(components, self.components, self.versions)
        )


def encode(levels: Tensor, geo: Geometry, tables: Tensor) -> tuple[list[Tensor], _Source]:
    """Quantised coefficients of 8-bit images through Pillow and ``jpeglib``'s C reader.

    Parameters
    ----------
    levels : torch.Tensor
        ``(B, C, H, W)`` integer-valued samples in ``0 … 255`` (any dtype), on the CPU.
    geo : Geometry
        Sizes.
    tables : torch.Tensor
        ``(C, 8, 8)`` tables (entries ≤ 255, chroma tables equal).

    Returns
    -------
    (list of torch.Tensor, _Source)
        Per component, ``(B, rows, cols, 8, 8)`` int32 codes; and the files, for :func:`decode`.
    """
    from jpeglib._bind import CJpegLib
    from PIL import Image

    b, c, h, w = levels.shape
    pixels_t = torch.empty((b, h, w, c), dtype=torch.uint8)
    pixels_t.copy_(levels.permute(0, 2, 3, 1))  # one pass: cast and interleave the channels
    pixels = pixels_t.numpy()
    qt = [[int(v) for v in tables[0].flatten()]]
    if geo.channels == 3:
        qt.append([int(v) for v in tables[1].flatten()])
    mode = "RGB" if geo.channels == 3 else "L"
    sub = _PIL_SUBSAMPLING[(geo.fh, geo.fv)] if geo.channels == 3 else 0
    outs = [np.empty((b, rows, cols, 64), dtype=np.int16) for rows, cols in geo.blocks]
    files = []
    path = os.path.join(_workdir(), "enc.jpg")
    for i in range(b):  # one file per image: the library works image by image
        img = Image.fromarray(pixels[i] if geo.channels == 3 else pixels[i, :, :, 0], mode)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", qtables=qt, subsampling=sub)
        data = buf.getvalue()
        files.append(data)
        with open(path, "wb") as fh:
            fh.write(data)
        qt_out = ((ctypes.c_ushort * 64) * 4)()
        slots = (ctypes.c_short * 4)()
        bufs = [np.ctypeslib.as_ctypes(o[i]) for o in outs]
        CJpegLib.read_jpeg_dct(path, bufs[0], *(bufs[1:] or [None, None]), None, qt_out, slots)
    comps = [torch.from_numpy(o).to(torch.int32).view(b, o.shape[1], o.shape[2], 8, 8) for o in outs]
    return comps, _Source(files, tuple(comps))


def attach(y: Any, source: _Source) -> None:
    """Remember ``source`` on a measurement (a private attribute, not part of its value)."""
    object.__setattr__(y, "_native_source", source)


def decode(y: Any, geo: Geometry, tables: Tensor, dtype: torch.dtype) -> Tensor:
    """libjpeg-turbo's decode of a measurement's coefficients (Pillow), on the CPU.

    Parameters
    ----------
    y : JpegCoefficients
        The measurement (CPU tensors).
    geo : Geometry
        Sizes.
    tables : torch.Tensor
        ``(C, 8, 8)`` tables of ``y``.
    dtype : torch.dtype
        Output dtype.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)`` images, multiples of 1/255.
    """
    from PIL import Image

    source = getattr(y, "_native_source", None)
    files = source.files if isinstance(source, _Source) and source.matches(y.components) else None
    if files is None:
        files = _write(y.components, geo, tables)
    mode = "RGB" if geo.channels == 3 else "L"
    out = np.empty((len(files), geo.height, geo.width, geo.channels), dtype=np.uint8)
    for i, data in enumerate(files):  # one file per image
        with Image.open(io.BytesIO(data)) as img:
            arr = np.asarray(img.convert(mode) if img.mode != mode else img)
        out[i] = arr.reshape(geo.height, geo.width, geo.channels)
    result = torch.empty((len(files), geo.channels, geo.height, geo.width), dtype=dtype)
    # k / 255 computed in the output precision, exactly as the torch decoder rounds it
    return result.copy_(torch.from_numpy(out).permute(0, 3, 1, 2)).div_(255.0)


def _write(components: tuple[Tensor, ...], geo: Geometry, tables: Tensor) -> list[bytes]:
    """Baseline JPEG files holding these coefficients (lossless: Huffman coding only)."""
    from jpeglib._bind import CJpegLib

    b = components[0].shape[0]
    arrays = [c.reshape(b, c.shape[1], c.shape[2], 64).to(torch.int16).numpy() for c in components]
    qt = torch.stack([tables[0].reshape(64), tables[min(1, geo.channels - 1)].reshape(64)]).numpy()
    qt_c = np.ctypeslib.as_ctypes(np.ascontiguousarray(qt.astype(np.uint16)))
    slots = np.ctypeslib.as_ctypes(
        np.array([0, 1, 1, -1] if geo.channels == 3 else [0, -1, -1, -1], np.int16)
    )
    dims = (ctypes.c_int * 2)(geo.height, geo.width)
    blocks = (ctypes.c_int * (2 * geo.channels))(*[int(v) for rc in geo.blocks for v in rc])
    factors = [[geo.fv, geo.fh], [1, 1], [1, 1]][: geo.channels]
    samp = np.ctypeslib.as_ctypes(np.array(factors, dtype=np.int32))
    path = os.path.join(_workdir(), "dec.jpg")
    files = []
    for i in range(b):  # one file per image
        bufs = [np.ctypeslib.as_ctypes(np.ascontiguousarray(a[i])) for a in arrays]
        CJpegLib.write_jpeg_dct(
            srcfile=None,
            dstfile=path,
            Y=bufs[0],
            Cb=bufs[1] if geo.channels == 3 else None,
            Cr=bufs[2] if geo.channels == 3 else None,
            K=None,
            image_dims=dims,
            block_dims=blocks,
            in_color_space=3 if geo.channels == 3 else 1,
            in_components=geo.channels,
            samp_factor=samp,
            qt=qt_c,
            quality=-1,
            quant_tbl_no=slots,
            num_markers=0,
            marker_types=None,
            marker_lengths=None,
            markers=None,
            flags=[],
        )
        with open(path, "rb") as fh:
            files.append(fh.read())
    return files
