"""Image quality metrics on ``(B, C, H, W)`` tensors in ``[0, 1]``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["bef", "mse", "psnr", "psnr_b", "ssim"]


def mse(x: Tensor, ref: Tensor) -> Tensor:
    """Mean squared error per image.

    Parameters
    ----------
    x, ref : torch.Tensor
        Batches of the same shape ``(B, C, H, W)``.

    Returns
    -------
    torch.Tensor
        Shape ``(B,)``, in float64.
    """
    if x.shape != ref.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}")
    d = x.to(torch.float64) - ref.to(torch.float64)
    return d.pow(2).flatten(1).mean(1)


def psnr(x: Tensor, ref: Tensor, *, data_range: float = 1.0) -> Tensor:
    r"""Peak signal-to-noise ratio per image, :math:`10 \log_{10}(R^2 / \mathrm{MSE})` in dB.

    Parameters
    ----------
    x, ref : torch.Tensor
        Batches of the same shape ``(B, C, H, W)``.
    data_range : float
        The peak value ``R`` (1 for images in ``[0, 1]``).

    Returns
    -------
    torch.Tensor
        Shape ``(B,)``, float64; ``inf`` where the images are identical.
    """
    return 10.0 * torch.log10(data_range**2 / mse(x, ref))


def _gaussian_window(sigma: float, radius: int, like: Tensor) -> Tensor:
    r = torch.arange(-radius, radius + 1, dtype=torch.float64, device=like.device)
    w = torch.exp(-0.5 * (r / sigma) ** 2)
    return (w / w.sum()).to(like.dtype)


def _blur_valid(x: Tensor, w: Tensor) -> Tensor:
    """Separable correlation with ``w`` along H and W, 'valid' region only, per channel."""
    b, c, h, wd = x.shape
    k = w.numel()
    y = torch.nn.functional.conv2d(x.reshape(b * c, 1, h, wd), w.view(1, 1, k, 1))
    y = torch.nn.functional.conv2d(y, w.view(1, 1, 1, k))
    return y.view(b, c, h - k + 1, wd - k + 1)


def ssim(x: Tensor, ref: Tensor, *, data_range: float = 1.0, sigma: float = 1.5) -> Tensor:
    r"""Structural similarity (Wang et al. 2004) per image, averaged over channels.

    Local statistics use a Gaussian window of standard deviation ``sigma`` truncated at
    :math:`3.5\sigma` (11 taps for 1.5), population covariances, :math:`K_1 = 0.01`,
    :math:`K_2 = 0.03`, and the mean over the window positions fully inside the image — the
    conventions of ``skimage.metrics.structural_similarity(gaussian_weights=True,
    use_sample_covariance=False)``, which the tests check against:

    .. math::

       \mathrm{SSIM} = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
                            {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}.

    Parameters
    ----------
    x, ref : torch.Tensor
        Batches of the same shape ``(B, C, H, W)``, ``H, W ≥ 11``.
    data_range : float
        Dynamic range ``L`` (1 for images in ``[0, 1]``); :math:`C_i = (K_i L)^2`.
    sigma : float
        Standard deviation of the Gaussian window.

    Returns
    -------
    torch.Tensor
        Shape ``(B,)``, float64.
    """
    if x.shape != ref.shape or x.ndim != 4:
        raise ValueError(
            f"expected two (B, C, H, W) batches of one shape, got {tuple(x.shape)}, {tuple(ref.shape)}"
        )
    a, b = x.to(torch.float64), ref.to(torch.float64)
    radius = int(3.5 * sigma + 0.5)
    if min(a.shape[-2:]) < 2 * radius + 1:
        raise ValueError(f"images must be at least {2 * radius + 1} pixels in height and width")
    w = _gaussian_window(sigma, radius, a)
    mu_a, mu_b = _blur_valid(a, w), _blur_valid(b, w)
    va = _blur_valid(a * a, w) - mu_a**2
    vb = _blur_valid(b * b, w) - mu_b**2
    cov = _blur_valid(a * b, w) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return s.flatten(1).mean(1)


def _bef_channels(x: Tensor, block: int, data_range: float) -> Tensor:
    """Blocking effect factor of each channel, ``(B, C)``."""
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got {tuple(x.shape)}")
    a = x.to(torch.float64) * (255.0 / data_range)
    h, w = a.shape[-2:]
    dh = (a[..., :, 1:] - a[..., :, :-1]) ** 2  # pairs (j, j+1) along W
    dv = (a[..., 1:, :] - a[..., :-1, :]) ** 2
    col_b = (torch.arange(1, w, device=a.device) % block) == 0  # the pair straddles a boundary
    row_b = (torch.arange(1, h, device=a.device) % block) == 0
    sum_b = dh[..., :, col_b].sum((-2, -1)) + dv[..., row_b, :].sum((-2, -1))
    sum_c = dh[..., :, ~col_b].sum((-2, -1)) + dv[..., ~row_b, :].sum((-2, -1))
    n_b = h * int(col_b.sum()) + w * int(row_b.sum())
    n_c = h * int((~col_b).sum()) + w * int((~row_b).sum())
    eta = math.log2(block) / math.log2(min(h, w)) if min(h, w) > 1 else 0.0
    return eta * (sum_b / max(n_b, 1) - sum_c / max(n_c, 1)).clamp_min(0.0)


def bef(x: Tensor, *, block: int = 8, data_range: float = 1.0) -> Tensor:
    r"""Blocking effect factor (Yim & Bovik 2011) per image, averaged over channels.

    With :math:`D_B` the mean squared difference of horizontally and vertically adjacent pixels
    that straddle a block boundary and :math:`D_B^c` that of all other adjacent pairs,

    .. math::

       \mathrm{BEF} = \eta\,\max(D_B - D_B^c, 0), \qquad
       \eta = \frac{\log_2 B}{\log_2 \min(H, W)},

    in the units of ``data_range`` scaled to 255 (the convention of the PSNR-B paper).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` images.
    block : int
        Block size (8 for JPEG).
    data_range : float
        Value range of ``x`` (1 for ``[0, 1]``); pixel values are rescaled to ``[0, 255]``.

    Returns
    -------
    torch.Tensor
        Shape ``(B,)``, float64.
    """
    return _bef_channels(x, block, data_range).mean(1)


def psnr_b(x: Tensor, ref: Tensor, *, block: int = 8, data_range: float = 1.0) -> Tensor:
    r"""PSNR-B (Yim & Bovik 2011): PSNR with the blocking effect factor of ``x`` added to the MSE.

    .. math::

       \mathrm{PSNR\text{-}B} = 10\log_{10}\frac{255^2}{\mathrm{MSE}(x, \mathrm{ref}) + \mathrm{BEF}(x)}

    with both terms in 0..255 units, per channel, then averaged over channels.

    Parameters
    ----------
    x : torch.Tensor
        Restored or decoded images ``(B, C, H, W)``.
    ref : torch.Tensor
        Ground truth of the same shape.
    block : int
        Block size (8 for JPEG).
    data_range : float
        Value range (1 for ``[0, 1]``).

    Returns
    -------
    torch.Tensor
        Shape ``(B,)``, float64, in dB.
    """
    if x.shape != ref.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}")
    s = 255.0 / data_range
    d = (x.to(torch.float64) - ref.to(torch.float64)) * s
    mse_c = d.pow(2).mean((-2, -1))  # (B, C)
    bef_c = _bef_channels(x, block, data_range)
    return (10.0 * torch.log10(255.0**2 / (mse_c + bef_c))).mean(1)
