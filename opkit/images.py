"""Images: reading image files, writing them, and their pixels (8-bit levels, grey).

Reading: image files become ``(1, C, H, W)`` float tensors in ``[0, 1]`` at their full precision
(8 or 16 bits per sample, greyscale or colour), with the image size checked against a pixel limit
*before* any pixel is decoded (a small file can declare a huge image).

Writing: :func:`save_image` writes 8-bit files through the package's one atomic writer
(:func:`opkit.files.atomic_path`): an existing file is replaced whole or not at all.

Colour: :data:`LUMA` holds the ITU-R BT.601 luma weights that every part of opkit uses for grey
(:func:`to_grey`, :func:`load_image` with ``mode="L"``, the JFIF colour transform of the ``jpeg``
operator).
"""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from opkit.files import PathLike, atomic_path
from opkit.messages import one_line

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LUMA",
    "ImageReadWarning",
    "ImageTooLargeError",
    "check_pixels",
    "image_suffixes",
    "load_image",
    "save_image",
    "to_grey",
    "to_uint8",
]

#: Default limit on the pixels (width × height) of an image read by :func:`load_image`: 50 megapixels.
DEFAULT_MAX_PIXELS = 50_000_000

#: ITU-R BT.601 luma weights of red, green and blue: ``Y = 0.299 R + 0.587 G + 0.114 B``
#: (JFIF's and Pillow's grey).
LUMA = (0.299, 0.587, 0.114)


class ImageTooLargeError(ValueError):
    """An image file declares more pixels than the limit (checked before decoding)."""


class ImageReadWarning(UserWarning):
    """Something of an image file was left out while reading it (e.g. its alpha channel)."""


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
#: What Pillow raises for a file it cannot read (header or data).
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError)


