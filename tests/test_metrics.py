"""Metrics: PSNR, SSIM (against scikit-image), BEF and PSNR-B (against a direct loop)."""

from __future__ import annotations

import math

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from opkit.metrics import bef, psnr, psnr_b, ssim


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 40, 37, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_psnr_and_ssim_match_scikit_image() -> None:
    x, y = _pair()
    for i in range(2):
        ref_p = peak_signal_noise_ratio(x[i].numpy(), y[i].numpy(), data_range=1.0)
        ref_s = structural_similarity(
            y[i].numpy(),
            x[i].numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        assert math.isclose(float(psnr(y, x)[i]), ref_p, rel_tol=1e-12)
        assert math.isclose(float(ssim(y, x)[i]), ref_s, rel_tol=1e-10)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(x[..., :8, :8], x[..., :8, :8])


def _bef_loop(img: torch.Tensor, block: int) -> float:
    """Blocking effect factor of one (H, W) channel in 0..255, pair by pair."""
    a = img.to(torch.float64) * 255
    h, w = a.shape
    db, nb, dc, nc = 0.0, 0, 0.0, 0
    for i in range(h):
        for j in range(w - 1):
            d = float(a[i, j + 1] - a[i, j]) ** 2
            if (j + 1) % block == 0:
                db, nb = db + d, nb + 1
            else:
                dc, nc = dc + d, nc + 1
    for i in range(h - 1):
        for j in range(w):
            d = float(a[i + 1, j] - a[i, j]) ** 2
            if (i + 1) % block == 0:
                db, nb = db + d, nb + 1
            else:
                dc, nc = dc + d, nc + 1
    eta = math.log2(block) / math.log2(min(h, w))
    return eta * max(db / nb - dc / nc, 0.0)


def test_bef_and_psnr_b_match_the_definition() -> None:
    g = torch.Generator().manual_seed(1)
    # constant 8×8 blocks: all the variation sits on block boundaries
    blocks = torch.rand(1, 2, 3, 4, generator=g, dtype=torch.float64)
    x = blocks.repeat_interleave(8, -2).repeat_interleave(8, -1)[..., :21, :30]
    expected = [_bef_loop(x[0, c], 8) for c in range(2)]
    assert expected[0] > 0
    torch.testing.assert_close(bef(x), torch.tensor([sum(expected) / 2], dtype=torch.float64))
    ref = x + 0.01
    mse_c = ((x - ref) * 255).pow(2).mean((-2, -1))[0]
    want = sum(10 * math.log10(255**2 / (float(mse_c[c]) + expected[c])) for c in range(2)) / 2
    assert math.isclose(float(psnr_b(x, ref)[0]), want, rel_tol=1e-12)
    # no blocking: BEF 0 and PSNR-B equals PSNR
    smooth = torch.linspace(0, 1, 32, dtype=torch.float64).view(1, 1, 1, 32).expand(1, 1, 32, 32)
    assert float(bef(smooth)[0]) == 0.0
    assert math.isclose(float(psnr_b(smooth, smooth * 0.9)[0]), float(psnr(smooth, smooth * 0.9)[0]))
