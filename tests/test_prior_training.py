"""Training the DDRM prior: the loss falls, checkpoints load as priors and resume exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from solvers import load_prior
from solvers.common.data import dead_leaves
from solvers.priors.training import train_prior


def _images() -> list[torch.Tensor]:
    return list(dead_leaves(4, 32, generator=torch.Generator().manual_seed(5)).unsqueeze(1))


def test_training_lowers_the_loss_and_saves_a_loadable_prior(tmp_path: Path) -> None:
    torch.manual_seed(0)
    res = train_prior(
        tmp_path / "m",
        _images(),
        preset="tiny",
        steps=60,
        batch_size=8,
        crop_size=16,
        lr=2e-3,
        warmup=5,
        checkpoint_every=0,
        progress=False,
        dead_leaves_fraction=0.5,
    )
    first, last = sum(res["losses"][:10]) / 10, sum(res["losses"][-10:]) / 10
    assert last < 0.7 * first, (first, last)
    prior = load_prior(tmp_path / "m")
    assert prior.alphas_cumprod.numel() == 1000
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    eps = prior(x, 500)
    assert eps.shape == x.shape and torch.isfinite(eps).all()


def test_resume_continues_bit_for_bit(tmp_path: Path) -> None:
    kw = dict(preset="tiny", batch_size=4, crop_size=16, warmup=3, progress=False, checkpoint_every=0)
    train_prior(tmp_path / "a", _images(), steps=6, **kw)  # type: ignore[arg-type]
    train_prior(tmp_path / "b", _images(), steps=3, **kw)  # type: ignore[arg-type]
    res = train_prior(tmp_path / "b", _images(), steps=6, **kw)  # type: ignore[arg-type]
    assert res["step"] == 6 and len(res["losses"]) == 6
    a = load_file(str(tmp_path / "a" / "raw_unet.safetensors"))
    b = load_file(str(tmp_path / "b" / "raw_unet.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sample_timesteps_focus_puts_the_share_on_the_low_range() -> None:
    from solvers.priors.training import sample_timesteps

    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(20000, 1000, g, focus=(99, 0.5))
    low = float((t <= 99).double().mean())
    # P(t <= 99) = 0.5 + 0.5 * 100/1000 = 0.55; 20000 draws: standard error 0.0035
    assert abs(low - 0.55) < 0.015, low
    assert int(t.min()) >= 0 and int(t.max()) <= 999
    plain = sample_timesteps(20000, 1000, torch.Generator().manual_seed(0))
    assert abs(float((plain <= 99).double().mean()) - 0.1) < 0.015
    with pytest.raises(ValueError, match="focus"):
        sample_timesteps(4, 1000, g, focus=(1000, 0.5))
    with pytest.raises(ValueError, match="focus"):
        sample_timesteps(4, 1000, g, focus=(10, 1.5))


def test_init_from_starts_with_the_saved_weights(tmp_path: Path) -> None:
    kw = dict(preset="tiny", batch_size=4, crop_size=16, warmup=3, progress=False, checkpoint_every=0)
    train_prior(tmp_path / "a", _images(), steps=2, **kw)  # type: ignore[arg-type]
    # lr=0: the new run's weights stay those it started from
    train_prior(tmp_path / "b", _images(), steps=1, lr=0.0, init_from=tmp_path / "a", **kw)  # type: ignore[arg-type]
    a = load_file(str(tmp_path / "a" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "raw_unet.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fresh = load_file(str(tmp_path / "a" / "raw_unet.safetensors"))
    assert not all(torch.equal(a[k], fresh[k]) for k in a)  # the EMA differs from the raw weights


def test_grey_fraction_turns_photograph_crops_grey(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import solvers.priors.training as pt

    seen: list[torch.Tensor] = []
    real = pt.prior_loss

    def spy(net: object, x0: torch.Tensor, *args: object) -> torch.Tensor:
        seen.append(x0.clone())
        return real(net, x0, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(pt, "prior_loss", spy)
    colour = [torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    kw = dict(preset="tiny", batch_size=8, crop_size=16, progress=False, checkpoint_every=0)
    train_prior(tmp_path / "g", colour, steps=2, grey_fraction=1.0, dead_leaves_fraction=0.0, **kw)  # type: ignore[arg-type]
    for x0 in seen:
        assert torch.allclose(x0[:, 0], x0[:, 1]) and torch.allclose(x0[:, 1], x0[:, 2])
    seen.clear()
    train_prior(tmp_path / "c", colour, steps=1, grey_fraction=0.0, dead_leaves_fraction=0.0, **kw)  # type: ignore[arg-type]
    assert not torch.allclose(seen[0][:, 0], seen[0][:, 1])
    with pytest.raises(ValueError, match="grey_fraction"):
        train_prior(tmp_path / "x", colour, steps=1, grey_fraction=1.5, **kw)  # type: ignore[arg-type]
