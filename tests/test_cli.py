"""The command line: listing, degrading, and never overwriting inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from opkit.images import load_image, save_image
from opkit_cli.main import main
from opkit_cli.parsing import parse_params


def _png(path: Path, h: int = 16, w: int = 24) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_parse_params_reads_literals_and_strings() -> None:
    assert parse_params(["factor=4", "kernel=gaussian", "sigma=2.5", "w=[1, 2]"]) == {
        "factor": 4,
        "kernel": "gaussian",
        "sigma": 2.5,
        "w": [1, 2],
    }
    with pytest.raises(SystemExit, match="key=value"):
        parse_params(["factor"])


def test_ops_lists_builtins_and_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "denoise" in out and "[plugin: denoise]" in out


def test_degrade_writes_noisy_image_reproducibly(tmp_path: Path) -> None:
    src = _png(tmp_path / "in.png")
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    args = ["degrade", str(src), "--op", "denoise", "--sigma-y", "0.1", "--seed", "3", "-o"]
    assert main([*args, str(a)]) == 0
    assert main([*args, str(b)]) == 0
    xa, xb, x = load_image(a), load_image(b), load_image(src)
    assert torch.equal(xa, xb)
    assert 0.05 < float((xa - x).pow(2).mean().sqrt()) < 0.12  # clipped N(0, 0.1²) noise


def test_degrade_refuses_to_overwrite(tmp_path: Path) -> None:
    src = _png(tmp_path / "in.png")
    before = src.read_bytes()
    with pytest.raises(SystemExit, match="refusing to overwrite the input"):
        main(["degrade", str(src), "--op", "denoise", "-o", str(src), "--force"])
    out = tmp_path / "out.png"
    out.write_bytes(b"keep")
    with pytest.raises(SystemExit, match="exists"):
        main(["degrade", str(src), "--op", "denoise", "-o", str(out)])
    assert src.read_bytes() == before and out.read_bytes() == b"keep"


def test_degrade_reports_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no such image"):
        main(["degrade", str(tmp_path / "none.png"), "--op", "denoise", "-o", str(tmp_path / "o.png")])
    src = _png(tmp_path / "in.png")
    with pytest.raises(SystemExit, match="unknown operator 'nope'; available:"):
        main(["degrade", str(src), "--op", "nope", "-o", str(tmp_path / "o.png")])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(SystemExit, match="cannot read"):
        main(["degrade", str(bad), "--op", "denoise", "-o", str(tmp_path / "o.png")])


def test_image_io_round_trip_is_exact_on_8bit(tmp_path: Path) -> None:
    x = torch.randint(0, 256, (1, 3, 5, 7)).to(torch.float64) / 255
    p = save_image(x, tmp_path / "x.png")
    assert torch.equal(load_image(p, dtype=torch.float64), x)
    g = torch.randint(0, 256, (1, 1, 4, 4)).to(torch.float64) / 255
    assert torch.equal(load_image(save_image(g, tmp_path / "g.png"), dtype=torch.float64), g)
