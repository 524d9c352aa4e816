"""ADM (guided-diffusion) priors: same ε as an independent implementation, safe loading, presets, hub ids."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch

import solvers
from solvers.priors import UNetPrior, checkpoints, linear_alphas_cumprod, load_prior, save_prior
from solvers.priors.adm import ADMConfig, ADMUNet, adm_alphas_cumprod
from tests.adm_reference import diffunet_module, perturb, reference_unet

needs_reference = pytest.mark.skipif(
    diffunet_module() is None,
    reason="the reference implementation is DeepInverse's diffunet.py: pip install --no-deps deepinv",
)

# tiny networks (32 channels: the 32-group normalisation needs multiples of 32) at 32²
TINY = {
    "image_size": 32,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "16",
}
CONFIGS = {
    "learned-sigma,resblock-updown,head-channels": {
        **TINY,
        "learn_sigma": True,
        "resblock_updown": True,
        "num_head_channels": 16,
    },
    "fixed-sigma,conv-resample,heads,no-scale-shift": {**TINY, "num_heads": 2, "use_scale_shift_norm": False},
    "class-conditional,two-blocks,two-attention-levels": {
        **TINY,
        "channel_mult": "1,2,2",
        "num_res_blocks": 2,
        "attention_resolutions": "16,8",
        "class_cond": True,
        "learn_sigma": True,
    },
    "new-attention-order,heads-upsample": {
        **TINY,
        "attention_resolutions": "32,16",
        "use_new_attention_order": True,
        "num_heads": 4,
        "num_heads_upsample": 2,
    },
    "half-channel-mult,dropout": {
        **TINY,
        "num_channels": 64,
        "channel_mult": "0.5,1",
        "dropout": 0.1,
        "resblock_updown": True,
    },
}
T = torch.tensor([0, 500, 999])  # three timesteps, one per batch element


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's caches; stay offline."""
    monkeypatch.setenv("OPKIT_CACHE", str(tmp_path / "opkit-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _reference(config: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    cfg = ADMConfig.from_dict(config)
    network = ("channel_mult", "attention_resolutions", "noise_schedule", "diffusion_steps")
    kw = {k: v for k, v in config.items() if k not in network}
    return perturb(
        reference_unet(
            **{**kw, "channel_mult": cfg.channel_mults, "attention_resolutions": cfg.attention_resolutions}
        ),
        seed,
    )


def _inputs(config: dict[str, Any], size: int = 32) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, size, size, generator=g)
    labels = torch.tensor([1, 500, 999]) if config.get("class_cond") else None
    return x, labels


def _assert_same(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-5) -> None:
    assert got.shape == want.shape
    err = float((got - want).abs().max())
    scale = float(want.abs().max())
    assert scale > 0.1, "the reference output is degenerate"
    assert err <= rel * scale, f"max |Δ| = {err:.3g} for outputs up to {scale:.3g}"


def _tiny_adm_file(folder: Path, config: dict[str, Any], name: str = "model.pt") -> tuple[Path, Any]:
    """A ``.pt`` state dict of a perturbed network, and the network (its ε is checked elsewhere)."""
    net = perturb(ADMUNet(config), 0).eval()
    path = folder / name
    torch.save(net.state_dict(), path)
    return path, net


# --------------------------------------------------------------------------------------------
# the network against the reference
# --------------------------------------------------------------------------------------------


@needs_reference
@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_output_as_the_reference(name: str) -> None:
    config = CONFIGS[name]
    ref = _reference(config)
    net = ADMUNet.from_state_dict(config, ref.state_dict())
    x, labels = _inputs(config)
    with torch.no_grad():
        want = ref(x, T, labels)
        got = net(x, T, class_labels=labels)
    _assert_same(got, want)


@needs_reference
def test_ffhq_preset_matches_the_reference_network_unmodified() -> None:
    """DeepInverse's DiffUNet, as shipped, is the DPS FFHQ network: the preset must describe it."""
    D = diffunet_module()
    torch.manual_seed(0)
    ref = perturb(D.DiffUNet(pretrained=None).eval(), 0, 0.01)
    state = {k: v for k, v in ref.state_dict().items() if "alphas_cumprod" not in k}  # its own buffers
    net = ADMUNet.from_state_dict(checkpoints.PRESETS["ffhq256"].config or {}, state)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ref.forward_diffusion(x, T)
        got = net(x, T)
    _assert_same(got, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_normalisation_and_embeddings_in_float32(
    dtype: torch.dtype, tmp_path: Path
) -> None:
    config = CONFIGS["learned-sigma,resblock-updown,head-channels"]
    path, ref = _tiny_adm_file(tmp_path, config)
    prior = load_prior(path, config=config, dtype=dtype)
    net = prior.net
    assert isinstance(net, ADMUNet) and net.dtype == dtype
    assert net.input_blocks[1][0].in_layers[0].weight.dtype == torch.float32  # GroupNorm
    assert net.time_embed[0].weight.dtype == torch.float32 and net.out[2].weight.dtype == torch.float32
    x, _ = _inputs(config)
    with torch.no_grad():
        want = ref(x, T)[:, :3]
    got = prior(x, T)
    assert got.dtype == torch.float32
    _assert_same(got, want, rel=1e-2 if dtype == torch.float16 else 5e-2)  # measured 2e-3, 2e-2


# --------------------------------------------------------------------------------------------
# the prior: load_prior on checkpoints, safetensors and converted directories
# --------------------------------------------------------------------------------------------


def test_load_prior_on_a_pt_checkpoint_gives_eps_at_any_size(tmp_path: Path) -> None:
    config = {**CONFIGS["learned-sigma,resblock-updown,head-channels"], "noise_schedule": "cosine"}
    path, ref = _tiny_adm_file(tmp_path, config)
    prior = load_prior(path, config=config)
    assert isinstance(prior, UNetPrior) and isinstance(prior, solvers.priors.DiffusionPrior)
    torch.testing.assert_close(prior.alphas_cumprod, adm_alphas_cumprod("cosine", 1000))
    x, _ = _inputs(config)
    with torch.no_grad():
        want = ref(x, T)
    torch.testing.assert_close(prior(x, T), want[:, :3])  # ε: the first 3 of 6 channels
    odd = torch.randn(1, 3, 29, 35)
    assert prior(odd, 10).shape == odd.shape  # padded to multiples of 2 and cropped back


def test_config_is_checked_against_the_state_dict(tmp_path: Path) -> None:
    config = CONFIGS["learned-sigma,resblock-updown,head-channels"]
    state = ADMUNet(config).state_dict()
    cases = {
        "learn_sigma": ({"learn_sigma": False}, "out.2.weight"),
        "class_cond": ({"class_cond": True}, "label_emb.weight"),
        "resblock_updown": ({"resblock_updown": False}, "input_blocks.2.0.op.weight"),
        "attention_resolutions": ({"attention_resolutions": "8"}, "input_blocks.3.1.qkv.weight"),
        "use_scale_shift_norm": ({"use_scale_shift_norm": False}, "emb_layers.1.weight"),
        "num_channels": ({"num_channels": 64}, "time_embed.0.weight"),
        "num_res_blocks": ({"num_res_blocks": 2}, "input_blocks.5"),
        "channel_mult": ({"channel_mult": "1,3"}, "input_blocks.*.0"),
    }
    for setting, (change, key) in cases.items():
        with pytest.raises(ValueError, match=re.escape(key)) as info:
            ADMUNet.from_state_dict({**config, **change}, state, source="ckpt.pt")
        assert setting in str(info.value) and "ckpt.pt" in str(info.value)
    with pytest.raises(ValueError, match=r"unknown ADM configuration key.*'num_chanels'"):
        ADMConfig.from_dict({**config, "num_chanels": 32})
    with pytest.raises(ValueError, match="noise_schedule"):
        ADMConfig(noise_schedule="quadratic")
    with pytest.raises(ValueError, match="channel_mult must be given"):
        ADMConfig(image_size=48)
    ADMConfig.from_dict({**config, "use_fp16": True, "timestep_respacing": "250"})  # accepted, no effect


def test_an_enormous_configuration_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    import time

    config = CONFIGS["learned-sigma,resblock-updown,head-channels"]
    ckpt = tmp_path / "small.pt"
    torch.save(ADMUNet(config).state_dict(), ckpt)
    cases = [
        ({"num_res_blocks": 10**9}, "check num_res_blocks or channel_mult"),  # a billion blocks
        ({"num_channels": 10**6, "num_head_channels": -1}, "check num_channels"),
        ({"channel_mult": [1] * 10**5}, "check num_res_blocks or channel_mult"),
        ({"diffusion_steps": 2 * 10**8}, "diffusion_steps must be at most 100000"),
    ]
    for change, message in cases:
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=re.escape(message)):
            load_prior(ckpt, config={**config, **change})
        assert time.perf_counter() - t0 < 5, change  # nothing was built nor allocated


def test_null_and_mistyped_configuration_values_are_named(tmp_path: Path) -> None:
    config = CONFIGS["learned-sigma,resblock-updown,head-channels"]
    ckpt = tmp_path / "small.pt"
    torch.save(ADMUNet(config).state_dict(), ckpt)
    for key, value, message in [
        ("dropout", None, "dropout must be a number in [0, 1), got None"),
        ("dropout", "0.1", "dropout must be a number in [0, 1), got '0.1'"),
        ("num_channels", None, "num_channels must be a positive integer, got None"),
        ("learn_sigma", None, "learn_sigma must be true or false, got None"),
        ("diffusion_steps", 2.5, "diffusion_steps must be a positive integer, got 2.5"),
    ]:
        cfg = tmp_path / f"{key}.json"
        cfg.write_text(json.dumps({**config, key: value}))
        with pytest.raises(ValueError) as info:
            load_prior(ckpt, config=cfg)
        assert str(info.value) == f"{cfg}: {message}"
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=re.escape(f"{deep} is not valid JSON: it is nested too deeply")):
        load_prior(ckpt, config=deep)