@contextlib.contextmanager
def _open(p: Path, max_pixels: int | None) -> Iterator[Image.Image]:
    """Open ``p`` with Pillow, refusing more than ``max_pixels`` pixels before decoding.

    While the block runs, this limit replaces Pillow's own decompression-bomb limit (which warns
    at half the size it refuses), so that a limit raised by the caller is the one that counts.
    """
    if not p.exists():
        raise FileNotFoundError(f"no such image file: {p}")
    if p.is_dir():
        raise ValueError(f"{p} is a folder, not an image file")
    if not p.is_file():  # reading a FIFO or a device would wait forever, or never end
        raise ValueError(f"{p} is not a regular file (a pipe, device or socket), not an image file")
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None if max_pixels is None else max(max_pixels, old or 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(p)
            except _READ_ERRORS as exc:
                raise ValueError(f"cannot read {p} as an image: {one_line(exc)}") from exc
            with im:
                check_pixels(p, *im.size, max_pixels)
                yield im
    finally:
        Image.MAX_IMAGE_PIXELS = old


def check_pixels(path: PathLike, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` pixels.

    Readers call it with the size from the file's header, before decoding any pixel.

    Parameters
    ----------
    path : str or path-like
        The file, for the message.
    width, height : int
        The declared size.
    max_pixels : int or None
        The limit (``None``: none).

    Raises
    ------
    ImageTooLargeError
        If ``width * height > max_pixels``.
    """
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{path} declares {width}x{height} = {width * height / 1e6:.1f} megapixels, more than "
            f"the limit of {max_pixels / 1e6:g} megapixels"
        )


_WIDE_RAWMODE = re.compile(r"^(RGBA?);16([BLN])$")


def _rawmode(tile: Any) -> str:
    args = tile[3]
    return str(args[0] if isinstance(args, tuple) else args)


def _with_rawmode(tile: Any, raw: str) -> Any:
    args = tile[3]
    new = (raw, *args[1:]) if isinstance(args, tuple) else raw
    return tile._replace(args=new) if hasattr(tile, "_replace") else (*tile[:3], new)


def _low_byte_rawmode(raw: str) -> str:
    """The raw mode that unpacks the *other* byte of each 16-bit sample (``RGB;16B`` -> ``RGB;16L``)."""
    m = _WIDE_RAWMODE.match(raw)
    assert m is not None
    base, order = m.groups()
    if order == "N":
        order = "L" if sys.byteorder == "little" else "B"
    return f"{base};16{'L' if order == 'B' else 'B'}"


def _read_wide(p: Path, tiles: list[Any], high: np.ndarray) -> np.ndarray | None:
    """All 16 bits of a 16-bit RGB(A) file that Pillow decodes to 8 bits (the high bytes).

    Pillow has no 16-bit colour mode; its decoder keeps the high byte of every sample. Decoding
    the file a second time with the opposite byte order picks the low bytes instead (the
    unfiltering and decompression are the same), and the two make the 16-bit samples.
    """
    try:
        with Image.open(p) as im:
            if len(im.tile) != len(tiles):
                return None
            im.tile = [_with_rawmode(t, _low_byte_rawmode(_rawmode(t))) for t in im.tile]
            im.load()
            low = np.asarray(im)
    except Exception:  # any failure falls back to the 8 bits Pillow gave
        return None
    if low.shape != high.shape:
        return None
    return high.astype(np.uint16) * 256 + low.astype(np.uint16)


def _pixels(p: Path, im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples ``(H, W, C)`` as float64 in [0, 1] and the alpha channel (or ``None``)."""
    mode = im.mode
    if mode in ("RGB", "RGBA"):
        tiles = list(getattr(im, "tile", None) or [])
        wide = bool(tiles) and all(_WIDE_RAWMODE.match(_rawmode(t)) for t in tiles)
        im.load()
        arr = np.asarray(im)
        scale = 255.0
        if wide:
            full = _read_wide(p, tiles, arr)
            if full is None:
                warnings.warn(f"{p}: 16-bit samples read at 8 bits", ImageReadWarning, stacklevel=4)
            else:
                arr, scale = full, 65535.0
        out = arr.astype(np.float64) / scale
        return (out[..., :3], out[..., 3]) if mode == "RGBA" else (out, None)
    if mode == "P" and ("transparency" in im.info):
        im = im.convert("RGBA")
        out = np.asarray(im).astype(np.float64) / 255.0
        return out[..., :3], out[..., 3]
    if mode in ("LA", "La", "PA"):
        im = im.convert("RGBA" if mode == "PA" else "LA")
        out = np.asarray(im).astype(np.float64) / 255.0
        return (out[..., :3], out[..., 3]) if mode == "PA" else (out[..., :1], out[..., 1])
    if mode in ("L", "1"):
        return np.asarray(im.convert("L")).astype(np.float64)[..., None] / 255.0, None
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float64)
        return arr[..., None] / 65535.0, None
    if mode == "F":  # floating-point samples, taken as [0, 1] values
        return np.asarray(im).astype(np.float64)[..., None], None
    return np.asarray(im.convert("RGB")).astype(np.float64) / 255.0, None


def load_image(
    path: PathLike,
    *,
    mode: str | None = None,
    dtype: torch.dtype = torch.float32,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Tensor:
    """Read an image file as a ``(1, C, H, W)`` tensor with values in ``[0, 1]``.

    Greyscale files (8 or 16 bits, bilevel) give one channel, everything else three (palette,
    CMYK and YCbCr files are converted to RGB). 16-bit samples, greyscale or colour, are read at
    full precision and scaled by 65535, 8-bit ones by 255. An alpha channel is dropped (the
    colours are kept as stored); an :class:`ImageReadWarning` says so when some pixel is not fully
    opaque.

    Parameters
    ----------
    path : str or path-like
        Any format Pillow reads (PNG, JPEG, TIFF, WebP, BMP, ...).
    mode : {None, "RGB", "L"}
        ``"RGB"`` repeats a greyscale image to three channels; ``"L"`` converts colour to grey
        with the ITU-R 601 luma weights (:func:`to_grey`, computed in float64); ``None`` keeps
        the file's channels.
    dtype : torch.dtype
        Floating dtype of the result.
    max_pixels : int or None
        Refuse images of more pixels than this, from the header, before decoding
        (default :data:`DEFAULT_MAX_PIXELS`; ``None``: no limit).

    Returns
    -------
    torch.Tensor
        The image batch of one.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ImageTooLargeError
        If the image declares more than ``max_pixels`` pixels.
    ValueError
        If ``path`` is a folder, or Pillow cannot read it as an image.
    """
    if mode not in (None, "RGB", "L"):
        raise ValueError(f"mode must be None, 'RGB' or 'L', got {mode!r}")
    p = Path(path)
    with _open(p, max_pixels) as im:
        try:
            arr, alpha = _pixels(p, im)
        except _READ_ERRORS as exc:
            raise ValueError(f"cannot read {p} as an image: {one_line(exc)}") from exc
    if alpha is not None and bool((alpha < 1.0).any()):
        warnings.warn(
            f"{p}: its alpha channel (transparency) is dropped; the stored colours are used",
            ImageReadWarning,
            stacklevel=2,
        )
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0)
    if mode == "RGB" and t.shape[1] == 1:
        t = t.expand(1, 3, *t.shape[2:])
    elif mode == "L" and t.shape[1] == 3:
        t = to_grey(t)
    return t.to(dtype).clamp(0.0, 1.0).contiguous()


def to_grey(x: Tensor) -> Tensor:
    """Colour images to grey with the :data:`LUMA` weights: ``Y = 0.299 R + 0.587 G + 0.114 B``.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, 3, H, W)`` colour images.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)``, in ``x``'s dtype and on its device (the weights are rounded to that
        dtype).

    Examples
    --------
    >>> to_grey(torch.ones(1, 3, 2, 2)).shape
    torch.Size([1, 1, 2, 2])
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected colour images (B, 3, H, W), got {tuple(x.shape)}")
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def to_uint8(x: Tensor) -> np.ndarray:
    """Convert one image ``(C, H, W)`` or ``(1, C, H, W)`` in ``[0, 1]`` to an ``(H, W[, C])`` uint8 array.

    Values are clamped to ``[0, 1]`` and rounded to the nearest of 256 levels.

    Parameters
    ----------
    x : torch.Tensor
        The image.

    Returns
    -------
    numpy.ndarray
        8-bit pixels, channels last (no channel axis for one channel).
    """
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (1 or 3, H, W), got {tuple(x.shape)}")
    arr = (x.detach().to("cpu", torch.float64).clamp(0, 1) * 255.0).round().to(torch.uint8)
    out = arr.permute(1, 2, 0).numpy()
    return out[..., 0] if out.shape[-1] == 1 else out


def save_image(x: Tensor, path: PathLike, *, quality: int | None = None) -> Path:
    """Write one image in ``[0, 1]`` to ``path`` as 8-bit (format from the suffix), atomically.

    The file is written beside ``path`` under a temporary name and renamed onto ``path`` when
    complete (:func:`opkit.files.atomic_path`): an existing file is replaced whole or not at all.

    Parameters
    ----------
    x : torch.Tensor
        ``(C, H, W)`` or ``(1, C, H, W)`` with ``C`` 1 or 3.
    path : str or path-like
        Destination; parent folders are created.
    quality : int, optional
        JPEG quality when the suffix is ``.jpg``/``.jpeg``.

    Returns
    -------
    Path
        The path written.
    """
    p = Path(path)
    im = Image.fromarray(to_uint8(x))
    p.parent.mkdir(parents=True, exist_ok=True)
    fmt = _format_of(p)
    with atomic_path(p) as tmp:
        if quality is not None:
            im.save(tmp, format=fmt, quality=quality)
        else:
            im.save(tmp, format=fmt)
    return p


def _format_of(p: Path) -> str:
    Image.init()
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot tell an image format Pillow writes from the suffix of {p}")
    return fmt


def image_suffixes() -> tuple[str, ...]:
    """Lower-case file suffixes of the image formats Pillow can write (``.png``, ``.jpg``, ...).

    Returns
    -------
    tuple of str
        Sorted suffixes, each with its dot.
    """
    Image.init()
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE))
