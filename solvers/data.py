"""Training images: scikit-image's lossless photographs, dead-leaves images, random crops.

The default models are trained on the lossless photographs that scikit-image ships
(:data:`TRAIN_PHOTOS`) and on synthetic dead-leaves images; evaluation uses other images
(:data:`EVAL_PHOTOS`), so the reported numbers are on images the models never saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "EVAL_PHOTOS",
    "TRAIN_PHOTOS",
    "dead_leaves",
    "photo",
    "random_crops",
]

#: Lossless colour photographs used for training (scikit-image's bundled data).
TRAIN_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "motorcycle_left", "motorcycle_right")
#: Photographs kept out of training, for evaluation.
EVAL_PHOTOS: tuple[str, ...] = ("rocket", "camera", "coins", "hubble_deep_field")


def photo(name: str, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """A scikit-image photograph as a ``(1, 3, H, W)`` tensor in ``[0, 1]``.

    Parameters
    ----------
    name : str
        A name from :data:`TRAIN_PHOTOS` or :data:`EVAL_PHOTOS`, or any colour image function
        of :mod:`skimage.data` (``"motorcycle_left"``/``"motorcycle_right"`` are the two views of
        ``stereo_motorcycle``).
    dtype : torch.dtype
        Floating dtype.

    Returns
    -------
    torch.Tensor
        The image; greyscale images are repeated to three channels and alpha is dropped.
    """
    from skimage import data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = data.stereo_motorcycle()
        arr = left if name == "motorcycle_left" else right
    else:
        fn = getattr(data, name, None)
        if fn is None:
            raise ValueError(f"unknown photograph {name!r}")
        arr = fn()
    t = torch.as_tensor(arr.copy())
    t = t.unsqueeze(-1).expand(*t.shape, 3) if t.ndim == 2 else t[..., :3]
    scale = 65535.0 if t.dtype == torch.uint16 else 255.0 if not t.is_floating_point() else 1.0
    return (t.permute(2, 0, 1).unsqueeze(0).to(torch.float64) / scale).to(dtype).clamp(0, 1)


def dead_leaves(
    n: int,
    size: int | tuple[int, int] = 64,
    *,
    generator: torch.Generator | None = None,
    leaves: int = 600,
    r_min: float = 0.02,
    r_max: float = 0.5,
    alpha: float = 3.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Dead-leaves images: opaque random discs, the first drawn lying on top.

    Radii follow the scale-invariant density :math:`p(r) \propto r^{-\alpha}` on
    ``[r_min, r_max]`` (fractions of the image height), centres are uniform, colours uniform
    in RGB. Each pixel takes the colour of the first disc that covers it (background: the
    mean of the colours), which reproduces the occlusions, sharp edges and power-law spectrum
    of natural images that a denoiser must learn.

    Parameters
    ----------
    n : int
        Number of images.
    size : int or (int, int)
        Height and width.
    generator : torch.Generator, optional
        Source of randomness.
    leaves : int
        Discs per image.
    r_min, r_max : float
        Radius range as fractions of the height.
    alpha : float
        Power-law exponent of the radius density (3 gives scale invariance in 2-D).
    dtype : torch.dtype
        Floating dtype.

    Returns
    -------
    torch.Tensor
        ``(n, 3, H, W)`` in ``[0, 1]``.
    """
    h, w = (size, size) if isinstance(size, int) else size
    kw = {"generator": generator, "dtype": torch.float64}
    u = torch.rand(n, leaves, **kw)  # type: ignore[arg-type]
    if alpha == 1.0:
        r = r_min * (r_max / r_min) ** u
    else:  # inverse CDF of r^-alpha on [r_min, r_max]
        a = 1.0 - alpha
        r = (r_min**a + u * (r_max**a - r_min**a)) ** (1.0 / a)
    r = r * h
    cy = torch.rand(n, leaves, **kw) * h  # type: ignore[arg-type]
    cx = torch.rand(n, leaves, **kw) * w  # type: ignore[arg-type]
    colors = torch.rand(n, leaves, 3, **kw)  # type: ignore[arg-type]
    yy = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1) + 0.5
    xx = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w) + 0.5
    covered = (yy - cy[..., None, None]) ** 2 + (xx - cx[..., None, None]) ** 2 <= r[..., None, None] ** 2
    any_cover = covered.any(1)  # (n, H, W)
    first = covered.to(torch.uint8).argmax(1)  # index of the first covering disc
    img = torch.gather(colors, 1, first.view(n, h * w, 1).expand(n, h * w, 3)).view(n, h, w, 3)
    bg = colors.mean(1).view(n, 1, 1, 3)
    img = torch.where(any_cover[..., None], img, bg)
    return img.permute(0, 3, 1, 2).to(dtype).contiguous()


def random_crops(
    images: Sequence[Tensor],
    n: int,
    size: int,
    *,
    generator: torch.Generator | None = None,
    flips: bool = True,
) -> Tensor:
    """``n`` random ``size × size`` crops from a list of ``(1, C, H, W)`` images.

    Each crop picks an image with probability proportional to its area, a uniform position,
    and (if ``flips``) a random horizontal flip.

    Parameters
    ----------
    images : sequence of torch.Tensor
        Source images, each at least ``size`` in height and width.
    n : int
        Number of crops.
    size : int
        Crop side.
    generator : torch.Generator, optional
        Source of randomness.
    flips : bool
        Random horizontal flips.

    Returns
    -------
    torch.Tensor
        ``(n, C, size, size)``.
    """
    if not images:
        raise ValueError("no images to crop from")
    for im in images:
        if im.shape[-1] < size or im.shape[-2] < size:
            raise ValueError(f"image {tuple(im.shape)} is smaller than the crop size {size}")
    areas = torch.tensor([float(im.shape[-1] * im.shape[-2]) for im in images], dtype=torch.float64)
    which = torch.multinomial(areas / areas.sum(), n, replacement=True, generator=generator)
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    out = []
    for k in range(n):  # one slice per crop; n is a batch size, not a pixel count
        im = images[int(which[k])]
        top = math.floor(float(u[k, 0]) * (im.shape[-2] - size + 1))
        left = math.floor(float(u[k, 1]) * (im.shape[-1] - size + 1))
        crop = im[0, :, top : top + size, left : left + size]
        if flips and float(u[k, 2]) < 0.5:
            crop = crop.flip(-1)
        out.append(crop)
    return torch.stack(out)