def test_a_hostile_pickle_is_refused_and_nothing_of_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str, str]]:
            return (open, (str(marker), "w"))  # loading this pickle creates the file

    path = tmp_path / "256x256_diffusion_uncond.pt"  # an official name: no config needed to try it
    torch.save({"input_blocks.0.0.weight": torch.zeros(1), "payload": Payload()}, path)
    for call in (
        lambda: load_prior(path),
        lambda: load_prior(path, config=CONFIGS["learned-sigma,resblock-updown,head-channels"]),
        lambda: checkpoints.read_state_dict(path),
    ):
        with pytest.raises(ValueError, match=r"refused to unpickle .*nothing of the file was run"):
            call()
        assert not marker.exists()
    with pytest.raises(ValueError, match="pickle"):  # the .bin of a diffusers directory too
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "diffusion_pytorch_model.bin").write_bytes(path.read_bytes())
        (tmp_path / "d" / "config.json").write_text('{"_class_name": "UNet2DModel", "sample_size": 8}')
        (tmp_path / "d" / "scheduler_config.json").write_text('{"num_train_timesteps": 1000}')
        load_prior(tmp_path / "d")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the control: an unrestricted unpickler runs it
    assert marker.exists()


def test_safetensors_weights_and_opkit_convert_round_trip(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    config = CONFIGS["class-conditional,two-blocks,two-attention-levels"]
    path, ref = _tiny_adm_file(tmp_path, config)
    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(st))
    x, labels = _inputs(config)
    with torch.no_grad():
        want = ref(x, T, class_labels=labels)[:, :3]
    from_pt = load_prior(path, config=config)
    from_st = load_prior(st, config=config)
    out = save_prior(from_pt, tmp_path / "converted")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert json.loads((out / "config.json").read_text())["_class_name"] == "ADMUNet"
    converted = load_prior(out)  # no config: the directory carries it
    for prior in (from_pt, from_st, converted):
        torch.testing.assert_close(prior(x, T, class_labels=labels), want)
    with pytest.raises(ValueError, match="class-conditional: pass class_labels"):
        converted(x, T)


