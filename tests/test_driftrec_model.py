"""DriftRec's conditional score network: structure, sizes, padding, persistence."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch

import opkit
import solvers
from solvers.sdes.score_models import PRESETS, ScoreModel, build_unet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_network_is_conditional_on_y_and_divides_by_sigma() -> None:
    """score = conv_out(...) / σ_t, the embedding sees log σ_t, and y enters on channels 3..5."""
    model = ScoreModel.from_preset("tiny", "ouve", seed=0).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    t = torch.tensor([0.2, 0.9])
    sigma = model.sde.std(t)
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.unet.time_proj.register_forward_hook(lambda m, i, o: seen.update(sigma=i[0].clone())),
        model.unet.conv_out.register_forward_hook(lambda m, i, o: seen.update(raw=o.clone())),
        model.unet.conv_in.register_forward_hook(lambda m, i, o: seen.update(inp=i[0].clone())),
    ]
    with torch.no_grad():
        score = model(x, y, t)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(seen["sigma"], sigma)  # the embedding receives σ_t ...
    assert model.unet.time_proj.log  # ... and takes its logarithm
    torch.testing.assert_close(score, seen["raw"] / sigma.view(-1, 1, 1, 1))  # network output / σ_t
    torch.testing.assert_close(seen["inp"], torch.cat([2 * x - 1, 2 * y - 1], 1))  # [x_t, y] on channels
    with torch.no_grad():
        assert not torch.allclose(model(x, torch.rand(2, 3, 8, 8, generator=g), t), score)  # y matters
    assert model.unet.config.in_channels == 6 and model.unet.config.out_channels == 3


def test_sizes_from_tiny_to_paper_scale() -> None:
    tiny = ScoreModel.from_preset("tiny").num_parameters()
    assert tiny < 300_000
    # paper scale (~65 M) counted on the meta device: no memory, no time
    with torch.device("meta"):
        paper = sum(p.numel() for p in build_unet("paper").parameters())
    assert 60e6 < paper < 70e6
    assert set(PRESETS) == {"tiny", "small", "compact", "paper"}
    with torch.device("meta"):
        compact = build_unet("compact")
    assert 3e6 < sum(p.numel() for p in compact.parameters()) < 4e6  # the shipped default's size
    assert not any("Attention" in type(m).__name__ for m in compact.modules())  # convolution only
    with pytest.raises(ValueError, match="size"):
        build_unet("huge")


def test_any_image_size_is_padded_and_cropped() -> None:
    model = ScoreModel.from_preset("small", "cosve").eval()
    x = torch.rand(1, 3, 13, 21)
    with torch.no_grad():
        out = model(x, x, torch.tensor([0.5]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    with torch.no_grad():  # float64 input: the float32 network runs, the score comes back in float64
        out64 = model(x.double(), x.double(), torch.tensor([0.5], dtype=torch.float64))
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out)
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), torch.tensor([0.5]))


def test_save_load_roundtrip_is_bit_exact_and_safetensors_only(tmp_path) -> None:
    model = ScoreModel.from_preset("tiny", solvers.sdes.TSDVE(sigma_max=0.8), seed=3).eval()
    model.save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["config.json", "diffusion_pytorch_model.safetensors", "driftrec.json"]
    meta = json.loads((tmp_path / "driftrec.json").read_text())
    assert meta["sde"]["name"] == "tsdve" and meta["sde"]["sigma_max"] == 0.8
    loaded = solvers.load_driftrec(tmp_path)
    assert loaded.sde == model.sde and not loaded.training
    g = torch.Generator().manual_seed(1)
    x, y, t = (
        torch.rand(3, 3, 12, 8, generator=g),
        torch.rand(3, 3, 12, 8, generator=g),
        torch.rand(3, generator=g),
    )
    with torch.no_grad():
        assert torch.equal(model(x, y, t), loaded(x, y, t))
    # the directory is a valid diffusers UNet2DModel directory too
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(tmp_path, use_safetensors=True, low_cpu_mem_usage=False)
    assert all(
        torch.equal(a, b) for a, b in zip(unet.state_dict().values(), model.unet.state_dict().values())
    )
    with pytest.raises(FileNotFoundError, match="raw_model"):
        solvers.load_driftrec(tmp_path, ema=False)


def test_no_extension_is_built_or_loaded() -> None:
    if "torch.utils.cpp_extension" in sys.modules:
        pytest.skip("torch.utils.cpp_extension was already imported by something else in this session")
    ScoreModel.from_preset("tiny")(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.tensor([0.5]))
    # the reference network JIT-compiles CUDA kernels through torch.utils.cpp_extension; ours never loads it
    assert "torch.utils.cpp_extension" not in sys.modules


@pytest.mark.slow
def test_network_imports_without_any_compile_step() -> None:
    code = (
        "import solvers, torch; m = solvers.sdes.score_models.ScoreModel.from_preset('tiny');"
        "print(m(torch.rand(1,3,8,8), torch.rand(1,3,8,8), torch.tensor([0.5])).shape)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "torch.Size([1, 3, 8, 8])" in out.stdout


def test_the_operator_a_model_learned_is_saved_and_checked(tmp_path) -> None:
    """``trained_on`` round-trips through driftrec.json, bad values are refused, the bundled model
    records JPEG, and the solver warns when it is asked to restore another degradation."""
    from solvers.methods.driftrec import driftrec_fits

    model = ScoreModel.from_preset("tiny", seed=0, trained_on="blur").eval()
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "driftrec.json").read_text())
    assert meta["trained_on"] == "blur"
    assert solvers.load_driftrec(tmp_path / "m").trained_on == "blur"
    plain = ScoreModel.from_preset("tiny", seed=0)
    plain.save_pretrained(tmp_path / "plain")  # unknown: no entry, and None on loading
    assert "trained_on" not in json.loads((tmp_path / "plain" / "driftrec.json").read_text())
    assert solvers.load_driftrec(tmp_path / "plain").trained_on is None
    for bad in ("", 3):
        with pytest.raises(ValueError, match="trained_on"):
            ScoreModel.from_preset("tiny", trained_on=bad)
        meta["trained_on"] = bad
        (tmp_path / "m" / "driftrec.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match='bad "trained_on" entry'):
            solvers.load_driftrec(tmp_path / "m")
    assert solvers.load_driftrec("default").trained_on == "jpeg"  # the bundled model

    jpeg = opkit.create("jpeg", shape=(3, 8, 8), quality=10)
    blur = opkit.create("blur", shape=(3, 8, 8))
    assert driftrec_fits(model, blur) == "" and driftrec_fits(plain, jpeg) == ""
    assert driftrec_fits(model, jpeg) == "its model is trained on blur only"
    assert opkit.default_registry().solver_entry("driftrec").misfit(model, jpeg) == driftrec_fits(model, jpeg)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="driftrec on jpeg: its model is trained on blur only"):
        solvers.driftrec(jpeg, jpeg(x), model, steps=2, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solvers.driftrec(blur, blur(x), model, steps=2, generator=torch.Generator().manual_seed(0))


def test_tuned_settings_are_saved_checked_and_applied(tmp_path) -> None:
    """``settings`` round-trips through driftrec.json, bad ones are refused with the file named,
    and the registry entry hands the operator's own to callers such as the command line."""
    from solvers.methods.driftrec import driftrec_settings

    tuned = {"jpeg": {"grid_power": 0.5, "steps": 50}}
    model = ScoreModel.from_preset("tiny", seed=0, trained_on="jpeg", settings=tuned)
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "driftrec.json").read_text())
    assert meta["settings"] == tuned
    loaded = solvers.load_driftrec(tmp_path / "m")
    assert loaded.settings == tuned
    jpeg = opkit.create("jpeg", shape=(3, 8, 8), quality=10)
    blur = opkit.create("blur", shape=(3, 8, 8))
    entry = opkit.default_registry().solver_entry("driftrec")
    assert entry.settings is driftrec_settings
    assert driftrec_settings(loaded, jpeg) == tuned["jpeg"] and driftrec_settings(loaded, blur) == {}
    assert driftrec_settings(None, jpeg) == {}
    assert entry.defaults(loaded, jpeg)["grid_power"] == 0.5
    assert entry.defaults(None, jpeg)["grid_power"] == 1.0  # the signature's, before loading
    plain = ScoreModel.from_preset("tiny", seed=0)
    plain.save_pretrained(tmp_path / "plain")
    assert "settings" not in json.loads((tmp_path / "plain" / "driftrec.json").read_text())
    for bad in ([1], {"jpeg": 0.5}, {"jpeg": {"grid_power": [0.5]}}):
        with pytest.raises(ValueError, match="operator names mapped to keywords"):
            ScoreModel.from_preset("tiny", settings=bad)  # type: ignore[arg-type]
        meta["settings"] = bad
        (tmp_path / "m" / "driftrec.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=r"driftrec\.json: bad \"settings\" entry"):
            solvers.load_driftrec(tmp_path / "m")
