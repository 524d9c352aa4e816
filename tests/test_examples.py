"""The example scripts in ``examples/`` run end to end (tiny models, 32² crops, 2 steps).

Each script's ``main(argv)`` is called as the command line would call it; the tests check the
files it writes, the shapes of its images and that every metric it returns is finite. Quality
is not tested here: the priors are tiny untrained networks.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from PIL import Image

import opkit
import opkit.registry
import solvers
from opkit.images import load_image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST = ["--size", "32", "--steps", "2"]


def load_example(name: str) -> ModuleType:
    """Import ``examples/{name}.py`` (with its folder on ``sys.path`` for ``_common``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(EXAMPLES))
        spec = importlib.util.spec_from_file_location(f"opkit_example_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # custom_plugin registers its own module as the plugin
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained diffusers DDPM, written by the diffusers_checkpoint example itself."""
    save = load_example("diffusers_checkpoint").save_tiny_checkpoint
    return Path(save(tmp_path_factory.mktemp("prior"), layout="pipeline"))


def run(name: str, out: Path, *extra: str) -> dict[str, Any]:
    results: dict[str, Any] = load_example(name).main(["--out", str(out), *FAST, *extra])
    return results


def assert_finite(results: dict[str, Any], tasks: dict[str, set[str]]) -> None:
    """``results`` has exactly these tasks and methods, and every metric is a finite number."""
    assert {t: set(m) for t, m in results.items()} == tasks
    for task, methods in results.items():
        for method, metrics in methods.items():
            assert {"PSNR", "SSIM"} <= set(metrics), (task, method)
            assert all(math.isfinite(v) for v in metrics.values()), (task, method, metrics)


def assert_figures(out: Path, task: str, *, input_shape: tuple[int, ...], panels: int) -> None:
    """Before/after PNGs of the right shapes and a grid of ``panels`` 32² panels with a title strip."""
    assert load_image(out / f"{task}_input.png").shape == (1, *input_shape)
    assert load_image(out / f"{task}_restored.png").shape == (1, 3, 32, 32)
    with Image.open(out / f"{task}_grid.png") as grid:
        assert grid.size == (panels * 32 + (panels - 1) * 4, 32 + 14)


def test_restore_jpeg_reads_the_file_it_wrote(tmp_path: Path, prior_dir: Path) -> None:
    results = run("restore_jpeg", tmp_path, "--model", str(prior_dir))
    assert_finite(results, {"restore_jpeg": {"JPEG decode", "DDRM"}})
    assert_figures(tmp_path, "restore_jpeg", input_shape=(3, 32, 32), panels=3)
    jpg = tmp_path / "rocket_q10.jpg"
    with Image.open(jpg) as im:
        assert im.format == "JPEG" and im.size == (32, 32)
    from opkit_plugins.jpeg import from_file

    op, _ = from_file(jpg)  # the file holds libjpeg's quality-10 tables
    torch.testing.assert_close(op.tables, opkit.create("jpeg", shape=(3, 32, 32), quality=10).tables)


def test_sr_deblur_noisy(tmp_path: Path, prior_dir: Path) -> None:
    results = run("sr_deblur_noisy", tmp_path, "--model", str(prior_dir))
    assert_finite(results, {"sr_x4": {"bicubic", "H†y", "DDRM"}, "deblur": {"blurred y", "H†y", "DDRM"}})
    assert_figures(tmp_path, "sr_x4", input_shape=(3, 8, 8), panels=3)  # the input is y, 4× smaller
    assert_figures(tmp_path, "deblur", input_shape=(3, 32, 32), panels=3)


def test_motion_deblur(tmp_path: Path, prior_dir: Path) -> None:
    results = run("motion_deblur", tmp_path, "--model", str(prior_dir), "--kernel-size", "15")
    assert_finite(results, {"motion_deblur": {"blurred y", "Wiener (best λ)", "DDRM"}})
    assert_figures(tmp_path, "motion_deblur", input_shape=(3, 32, 32), panels=5)
    # deconvolution pays here: the oracle-tuned Wiener beats the blurred input (seeded run)
    m = results["motion_deblur"]
    assert m["Wiener (best λ)"]["PSNR"] > m["blurred y"]["PSNR"]


def test_colorize(tmp_path: Path, prior_dir: Path) -> None:
    results = run("colorize", tmp_path, "--model", str(prior_dir))
    assert_finite(results, {"colorize": {"H†y (grey)", "DDRM"}})
    assert_figures(tmp_path, "colorize", input_shape=(3, 32, 32), panels=3)
    grey = load_image(tmp_path / "colorize_input.png")
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 0], grey[:, 2])


def test_inpaint_mask_and_kept_pixels(tmp_path: Path, prior_dir: Path) -> None:
    module = load_example("inpaint")
    mask = module.make_mask(32, torch.Generator().manual_seed(0))
    assert not mask[12:20, 12:20].any() and 0.5 < 1 - float(mask.float().mean()) < 0.65
    results = module.main(["--out", str(tmp_path), *FAST, "--model", str(prior_dir)])
    assert_finite(results, {"inpaint": {"H†y", "DDRM"}})
    assert_figures(tmp_path, "inpaint", input_shape=(3, 32, 32), panels=3)
    # noiseless DDRM with eta_b = 1 keeps the measured pixels (up to 8-bit rounding of the PNG)
    truth = load_example("_common").held_out_crop("rocket", 32)
    restored = load_image(tmp_path / "inpaint_restored.png")
    assert float((restored - truth).abs()[..., mask].max()) <= 1 / 255 + 1e-6


def test_custom_plugin_registers_passes_the_kit_and_restores(
    tmp_path: Path, prior_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(opkit.registry, "_DEFAULT", None)  # a fresh registry, dropped afterwards
    module = load_example("custom_plugin")
    assert module.NAME not in opkit.available()
    results = run("custom_plugin", tmp_path, "--model", str(prior_dir))
    assert_finite(results, {"custom_plugin": {"H†y", "bicubic", "DDRM"}})
    assert_figures(tmp_path, "custom_plugin", input_shape=(3, 32, 32), panels=3)
    assert module.NAME in opkit.available()
    assert opkit.default_registry().operator_entry(module.NAME).plugin == "example_hdecimate2"
    run("custom_plugin", tmp_path / "again", "--model", str(prior_dir))  # registering twice is harmless
    for shape in [(3, 6, 10), (1, 5, 2)]:
        op = opkit.create(module.NAME, shape=shape)
        opkit.testing.check_operator(op, reference=lambda t: (t[..., 0::2] + t[..., 1::2]) / 2)
        opkit.testing.check_operator(op, dtype=torch.float32)
    with pytest.raises(ValueError, match="even"):
        opkit.create(module.NAME, shape=(3, 4, 5))


def test_diffusers_checkpoint_layouts(tmp_path: Path) -> None:
    module = load_example("diffusers_checkpoint")
    results = run("diffusers_checkpoint", tmp_path)
    assert_finite(results, {"diffusers_checkpoint": {"bicubic", "DDRM (flat)", "DDRM (pipeline)"}})
    scores = results["diffusers_checkpoint"]
    assert scores["DDRM (flat)"] == scores["DDRM (pipeline)"]  # same weights, two layouts
    assert_figures(tmp_path, "diffusers_checkpoint", input_shape=(3, 8, 8), panels=3)
    flat = module.save_tiny_checkpoint(tmp_path / "flat", layout="flat")
    assert (flat / "diffusion_pytorch_model.safetensors").is_file()
    assert (flat / "scheduler_config.json").is_file()
    torch.testing.assert_close(
        solvers.load_prior(flat).alphas_cumprod,
        solvers.priors.linear_alphas_cumprod(),
        rtol=1e-6,
        atol=0,
    )


def test_driftrec_vs_ddrm_with_a_model(tmp_path: Path, prior_dir: Path) -> None:
    from solvers.sdes.score_models import ScoreModel

    ScoreModel.from_preset("tiny").save_pretrained(tmp_path / "driftrec")
    model = ["--driftrec-model", str(tmp_path / "driftrec"), "--driftrec-steps", "2"]
    results = run("driftrec_vs_ddrm", tmp_path, "--model", str(prior_dir), *model)
    assert_finite(results, {"driftrec_vs_ddrm": {"JPEG decode", "DDRM", "DriftRec"}})
    assert all({"PSNR-B", "BEF"} <= set(m) for m in results["driftrec_vs_ddrm"].values())
    assert_figures(tmp_path, "driftrec_vs_ddrm", input_shape=(3, 32, 32), panels=4)


def test_driftrec_vs_ddrm_without_a_model_keeps_the_ddrm_half(
    tmp_path: Path, prior_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unavailable(path: Any, **kwargs: Any) -> Any:
        raise ValueError("load_driftrec('default'): no default DriftRec model is bundled")

    monkeypatch.setattr(solvers, "load_driftrec", unavailable)
    results = run("driftrec_vs_ddrm", tmp_path, "--model", str(prior_dir))
    assert_finite(results, {"driftrec_vs_ddrm": {"JPEG decode", "DDRM"}})
    assert "skipping DriftRec" in capsys.readouterr().out
    assert_figures(tmp_path, "driftrec_vs_ddrm", input_shape=(3, 32, 32), panels=3)