def test_class_labels_reach_the_prior_through_ddrm_model_kwargs(tmp_path: Path) -> None:
    import opkit

    config = CONFIGS["class-conditional,two-blocks,two-attention-levels"]
    net = perturb(ADMUNet(config), 0)
    seen: list[torch.Tensor] = []
    real_forward = net.forward

    def spy(x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        assert class_labels is not None
        seen.append(class_labels.clone())
        return real_forward(x, t, class_labels=class_labels)

    net.forward = spy  # type: ignore[method-assign]
    prior = UNetPrior(net, linear_alphas_cumprod(), multiple=4)
    op = opkit.create("sr_block", shape=(3, 32, 32), factor=2)
    y = op(torch.rand(2, 3, 32, 32))
    out = solvers.ddrm(
        op,
        y,
        prior,
        steps=2,
        num_samples=2,
        generator=torch.Generator().manual_seed(0),
        model_kwargs={"class_labels": torch.tensor([7, 9])},
    )
    assert out.shape == (2, 3, 32, 32)
    assert len(seen) == 2 and all(s.tolist() == [7, 7, 9, 9] for s in seen)


def test_predict_xstart_and_rescale_timesteps(tmp_path: Path) -> None:
    config = {**CONFIGS["fixed-sigma,conv-resample,heads,no-scale-shift"], "diffusion_steps": 500}
    net = perturb(ADMUNet(config), 0).eval()
    path = tmp_path / "x0.pt"
    torch.save(net.state_dict(), path)
    x = torch.randn(2, 3, 32, 32)
    a = adm_alphas_cumprod("linear", 500)[100].float()
    with torch.no_grad():
        x0 = net(x, torch.tensor([100, 100]))
    prior = load_prior(path, config={**config, "predict_xstart": True})
    assert prior.prediction_type == "sample" and len(prior.alphas_cumprod) == 500
    torch.testing.assert_close(prior(x, 100), (x - a.sqrt() * x0) / (1 - a).sqrt())
    rescaled = load_prior(path, config={**config, "rescale_timesteps": True})
    with torch.no_grad():  # the network sees t · 1000 / T
        torch.testing.assert_close(rescaled(x, 100), net(x, torch.tensor([200, 200])))


# --------------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------------


def test_named_schedules() -> None:
    torch.testing.assert_close(adm_alphas_cumprod("linear", 1000), linear_alphas_cumprod())
    a = adm_alphas_cumprod("cosine", 4000)
    fbar = lambda s: torch.cos(torch.tensor((s + 0.008) / 1.008 * torch.pi / 2, dtype=torch.float64)) ** 2  # noqa: E731
    torch.testing.assert_close(a[1999], fbar(2000 / 4000) / fbar(0.0), rtol=1e-12, atol=0)
    half = adm_alphas_cumprod("linear", 500)  # betas scaled by 1000/T
    torch.testing.assert_close(1 - half[0], torch.tensor(2e-4, dtype=torch.float64))


# --------------------------------------------------------------------------------------------
# presets and the download cache
# --------------------------------------------------------------------------------------------


def test_presets_record_the_official_files() -> None:
    p = checkpoints.PRESETS
    assert p["imagenet256-uncond"].file == "256x256_diffusion_uncond.pt"
    assert p["imagenet256-uncond"].url == (
        "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt"
    )
    assert p["imagenet256-cond"].config is not None and p["imagenet256-cond"].config["class_cond"] is True
    assert p["ffhq256"].file == "ffhq_10m.pt" and p["ffhq256"].url is None
    assert p["ddpm-celebahq-256"].hub_id == "google/ddpm-ema-celebahq-256"
    for c in p.values():
        assert (c.config is None) == (c.hub_id is not None)
        if c.config is not None:
            cfg = ADMConfig.from_dict(c.config)
            assert cfg.learn_sigma and cfg.diffusion_steps == 1000
            with torch.device("meta"):
                ADMUNet(cfg)  # every preset builds
        assert c.sha256 is None  # none is published; never invented


@pytest.fixture()
def tiny_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path, Any]:
    """A preset entry for a tiny ADM file, served from a file:// URL."""
    config = CONFIGS["learned-sigma,resblock-updown,head-channels"]
    (tmp_path / "server").mkdir()
    src, _ = _tiny_adm_file(tmp_path / "server", config, "tiny_adm.pt")
    entry = checkpoints.Checkpoint(
        name="tiny",
        description="test",
        paper="-",
        page="https://example.invalid/tiny",
        config=config,
        file="tiny_adm.pt",
        url=src.as_uri(),
        sha256=hashlib.sha256(src.read_bytes()).hexdigest(),
    )
    monkeypatch.setitem(checkpoints.PRESETS, "tiny", entry)
    return "tiny", src, entry


