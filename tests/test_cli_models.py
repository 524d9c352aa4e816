"""The command line with pretrained-model checkpoints: ``opkit convert``, ``restore --model``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from opkit.images import load_image
from opkit_cli.main import main
from solvers.priors import checkpoints
from solvers.priors.adm import ADMUNet
from tests.adm_reference import perturb
from tests.test_adm import write_hub_model

CLASS_COND = {
    "image_size": 32,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "16",
    "learn_sigma": True,
    "class_cond": True,
    "resblock_updown": True,
    "num_head_channels": 16,
}


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPKIT_CACHE", str(tmp_path / "opkit-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture()
def adm_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny class-conditional ADM ``.pt`` state dict and its JSON configuration."""
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny_adm.pt"
    torch.save(perturb(ADMUNet(CLASS_COND), 0).state_dict(), ckpt)
    cfg = tmp_path / "tiny_adm.json"
    cfg.write_text(json.dumps(CLASS_COND))
    return ckpt, cfg


def _png(path: Path, h: int = 32, w: int = 32) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_convert_then_restore_with_a_class_label(tmp_path: Path, adm_checkpoint: tuple[Path, Path]) -> None:
    ckpt, cfg = adm_checkpoint
    out = tmp_path / "converted"
    assert main(["convert", str(ckpt), "--model-config", str(cfg), "-o", str(out)]) == 0
    assert (out / "config.json").is_file() and (out / "diffusion_pytorch_model.safetensors").is_file()
    with pytest.raises(SystemExit, match="exists; pass --force"):
        main(["convert", str(ckpt), "--model-config", str(cfg), "-o", str(out)])

    img = _png(tmp_path / "noisy.png")
    common = ["restore", str(img), "--op", "denoise", "--steps", "2", "--quiet", "--sigma-y", "0.1"]
    for model in (["--model", str(out)], ["--model", str(ckpt), "--model-config", str(cfg)]):
        restored = tmp_path / f"restored{len(model)}.png"
        assert main([*common, *model, "--class-label", "3", "-o", str(restored)]) == 0
        assert load_image(restored).shape == (1, 3, 32, 32)
    with pytest.raises(SystemExit, match="class-conditional: pass class_labels"):
        main([*common, "--model", str(out), "-o", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="--model-config"):  # a .pt without an official name needs one
        main([*common, "--model", str(ckpt), "-o", str(tmp_path / "x.png")])
    blind = ["restore", str(img), "--op", "denoise", "--steps", "2", "--quiet", "--solver", "driftrec"]
    prior_solvers = r"apply to the solvers with a diffusion prior \(.*ddrm.*\), not driftrec"
    with pytest.raises(SystemExit, match=prior_solvers):
        main([*blind, "--class-label", "1", "-o", str(tmp_path / "x.png")])


def test_restore_with_a_preset_downloads_only_when_asked(
    tmp_path: Path, adm_checkpoint: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt, _ = adm_checkpoint
    entry = checkpoints.Checkpoint(
        name="tiny-cc",
        description="test",
        paper="-",
        page="-",
        config=CLASS_COND,
        file="tiny_cc.pt",
        url=ckpt.as_uri(),
        sha256=hashlib.sha256(ckpt.read_bytes()).hexdigest(),
    )
    monkeypatch.setitem(checkpoints.PRESETS, entry.name, entry)
    img = _png(tmp_path / "in.png")
    args = ["restore", str(img), "--op", "denoise", "--steps", "2", "--quiet", "--model", "tiny-cc"]
    args += ["--class-label", "0", "-o", str(tmp_path / "o.png")]
    with pytest.raises(SystemExit, match=r"put it at .*tiny_cc\.pt"):
        main(args)
    assert main([*args, "--download"]) == 0
    assert (tmp_path / "opkit-cache" / "checkpoints" / "tiny_cc.pt").is_file()


def test_restore_with_a_hub_id_from_a_temporary_hub_cache(tmp_path: Path) -> None:
    """A separate process: HF_HUB_CACHE acts through the environment, read when huggingface_hub loads."""
    cache = tmp_path / "hub"
    write_hub_model(cache, "google/ddpm-ema-celebahq-256")
    img = _png(tmp_path / "in.png", 16, 16)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "opkit_cli", "restore", str(img), "--op", "denoise", "--steps", "2"]
    cmd += ["--quiet", "--model", "google/ddpm-ema-celebahq-256", "-o", str(tmp_path / "o.png")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert load_image(tmp_path / "o.png").shape == (1, 3, 16, 16)
