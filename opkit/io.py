"""Image input/output and safe file writing.

Reading: image files become ``(1, C, H, W)`` float tensors in ``[0, 1]`` at their full precision
(8 or 16 bits per sample, greyscale or colour), with the image size checked against a pixel limit
*before* any pixel is decoded (a small file can declare a huge image).

Writing: every file the package writes goes through :func:`atomic_path` (or :func:`write_atomic`,
:func:`atomic_directory` for a folder of files): it is written to a temporary file beside its
target and renamed onto the target only once complete, so an interrupted or failed write never
leaves a truncated file, and an existing file is replaced in one step or not at all.
:func:`check_output` checks an output path before any work starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from opkit.messages import one_line

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageReadWarning",
    "ImageTooLargeError",
    "atomic_directory",
    "atomic_path",
    "check_output",
    "check_pixels",
    "image_suffixes",
    "load_image",
    "same_file",
    "save_image",
    "to_uint8",
    "write_atomic",
]

#: Default limit on the pixels (width × height) of an image read by :func:`load_image`: 50 megapixels.
DEFAULT_MAX_PIXELS = 50_000_000

PathLike = str | os.PathLike[str]


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
        with the ITU-R 601 luma weights (0.299, 0.587, 0.114), as Pillow does; ``None`` keeps the
        file's channels.
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
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
        t = (t * weights).sum(1, keepdim=True)
    return t.to(dtype).clamp(0.0, 1.0).contiguous()


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
    complete (:func:`atomic_path`): an existing file is replaced whole or not at all.

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


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------
def _temp_beside(target: Path, *, directory: bool = False) -> Path:
    """Create (exclusively) a hidden temporary file or folder beside ``target``, keeping its suffix."""
    stem = target.name[: -len(target.suffix)] if target.suffix else target.name
    for _ in range(100):
        tmp = target.with_name(f".{stem}.{secrets.token_hex(4)}.part{target.suffix}")
        try:
            if directory:
                tmp.mkdir()
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"cannot create a temporary file beside {target}")  # pragma: no cover


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Write a file atomically: yield a temporary path beside ``path``, then rename it onto ``path``.

    The block writes the whole file to the yielded path (which keeps ``path``'s suffix, so writers
    that pick the format from it work). When the block succeeds, the file is flushed to disk and
    renamed onto ``path`` in one step (:func:`os.replace`); when it raises, a
    :exc:`KeyboardInterrupt` included, the temporary file is removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or path-like
        The target; its folder must exist.

    Yields
    ------
    pathlib.Path
        The temporary file to write (created empty): ``.NAME.XXXXXXXX.part.SUFFIX``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    target = Path(path)
    tmp = _temp_beside(target)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def write_atomic(path: PathLike, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or path-like
        The target; its folder must exist.
    data : bytes or str
        The whole content; text is encoded with ``encoding``.
    encoding : str
        Encoding of text.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    target = Path(path)
    raw = data.encode(encoding) if isinstance(data, str) else bytes(data)
    with atomic_path(target) as tmp:
        tmp.write_bytes(raw)
    return target


@contextlib.contextmanager
def atomic_directory(path: PathLike, *, last: Sequence[str] = ()) -> Iterator[Path]:
    """Write a folder of files atomically: yield a staging folder beside ``path``, then commit it.

    The block writes every file into the yielded folder. On success, a new ``path`` appears in
    one rename; an existing ``path`` gets each file renamed into place (each one replaced whole,
    files it holds that the block did not write are kept), the files named in ``last`` after the
    others (e.g. the state file that marks a checkpoint complete). On failure, a
    :exc:`KeyboardInterrupt` included, the staging folder is removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or path-like
        The target folder; its parent must exist.
    last : sequence of str
        File names (relative to the folder) to move into place last, in this order.

    Yields
    ------
    pathlib.Path
        The staging folder (created empty): ``.NAME.XXXXXXXX.part``.
    """
    target = Path(path)
    staging = _temp_beside(target, directory=True)
    try:
        yield staging
        files = sorted(f.relative_to(staging) for f in staging.rglob("*") if not f.is_dir())
        for rel in files:
            _fsync(staging / rel)
        if not target.exists():
            os.rename(staging, target)
            return
        order = {name: i for i, name in enumerate(last)}
        files.sort(key=lambda rel: (order.get(rel.as_posix(), -1), rel.as_posix()))
        for rel in files:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, target / rel)
        shutil.rmtree(staging)
    except BaseException:
        _remove(staging)
        raise


# ----------------------------------------------------------------------------------------------
# output checks
# ----------------------------------------------------------------------------------------------
def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name the same file: one path, a symbolic link or a hard link.

    Parameters
    ----------
    a, b : str or path-like
        Paths; either may not exist.

    Returns
    -------
    bool
        ``True`` when both exist and are the same file (same device and inode), or when neither
        exists and both resolve to the same path.
    """
    pa, pb = Path(a), Path(b)
    try:
        return os.path.samefile(pa, pb)
    except OSError:
        return pa.resolve() == pb.resolve()


def check_output(
    path: PathLike,
    *,
    inputs: Iterable[PathLike] = (),
    protected: Iterable[PathLike] = (),
    suffixes: Iterable[str] | None = None,
    force: bool = False,
) -> Path:
    """Check, before any work starts, that a file can be written at ``path`` without losing data.

    In order: the suffix is one of ``suffixes`` (when given); the folder exists and is a folder;
    ``path`` is not a folder; it is none of ``inputs`` (the same path, a symbolic link or a hard
    link to one: :func:`same_file`); it lies in none of the ``protected`` folders; it does not
    exist unless ``force``; the folder accepts a new file (a probe file is created and removed).

    Parameters
    ----------
    path : str or path-like
        The output file.
    inputs : iterable of path
        Files the command reads; never overwritten, even with ``force``. (Two outputs of one
        command are compared with :func:`same_file`.)
    protected : iterable of path
        Folders nothing may be written into (e.g. a model folder).
    suffixes : iterable of str, optional
        Accepted lower-case suffixes, with the dot.
    force : bool
        Allow replacing an existing file.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``force`` is false.
    ValueError
        For every other problem; the message names it.
    """
    p = Path(path)
    if suffixes is not None:
        allowed = sorted(set(suffixes))
        if p.suffix.lower() not in allowed:
            what = f"an unknown suffix {p.suffix!r}" if p.suffix else "no suffix"
            raise ValueError(f"{p}: {what}; use one of {', '.join(allowed)}")
    folder = p.parent
    if not folder.exists():
        raise ValueError(f"{p}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{p}: {folder} is not a folder")
    if p.is_dir():
        raise ValueError(f"{p}: is a folder")
    for inp in inputs:
        if same_file(p, inp):
            raise ValueError(f"{p}: refusing to overwrite the input {inp}")
    for folder_ in protected:
        if p.resolve().is_relative_to(Path(folder_).resolve()):
            raise ValueError(f"{p}: refusing to write into {folder_}")
    if p.exists() and not force:
        raise FileExistsError(f"{p} exists")
    try:
        _remove(_temp_beside(p))
    except OSError as exc:
        raise ValueError(f"{p}: cannot write into {folder}: {exc.strerror or one_line(exc)}") from None
    return p