def test_a_named_checkpoint_without_download_says_where_to_put_it(
    tiny_preset: tuple[str, Path, Any], tmp_path: Path
) -> None:
    name, src, entry = tiny_preset
    dest = tmp_path / "opkit-cache" / "checkpoints" / "tiny_adm.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(dest))) as info:
        load_prior(name)
    assert "download=True" in str(info.value) and entry.url in str(info.value)
    with pytest.raises(FileNotFoundError, match=re.escape("256x256_diffusion_uncond.pt")):
        load_prior("imagenet256-uncond")
    with pytest.raises(FileNotFoundError, match="no direct link"):
        load_prior("ffhq256", download=True)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(src.read_bytes())  # the user puts the file there: it loads
    assert load_prior(name).alphas_cumprod.shape == (1000,)
    assert isinstance(load_prior(src, config=name).net, ADMUNet)  # a preset name as the config
    # a file with the official name loads without config, anywhere
    assert isinstance(load_prior(dest).net, ADMUNet)


def test_download_verifies_the_checksum(
    tiny_preset: tuple[str, Path, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name, _, entry = tiny_preset
    dest = tmp_path / "opkit-cache" / "checkpoints" / "tiny_adm.pt"
    monkeypatch.setitem(checkpoints.PRESETS, name, attrs.evolve(entry, sha256="0" * 64))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_prior(name, download=True)
    assert not dest.exists() and not list(dest.parent.glob("*.part"))
    monkeypatch.setitem(checkpoints.PRESETS, name, entry)
    prior = load_prior(name, download=True)
    assert dest.is_file() and isinstance(prior.net, ADMUNet)
    monkeypatch.setitem(checkpoints.PRESETS, name, attrs.evolve(entry, sha256=None, file="other.pt"))
    with pytest.warns(UserWarning, match="no checksum"):
        load_prior(name, download=True)


# --------------------------------------------------------------------------------------------
# Hugging Face hub ids, offline from a temporary cache
# --------------------------------------------------------------------------------------------


def _legacy_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Attention parameters under diffusers' pre-0.14 names, as in the google/ddpm-* .bin files."""
    out = {}
    for k, v in state.items():
        for new, old in (
            (".to_q.", ".query."),
            (".to_k.", ".key."),
            (".to_v.", ".value."),
            (".to_out.0.", ".proj_attn."),
        ):
            k = k.replace(new, old)
        out[k] = v
    return out


def write_hub_model(cache: Path, repo_id: str, *, seed: int = 0) -> Any:
    """A tiny DDPM in the Hugging Face cache layout, with pickled ``.bin`` weights only."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    net = UNet2DModel(
        sample_size=8,
        block_out_channels=(32, 32),
        norm_num_groups=8,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    ).eval()
    perturb(net, seed)
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    net.save_config(str(snap))
    torch.save(_legacy_names(net.state_dict()), snap / "diffusion_pytorch_model.bin")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_config(str(snap))
    return net


@pytest.fixture()
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read once, at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_ids_resolve_offline_from_the_cache(hub_cache: Path) -> None:
    net = write_hub_model(hub_cache, "google/ddpm-ema-celebahq-256")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = net(x, torch.tensor([5, 5])).sample
    for name in ("google/ddpm-ema-celebahq-256", "ddpm-celebahq-256"):  # the id, and its preset
        prior = load_prior(name)
        torch.testing.assert_close(prior.alphas_cumprod, linear_alphas_cumprod(), rtol=1e-6, atol=0)
        torch.testing.assert_close(prior(x, 5), want)
    with pytest.raises(FileNotFoundError, match=r"not in the Hugging Face cache.*HF_HUB_OFFLINE"):
        load_prior("google/ddpm-ema-church-256", download=True)
    with pytest.raises(ValueError, match="config does not apply"):
        load_prior("google/ddpm-ema-celebahq-256", config="ffhq256")


def test_hub_ids_never_download_unless_asked(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(FileNotFoundError, match=r"never downloads unless asked.*download=True"):
        load_prior("google/ddpm-ema-cat-256")


def test_a_converted_hub_model_loads_from_safetensors(hub_cache: Path, tmp_path: Path) -> None:
    net = write_hub_model(hub_cache, "google/ddpm-ema-cat-256", seed=3)
    out = save_prior(load_prior("google/ddpm-ema-cat-256"), tmp_path / "cat")
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(out.rglob("*.bin"))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        want = net(x, torch.tensor([9])).sample
    torch.testing.assert_close(load_prior(out)(x, 9), want)


def test_the_docs_page_lists_every_preset() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "solvers" / "pretrained.rst").read_text()
    for name, c in checkpoints.PRESETS.items():
        assert f"``{name}``" in page, name
        assert (c.file or c.hub_id or "") in page, name
    for name in ("imagenet256-uncond", "imagenet256-cond", "ffhq256", "lsun-bedroom"):
        assert f"--model-config {name}" in page
