"""Image quality metrics on ``(B, C, H, W)`` tensors in ``[0, 1]``."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mse", "psnr"]


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
