"""Training images: scikit-image's lossless photographs, dead-leaves images, random crops.

The default models are trained on the lossless photographs that scikit-image ships
(:data:`TRAIN_PHOTOS`) and on synthetic dead-leaves images; evaluation uses other images
(:data:`EVAL_PHOTOS`), so the reported numbers are on images the models never saw.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "EVAL_PHOTOS",
    "TRAIN_PHOTOS",
    "as_image_list",
    "dead_leaves",
    "folder_photos",
    "photo",
    "random_crops",
    "training_photos",
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


def as_image_list(images: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """Normalise images to a list of floating ``(C, H, W)`` tensors.

    Parameters
    ----------
    images : torch.Tensor or sequence of torch.Tensor
        ``(N, C, H, W)``, one ``(C, H, W)``, or a list of ``(C, H, W)`` or ``(1, C, H, W)``.

    Returns
    -------
    list of torch.Tensor
        The images, ``(C, H, W)`` each.
    """
    if isinstance(images, Tensor):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W) or a list of (C, H, W), got {tuple(images.shape)}")
        return list(images)
    out = [im[0] if isinstance(im, Tensor) and im.ndim == 4 and im.shape[0] == 1 else im for im in images]
    if not out:
        raise ValueError("images must not be empty")
    for im in out:
        if not isinstance(im, Tensor) or im.ndim != 3 or not im.is_floating_point():
            raise ValueError("every image must be a floating (C, H, W) tensor")
    return out


def training_photos() -> list[Tensor]:
    """The :data:`TRAIN_PHOTOS` at full size and halved (2×2 means): the default models' data.

    Returns
    -------
    list of torch.Tensor
        Ten ``(1, 3, H, W)`` images in ``[0, 1]``, the full-size ones first.
    """
    full = [photo(name) for name in TRAIN_PHOTOS]
    return full + [torch.nn.functional.avg_pool2d(x, 2) for x in full]


def folder_photos(folder: str | os.PathLike[str], *, min_size: int = 64) -> list[Tensor]:
    """Every PNG photograph of a folder as ``(1, 3, H, W)`` in ``[0, 1]`` (sorted by name).

    The training scripts read the ``train/`` split that ``scripts/fetch_photos.py`` writes.

    Parameters
    ----------
    folder : path
        The folder.
    min_size : int
        Photographs with a side shorter than this are skipped.

    Returns
    -------
    list of torch.Tensor
        The photographs.

    Raises
    ------
    ValueError
        If the folder holds no usable photograph (the message says how to fetch them).
    """
    from opkit.images import load_image

    files = sorted(Path(folder).glob("*.png"))
    images = [load_image(f, mode="RGB") for f in files]
    images = [im for im in images if min(im.shape[-2:]) >= min_size]
    if not images:
        raise ValueError(
            f"no photographs of at least {min_size}² pixels in {folder}: "
            "run scripts/fetch_photos.py to fetch the training photographs"
        )
    return images


def random_crops(
    images: Tensor | Sequence[Tensor],
    size: int | tuple[int, int],
    batch: int,
    generator: torch.Generator,
    *,
    flips: bool = False,
) -> Tensor:
    """Draw ``batch`` random crops (image chosen uniformly, then a uniform offset).

    Parameters
    ----------
    images : torch.Tensor or sequence of torch.Tensor
        ``(N, C, H, W)`` or a list of ``(C, H, W)`` images of any sizes at least ``size``.
    size : int or (int, int)
        Crop height and width.
    batch : int
        Number of crops.
    generator : torch.Generator
        A CPU generator for the indices and offsets.
    flips : bool
        Also flip each crop horizontally with probability 1/2.

    Returns
    -------
    torch.Tensor
        ``(batch, C, h, w)`` on the images' device.
    """
    ims = as_image_list(images)
    ch, cw = (size, size) if isinstance(size, int) else size
    for im in ims:
        if im.shape[-2] < ch or im.shape[-1] < cw:
            raise ValueError(f"crop size {(ch, cw)} exceeds an image of size {tuple(im.shape[-2:])}")
    idx = torch.randint(0, len(ims), (batch,), generator=generator).tolist()
    u = torch.rand((batch, 3 if flips else 2), generator=generator, dtype=torch.float64).tolist()
    crops = []
    for k, (a, b, *f) in zip(idx, u, strict=True):  # one slice per crop, not per pixel
        im = ims[k]
        i = int(a * (im.shape[-2] - ch + 1))
        j = int(b * (im.shape[-1] - cw + 1))
        crop = im[:, i : i + ch, j : j + cw]
        crops.append(crop.flip(-1) if f and f[0] < 0.5 else crop)
    return torch.stack(crops)
