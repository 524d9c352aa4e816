"""DriftRec training: the DSM loss, pair generation from any operator, a short run, checkpoints."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import Tensor

import opkit
import solvers
from solvers.sdes import OUVE, TSDVE
from solvers.sdes.score_models import ScoreModel
from solvers.sdes.training import PairMaker, dsm_loss, random_crops, train_driftrec

pytestmark = pytest.mark.usefixtures("one_thread")


# a very small U-Net: two levels of 8 and 16 channels
TINY = {"block_out_channels": (8, 16), "norm_num_groups": 4}


class Quantize4(opkit.EncodeDecodeOperator[Tensor]):
    """Test-local encode/decode pair: 4-bit quantisation, Decode(k) = (k + 1/2)/16."""

    def encode(self, x: Tensor) -> Tensor:
        return torch.floor(x * 16).clamp(0, 15)

    def decode(self, y: Tensor) -> Tensor:
        return (y + 0.5) / 16


def _images(n: int = 4, size: int = 24, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


def test_dsm_loss_vanishes_for_the_exact_score_of_one_pair() -> None:
    """With one training pair the exact score is -(x_t - μ_t)/σ_t², and σ s + z = 0 identically."""
    sde = TSDVE()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(5, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.rand(5, 3, 8, 8, generator=g, dtype=torch.float64)

    class Oracle(torch.nn.Module):
        def forward(self, x: Tensor, yy: Tensor, t: Tensor) -> Tensor:
            return -(x - sde.mean(x0, yy, t)) / sde.std(t).reshape(-1, 1, 1, 1) ** 2

    assert float(dsm_loss(Oracle(), sde, x0, y, g)) < 1e-20

    class Zero(torch.nn.Module):
        def forward(self, x: Tensor, yy: Tensor, t: Tensor) -> Tensor:
            return torch.zeros_like(x)

    # a zero score leaves E|z|² = 1 per pixel
    assert float(dsm_loss(Zero(), sde, x0.repeat(20, 1, 1, 1), y.repeat(20, 1, 1, 1), g)) == pytest.approx(
        1.0, abs=0.05
    )


def test_pairs_from_encode_decode_and_linear_operators() -> None:
    x0 = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    q = Quantize4((3, 16, 16))
    torch.testing.assert_close(PairMaker(q)(x0), q.decode(q.encode(x0)))
    g = torch.Generator().manual_seed(2)
    y = PairMaker("denoise", sigma_y=0.1)(x0, generator=g)
    assert float((y - x0).std()) == pytest.approx(0.1, rel=0.1)
    y2 = PairMaker(opkit.create("denoise", shape=(3, 16, 16)), sigma_y=0.1)(
        x0, generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(y, y2)
    with pytest.raises(ValueError, match="shape"):
        PairMaker(opkit.create("denoise", shape=(3, 8, 8)))(x0)
    with pytest.raises(ValueError, match="registered name"):
        PairMaker(q, quality_range=(10, 20))
    with pytest.raises(ValueError, match="sigma_y"):
        PairMaker("denoise", sigma_y=-1.0)


@pytest.mark.skipif("jpeg" not in opkit.available(), reason="jpeg plugin not registered")
def test_pairs_from_jpeg_with_a_quality_per_image() -> None:
    x0 = _images(8, 16)
    maker = PairMaker("jpeg", quality_range=(5, 95))
    y = maker(x0, quality_generator=torch.Generator().manual_seed(0))
    assert y.shape == x0.shape and torch.isfinite(y).all()
    qs = torch.randint(5, 96, (8,), generator=torch.Generator().manual_seed(0))
    for k in range(8):  # each image was compressed at its own drawn quality
        op = opkit.create("jpeg", shape=(3, 16, 16), quality=int(qs[k]))
        torch.testing.assert_close(y[k : k + 1], op.pinv(op(x0[k : k + 1])))


def test_random_crops_are_seeded_and_in_bounds() -> None:
    ims = [torch.arange(3 * 20 * 30, dtype=torch.float32).reshape(3, 20, 30), torch.zeros(3, 16, 16)]
    a = random_crops(ims, 16, 10, torch.Generator().manual_seed(0))
    b = random_crops(ims, 16, 10, torch.Generator().manual_seed(0))
    assert a.shape == (10, 3, 16, 16) and torch.equal(a, b)
    with pytest.raises(ValueError, match="crop size"):
        random_crops(ims, 24, 1, torch.Generator())


def _train(**kw: Any) -> solvers.sdes.training.TrainResult:
    args: dict[str, Any] = {
        "model": ScoreModel.from_preset("tiny", OUVE(), seed=0, **TINY),
        "sigma_y": 0.1,
        "batch_size": 4,
        "crop_size": 16,
        "lr": 3e-3,
        "ema_decay": 0.9,
        "progress": False,
        "seed": 0,
    }
    args.update(kw)
    return train_driftrec(_images(), "denoise", **args)


def test_short_training_lowers_the_loss_and_saves_bit_exactly(tmp_path) -> None:
    tuned = {"denoise": {"grid_power": 0.5}}  # chosen for other weights: training drops them
    start = ScoreModel.from_preset("tiny", OUVE(), seed=0, settings=tuned, **TINY)
    res = _train(steps=100, checkpoint_dir=tmp_path / "ckpt", model=start)
    first, last = sum(res.losses[:25]) / 25, sum(res.losses[-25:]) / 25
    print(f"\nDSM loss: first 25 steps {first:.3f} -> last 25 steps {last:.3f}")
    assert len(res.losses) == 100 and last < 0.6 * first
    # the checkpoint directory loads (EMA weights) and reproduces the outputs bit for bit
    loaded = solvers.load_driftrec(tmp_path / "ckpt")
    raw = solvers.load_driftrec(tmp_path / "ckpt", ema=False)
    # both record the operator their pairs came from, and so does the checkpoint's driftrec.json
    assert res.model.trained_on == res.raw.trained_on == loaded.trained_on == "denoise"
    assert res.model.settings == res.raw.settings == loaded.settings == {}
    assert json.loads((tmp_path / "ckpt" / "driftrec.json").read_text())["trained_on"] == "denoise"
    g = torch.Generator().manual_seed(9)
    x, y, t = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g), torch.rand(2)
    with torch.no_grad():
        assert torch.equal(loaded(x, y, t), res.model(x, y, t))
        assert torch.equal(raw(x, y, t), res.raw(x, y, t))
        assert not torch.equal(loaded(x, y, t), raw(x, y, t))
    out = solvers.driftrec(y, loaded, sde="model", steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()


def test_resume_continues_bit_for_bit(tmp_path) -> None:
    straight = _train(steps=6)
    _train(steps=3, checkpoint_dir=tmp_path)
    resumed = _train(steps=6, checkpoint_dir=tmp_path, resume=True)
    assert resumed.losses == straight.losses
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight.raw.state_dict().values(), resumed.raw.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_training_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="steps"):
        _train(steps=0)
    with pytest.raises(ValueError, match="resume"):
        _train(steps=1, resume=True)
    with pytest.raises(ValueError, match="ema_decay"):
        _train(steps=1, ema_decay=1.0)
