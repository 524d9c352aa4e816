"""Image input/output: files to ``(1, C, H, W)`` float tensors in ``[0, 1]`` and back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = ["load_image", "save_image", "to_uint8"]


def load_image(path: str | Path, *, mode: str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Read an image file as a ``(1, C, H, W)`` tensor with values in ``[0, 1]``.

    Parameters
    ----------
    path : str or Path
        Any format Pillow reads (PNG, JPEG, TIFF, ...). 8-bit and 16-bit images are scaled by
        their full range.
    mode : str, optional
        Convert to this Pillow mode first (``"RGB"`` or ``"L"``); by default palette and alpha
        images become RGB and greyscale stays greyscale.
    dtype : torch.dtype
        Floating dtype of the result.

    Returns
    -------
    torch.Tensor
        The image batch of one.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If Pillow cannot read it as an image.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such image file: {p}")
    try:
        with Image.open(p) as f:
            f.load()
            im: Image.Image = f
            if mode is not None:
                im = im.convert(mode)
            elif im.mode not in ("L", "RGB", "I;16", "I"):
                im = im.convert("RGB")
            arr = np.asarray(im)
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read {p} as an image: {exc}") from exc
    scale = 65535.0 if arr.dtype == np.uint16 or arr.dtype == np.int32 else 255.0
    t = torch.from_numpy(arr.astype(np.float64) / scale)
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    return t.unsqueeze(0).to(dtype).clamp_(0.0, 1.0)


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


def save_image(x: Tensor, path: str | Path, *, quality: int | None = None) -> Path:
    """Write one image in ``[0, 1]`` to ``path`` as 8-bit (format from the suffix).

    Parameters
    ----------
    x : torch.Tensor
        ``(C, H, W)`` or ``(1, C, H, W)`` with ``C`` 1 or 3.
    path : str or Path
        Destination; parent folders are created.
    quality : int, optional
        JPEG quality when the suffix is ``.jpg``/``.jpeg``.

    Returns
    -------
    Path
        The path written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(to_uint8(x))
    if quality is not None:
        im.save(p, quality=quality)
    else:
        im.save(p)
    return p
