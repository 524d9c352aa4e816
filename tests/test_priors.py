"""Priors: schedules, the diffusers adapter, offline safetensors-only loading, exact priors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import solvers
from solvers.oracles import GaussianPrior, OraclePrior
from solvers.priors import (
    DiffusionPrior,
    UNetPrior,
    linear_alphas_cumprod,
    load_prior,
    uniform_timesteps,
)
from solvers.priors.unet import MAX_BATCH_PIXELS, batch_chunk

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def tiny_unet(out_channels: int = 3, seed: int = 0) -> Any:
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=out_channels,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    ).eval()


# --------------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------------


def test_linear_schedule_is_ddpm_s() -> None:
    a = linear_alphas_cumprod()
    betas = 1e-4 + (0.02 - 1e-4) * torch.arange(1000, dtype=F64) / 999
    assert a.dtype == F64 and a.shape == (1000,)
    torch.testing.assert_close(a, torch.cumprod(1 - betas, 0), rtol=1e-14, atol=0)
    assert float(a[0]) == pytest.approx(1 - 1e-4, abs=1e-15)
    assert bool((a[1:] < a[:-1]).all())
    with pytest.raises(ValueError, match="num_timesteps"):
        linear_alphas_cumprod(0)
    with pytest.raises(ValueError, match="beta_start"):
        linear_alphas_cumprod(10, 0.5, 0.1)


def test_uniform_timesteps() -> None:
    assert uniform_timesteps(1000, 20) == list(range(950, -1, -50))
    assert uniform_timesteps(1000, 3) == [666, 333, 0]
    ts = uniform_timesteps(1000, 20, t_start=300)
    assert ts[0] == 300 and ts[-1] == 0 and len(ts) == 20 and len(set(ts)) == 20
    assert uniform_timesteps(1000, 1, t_start=7) == [7]
    assert uniform_timesteps(10, 10) == list(range(9, -1, -1))
    for args, word in [
        ((1000, 0), "steps"),
        ((10, 11), "steps"),
        ((1000, 5, 2), "t_start"),
        ((1000, 5, 1000), "t_start"),
    ]:
        with pytest.raises(ValueError, match=word):
            uniform_timesteps(*args)


# --------------------------------------------------------------------------------------------
# exact priors
# --------------------------------------------------------------------------------------------


def _tweedie(prior: Any, x_t: Tensor, t: int) -> Tensor:
    a = float(prior.alphas_cumprod[t])
    return (x_t - math.sqrt(1 - a) * prior(x_t, t)) / math.sqrt(a)


def test_oracle_prior_predicts_the_image() -> None:
    x0 = torch.rand(2, 3, 4, 4, dtype=F64)
    prior = OraclePrior(x0)
    assert isinstance(prior, DiffusionPrior)
    x_t = torch.randn(6, 3, 4, 4, dtype=F64)
    for t in (0, 500, 999):
        torch.testing.assert_close(_tweedie(prior, x_t, t), (2 * x0 - 1).repeat_interleave(3, 0))
    with pytest.raises(ValueError, match="multiple"):
        prior(torch.randn(3, 3, 4, 4, dtype=F64), 5)


def test_gaussian_prior_is_the_mmse_denoiser() -> None:
    """Isotropic case in closed form: E[x₀|x_t] = μ + √ᾱ v/(ᾱ v + 1 − ᾱ) (x_t − √ᾱ μ)."""
    v = 0.3
    mean = torch.linspace(-0.5, 0.5, 12, dtype=F64).view(3, 2, 2)
    prior = GaussianPrior(mean, v * torch.eye(12, dtype=F64))
    x_t = torch.randn(4, 3, 2, 2, dtype=F64)
    for t in (0, 250, 999):
        a = float(prior.alphas_cumprod[t])
        want = mean + math.sqrt(a) * v / (a * v + 1 - a) * (x_t - math.sqrt(a) * mean)
        torch.testing.assert_close(prior.denoise(x_t, t), want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(_tweedie(prior, x_t, t), want, rtol=1e-10, atol=1e-10)
    mixed = prior.denoise(x_t, torch.tensor([0, 250, 999, 250]))  # per-sample timesteps
    torch.testing.assert_close(mixed[2], prior.denoise(x_t[2:3], 999)[0])


# --------------------------------------------------------------------------------------------
# diffusers adapter
# --------------------------------------------------------------------------------------------


def test_unet_prior_calls_the_network() -> None:
    net = tiny_unet()
    prior = UNetPrior(net, linear_alphas_cumprod())
    x = torch.randn(2, 3, 8, 8)
    eps = prior(x, torch.tensor([3, 3]))
    with torch.no_grad():
        want = net(x, torch.tensor([3, 3])).sample
    torch.testing.assert_close(eps, want)
    assert prior(x.double(), 3).dtype == F64  # cast to the network's dtype and back
    assert "UNet2DModel" in repr(prior)


def test_unet_prior_pads_odd_sizes_by_reflection() -> None:
    """Sides that are not multiples of the U-Net's down-sampling are reflected out and cropped back."""
    net = tiny_unet()
    prior = UNetPrior(net, linear_alphas_cumprod())
    assert prior.multiple == 2
    x = torch.randn(1, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    eps = prior(x, 5)
    with torch.no_grad():
        want = net(torch.nn.functional.pad(x, (0, 1, 0, 1), mode="reflect"), torch.tensor([5])).sample
    assert eps.shape == x.shape
    torch.testing.assert_close(eps, want[..., :7, :9])
    one = torch.randn(1, 3, 1, 4)  # a side of 1 cannot be reflected: replicated instead
    assert prior(one, 5).shape == one.shape
    with pytest.raises(ValueError, match="multiple"):
        UNetPrior(net, linear_alphas_cumprod(), multiple=0)


def test_unet_prior_learned_variance_takes_first_half() -> None:
    net = tiny_unet(out_channels=6)
    prior = UNetPrior(net, linear_alphas_cumprod())
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        full = net(x, torch.tensor([10])).sample
    torch.testing.assert_close(prior(x, 10), full[:, :3])


def test_batch_chunk_halves_until_the_call_fits() -> None:
    assert batch_chunk(8, 64 * 64, None) == 8
    assert batch_chunk(8, 64 * 64, 8 * 64 * 64) == 8  # exactly the limit: one call
    assert batch_chunk(8, 64 * 64, 8 * 64 * 64 - 1) == 4
    assert batch_chunk(8, 64 * 64, 2 * 64 * 64) == 2
    assert batch_chunk(5, 10, 20) == 2  # 5 -> 3 -> 2
    assert batch_chunk(5, 10, 30) == 3
    assert batch_chunk(2, 10**7, 2**20) == 1  # one image above the limit still runs
    assert batch_chunk(1, 10**7, 1) == 1
    with pytest.raises(ValueError, match="max_batch_pixels"):
        batch_chunk(4, 16, 0)
    # the README's main job: 8 samples of 432x640 (padded) run in calls of two
    assert batch_chunk(8, 432 * 640, MAX_BATCH_PIXELS) == 2
    assert batch_chunk(8, 256 * 256, MAX_BATCH_PIXELS) == 8


class _Recorder(torch.nn.Module):
    """A per-image 'network' that records the batch of every call: x·t + label."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones((), dtype=F64))
        self.batches: list[int] = []

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        self.batches.append(x.shape[0])
        out = self.scale * x * t.to(x.dtype).view(-1, 1, 1, 1)
        if class_labels is not None:
            out = out + class_labels.to(x.dtype).view(-1, 1, 1, 1)
        return out


def test_unet_prior_splits_a_large_batch_and_slices_per_image_keywords() -> None:
    net = _Recorder()
    prior = UNetPrior(net, linear_alphas_cumprod())
    assert prior.max_batch_pixels == MAX_BATCH_PIXELS
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 4, 4, generator=g, dtype=F64)
    t = torch.tensor([1, 2, 3, 4, 5])
    labels = torch.tensor([10, 20, 30, 40, 50])
    want = x * t.to(F64).view(-1, 1, 1, 1) + labels.to(F64).view(-1, 1, 1, 1)
    prior.max_batch_pixels = 2 * 16  # two 4x4 images per call
    torch.testing.assert_close(prior(x, t, class_labels=labels), want, rtol=0, atol=0)
    assert net.batches == [2, 2, 1]
    net.batches.clear()
    prior.max_batch_pixels = None
    torch.testing.assert_close(prior(x, t, class_labels=labels), want, rtol=0, atol=0)
    assert net.batches == [5]
    # autograd flows through every part (DPS)
    net.batches.clear()
    prior.max_batch_pixels = 16
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.eps_with_grad(xg, t).sum(), xg)
    assert net.batches == [1, 1, 1, 1, 1]
    torch.testing.assert_close(grad, t.to(F64).view(-1, 1, 1, 1).expand_as(x), rtol=0, atol=0)


def test_unet_prior_split_agrees_with_one_call_on_a_unet() -> None:
    net = tiny_unet().double()
    prior = UNetPrior(net, linear_alphas_cumprod())
    x = torch.randn(4, 3, 8, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    whole = prior(x, 300)
    prior.max_batch_pixels = 8 * 6
    torch.testing.assert_close(prior(x, 300), whole, rtol=1e-12, atol=1e-12)


class _Const(torch.nn.Module):
    """A 'network' that returns a fixed tensor, for the parametrisation conversions."""

    def __init__(self, value: Tensor) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(value, requires_grad=False)

    def forward(self, x: Tensor, t: Tensor, return_dict: bool = False, **kw: Any) -> tuple[Tensor]:
        return (self.value.expand_as(x),)


@pytest.mark.parametrize("kind", ["sample", "v_prediction"])
def test_unet_prior_converts_parametrisations(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 3, 4, 4, generator=g, dtype=F64) * 2 - 1
    eps = torch.randn(1, 3, 4, 4, generator=g, dtype=F64)
    abar = linear_alphas_cumprod()
    t = 400
    a = float(abar[t])
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    out = x0 if kind == "sample" else math.sqrt(a) * eps - math.sqrt(1 - a) * x0
    prior = UNetPrior(_Const(out), abar, prediction_type=kind)
    torch.testing.assert_close(prior(x_t, t), eps, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="prediction_type"):
        UNetPrior(_Const(out), abar, prediction_type="score")


# --------------------------------------------------------------------------------------------
# load_prior
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _save_flat(path: Path, net: Any) -> None:
    from diffusers import DDPMScheduler

    net.save_pretrained(path, safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_pretrained(path)


def test_load_flat_layout(tmp_path: Path) -> None:
    net = tiny_unet()
    _save_flat(tmp_path, net)
    prior = load_prior(tmp_path)
    assert isinstance(prior, UNetPrior) and isinstance(prior, DiffusionPrior)
    torch.testing.assert_close(prior.alphas_cumprod, linear_alphas_cumprod(), rtol=1e-6, atol=0)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = net(x, torch.tensor([7, 7])).sample
    torch.testing.assert_close(prior(x, 7), want)
    assert solvers.load_prior is load_prior


def test_load_pipeline_layout_and_run_ddrm(tmp_path: Path) -> None:
    from diffusers import DDPMPipeline, DDPMScheduler

    net = tiny_unet(seed=1)
    DDPMPipeline(unet=net, scheduler=DDPMScheduler()).save_pretrained(tmp_path)
    assert (tmp_path / "unet").is_dir() and (tmp_path / "scheduler").is_dir()
    prior = load_prior(str(tmp_path), dtype=torch.float64)
    import opkit

    op = opkit.create("denoise", shape=(3, 8, 8))
    y = torch.rand(1, 3, 8, 8, dtype=F64)
    out = solvers.ddrm(op, y, prior, steps=3, sigma_y=0.1, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 8, 8) and out.dtype == F64
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_load_prior_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import solvers.priors.loading

    monkeypatch.setattr(solvers.priors.loading, "DEFAULT_PRIOR_DIR", tmp_path / "absent")
    with pytest.raises(ValueError, match="no default DDRM prior is bundled"):
        load_prior("default")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_prior(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=re.escape("config.json")):
        load_prior(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        load_prior(tmp_path / "file.txt")

    flat = tmp_path / "flat"
    _save_flat(flat, tiny_unet())
    (flat / "scheduler_config.json").rename(flat / "other.json")
    with pytest.raises(FileNotFoundError, match=re.escape("scheduler_config.json")):
        load_prior(flat)
    (flat / "other.json").rename(flat / "scheduler_config.json")

    weights = flat / "diffusion_pytorch_model.safetensors"
    weights.rename(flat / "elsewhere.safetensors")
    with pytest.raises(FileNotFoundError, match=re.escape("diffusion_pytorch_model.safetensors")):
        load_prior(flat)
    (flat / "diffusion_pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ValueError, match="pickle"):
        load_prior(flat)
    (flat / "diffusion_pytorch_model.bin").unlink()
    (flat / "elsewhere.safetensors").rename(weights)

    cfg = json.loads((flat / "config.json").read_text())
    cfg["_class_name"] = "UNet2DConditionModel"
    (flat / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="UNet2DConditionModel"):
        load_prior(flat)


def test_loaded_prior_runs_channels_last_on_cpu_and_agrees(tmp_path: Path) -> None:
    net = tiny_unet(seed=2)
    _save_flat(tmp_path, net)
    prior = load_prior(tmp_path)
    assert prior.channels_last
    assert next(prior.net.parameters()).dim() != 4 or any(
        p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in prior.net.parameters()
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1
    )
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net(x, torch.tensor([300, 300])).sample
    got = prior(x, 300)
    assert got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    prior.channels_last_(False)
    assert not prior.channels_last
    torch.testing.assert_close(prior(x, 300), want)


def test_ddrm_settings_file_is_read_and_checked(tmp_path: Path) -> None:
    _save_flat(tmp_path, tiny_unet())
    assert load_prior(tmp_path).settings == {}
    (tmp_path / "ddrm_settings.json").write_text(
        json.dumps({"_note": "tuned on validation photographs", "jpeg": {"t_start": 45, "num_samples": 4}})
    )
    assert load_prior(tmp_path).settings == {"jpeg": {"t_start": 45, "num_samples": 4}}
    (tmp_path / "ddrm_settings.json").write_text(json.dumps({"jpeg": {"temperature": 2}}))
    with pytest.raises(ValueError, match=r"ddrm_settings\.json.*'jpeg'"):
        load_prior(tmp_path)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"jpeg": {"steps": "8"}}, "'jpeg': 'steps' must be a positive integer, got '8'"),
        ({"jpeg": {"eta": "high"}}, "'jpeg': 'eta' must be a number in [0, 1], got 'high'"),
        ({"jpeg": {"t_start": -1}}, "'jpeg': 't_start' must be an integer >= 0, got -1"),
        ({"jpeg": {"num_samples": True}}, "'jpeg': 'num_samples' must be a positive integer, got True"),
        ({"jpeg": {"eta_b": None}}, "'jpeg': 'eta_b' must be a number in [0, 1], got None"),
    ],
)
def test_ddrm_settings_of_the_wrong_type_are_refused_when_the_model_loads(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    _save_flat(tmp_path, tiny_unet())
    (tmp_path / "ddrm_settings.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError) as info:
        load_prior(tmp_path)
    assert str(info.value) == f"{tmp_path / 'ddrm_settings.json'}: {message}"


def test_deep_or_huge_json_in_a_model_folder_is_a_value_error(tmp_path: Path) -> None:
    _save_flat(tmp_path, tiny_unet())
    settings = tmp_path / "ddrm_settings.json"
    settings.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(ValueError, match=r"ddrm_settings\.json is not valid JSON: it is nested too deeply"):
        load_prior(tmp_path)
    settings.unlink()
    sched = tmp_path / "scheduler_config.json"
    cfg = json.loads(sched.read_text())
    sched.write_text(json.dumps({**cfg, "num_train_timesteps": 2 * 10**8}))
    with pytest.raises(ValueError, match=r"num_train_timesteps must be an integer in 1\.\.100000"):
        load_prior(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"layers_per_block": 100_000}, "layers_per_block=100000 in 2 blocks needs more tensors than the"),
        (
            {"block_out_channels": [10**6, 32]},
            "block_out_channels starts with 1000000, 'conv_in.weight' with",
        ),
        ({"layers_per_block": 2}, "it lacks 'down_blocks.0.resnets.1.norm1.weight'"),
        ({"down_block_types": ["Nope", "DownBlock2D"]}, "unsupported UNet2DModel configuration"),
    ],
)
def test_a_diffusers_config_that_cannot_fit_its_weights_is_refused_unbuilt(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    import time

    _save_flat(tmp_path, tiny_unet())
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), **change}))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape(message)):
        load_prior(tmp_path)
    assert time.perf_counter() - t0 < 5  # nothing of that size was built


def test_bundled_prior_ships_settings_for_every_builtin_operator() -> None:
    import opkit

    settings = load_prior("default").settings
    builtin = {
        "denoise",
        "inpaint",
        "sr_block",
        "sr_bicubic",
        "colorize",
        "blur",
        "conv2d",
        "cs",
        "jpeg",
        "quantize",
    }
    assert builtin <= set(opkit.available())
    assert set(settings) == builtin
