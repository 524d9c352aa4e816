"""The bundled default DDRM prior: loads offline and denoises photographs it never saw."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import solvers.methods.driftrec
from opkit.metrics import psnr
from solvers import load_prior
from solvers.common.data import photo
from solvers.priors import DEFAULT_PRIOR_DIR


def test_default_prior_is_bundled_and_loads_offline() -> None:
    assert (DEFAULT_PRIOR_DIR / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    prior = load_prior("default")
    assert prior.alphas_cumprod.numel() == 1000
    assert sum(p.numel() for p in prior.net.parameters()) < 10_000_000  # under ~40 MB in float32


def test_default_prior_denoises_a_held_out_photograph() -> None:
    prior = load_prior("default")
    x = photo("rocket")[..., 200:264, 300:364]  # not a training image
    sigma = 25 / 255
    y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    a = prior.alphas_cumprod.to(torch.float64)
    t = int(torch.argmin(((1 - a) / a).sqrt().sub(2 * sigma).abs()))
    at = float(a[t])
    x_t = at**0.5 * (2 * y - 1)
    x0 = ((x_t - (1 - at) ** 0.5 * prior(x_t, t)) / at**0.5 + 1) / 2
    gain = float(psnr(x0.clamp(0, 1), x)[0] - psnr(y.clamp(0, 1), x)[0])
    assert gain > 3.0, gain  # measured +6 dB or more for the shipped model (docs/models.rst)


def test_default_driftrec_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(solvers.sdes.score_models, "DEFAULT_DRIFTREC_DIR", tmp_path / "absent")
    with pytest.raises(ValueError, match="no default DriftRec model is bundled"):
        solvers.load_driftrec("default")


def test_default_driftrec_is_bundled_and_deblocks_a_held_out_jpeg() -> None:
    from opkit import create
    from opkit.metrics import bef

    model = solvers.load_driftrec("default")
    assert model.num_parameters() < 5_000_000  # with the prior, well under the ~40 MB budget
    assert model.sde.name == "ouve"
    x = photo("camera")[..., 200:264, 200:264]  # not a training image
    jpeg = create("jpeg", shape=(3, 64, 64), quality=10)
    y = jpeg.decode(jpeg(x))
    out = solvers.driftrec(y, model, steps=30, generator=torch.Generator().manual_seed(0)).clamp(0, 1)
    assert out.shape == y.shape
    assert float(bef(out)[0]) < 0.5 * float(bef(y)[0])  # blocking removed (measured: docs/models.rst)
