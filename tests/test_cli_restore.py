"""`opkit restore` end to end with tiny untrained models saved by the test (pipeline, not quality)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from opkit.images import load_image
from opkit_cli.entries import infer_image_shape
from opkit_cli.main import main


def _png(path: Path, h: int = 16, w: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_infer_image_shape_undoes_the_operator() -> None:
    assert infer_image_shape("sr_block", (3, 8, 12), {"factor": 2}) == (3, 16, 24)
    assert infer_image_shape("colorize", (1, 8, 12), {}) == (3, 8, 12)
    assert infer_image_shape("denoise", (3, 8, 12), {}) == (3, 8, 12)


def test_restore_super_resolution_with_ddrm_and_compare(tmp_path: Path, prior_dir: Path) -> None:
    clean = _png(tmp_path / "clean.png", 16, 32)
    low = tmp_path / "low.png"
    assert main(["degrade", str(clean), "--op", "sr_block", "--param", "factor=2", "-o", str(low)]) == 0
    out, grid = tmp_path / "x.png", tmp_path / "grid.png"
    args = ["restore", str(low), "--op", "sr_block", "--param", "factor=2", "--model", str(prior_dir)]
    args += ["--steps", "3", "--quiet", "--truth", str(clean), "--compare", str(grid), "-o", str(out)]
    assert main(args) == 0
    x = load_image(out)
    assert x.shape == (1, 3, 16, 32)
    # DDRM sets the measured block means to y; the untrained prior's wild null-space content
    # is clipped to [0, 1] afterwards, which moves some means, so check agreement statistically
    y = load_image(low).flatten()
    mean = torch.nn.functional.avg_pool2d(x, 2).flatten()
    assert float(torch.corrcoef(torch.stack([mean, y]))[0, 1]) > 0.9
    assert load_image(grid).shape[-1] > 3 * 32


def test_restore_a_real_jpeg_file_uses_its_tables(tmp_path: Path, prior_dir: Path) -> None:
    src = Image.open(_png(tmp_path / "c.png", 16, 16, seed=3))
    jpg = tmp_path / "c.jpg"
    src.save(jpg, quality=20)
    out = tmp_path / "r.png"
    assert (
        main(
            [
                "restore",
                str(jpg),
                "--op",
                "jpeg",
                "--model",
                str(prior_dir),
                "--steps",
                "2",
                "--quiet",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert load_image(out).shape == (1, 3, 16, 16)


def test_restore_reports_a_missing_model(tmp_path: Path) -> None:
    low = _png(tmp_path / "l.png", 8, 8)
    with pytest.raises(SystemExit, match="does not exist"):
        main(
            [
                "restore",
                str(low),
                "--op",
                "denoise",
                "--model",
                str(tmp_path / "nope"),
                "-o",
                str(tmp_path / "o.png"),
            ]
        )


def test_degrade_to_jpg_writes_a_real_jpeg_with_the_operator_tables(tmp_path: Path) -> None:
    import opkit

    src = _png(tmp_path / "s.png", 16, 24, seed=4)
    out = tmp_path / "s.jpg"
    assert main(["degrade", str(src), "--op", "jpeg", "--param", "quality=30", "-o", str(out)]) == 0
    im = Image.open(out)
    assert im.format == "JPEG"
    op = opkit.create("jpeg", shape=(3, 16, 24), quality=30)
    assert list(im.quantization[0]) == op.tables[0].flatten().tolist()  # type: ignore[attr-defined]


def test_eval_prints_a_table_csv_and_rate_distortion_plot(
    tmp_path: Path, prior_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    _png(folder / "a.png", 16, 16, seed=1)
    _png(folder / "b.png", 16, 16, seed=2)
    csv_path, plot = tmp_path / "scores.csv", tmp_path / "rd.png"
    args = ["eval", str(folder), "--op", "jpeg", "--qualities", "10,50", "--model", str(prior_dir)]
    args += ["--steps", "2", "--csv", str(csv_path), "--plot", str(plot)]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| 10 | decode |" in table and "| 50 | restored |" in table
    lines = csv_path.read_text().strip().splitlines()
    assert lines[0].startswith("image,quality,bpp,method,PSNR") and len(lines) == 1 + 2 * 2 * 2
    assert Image.open(plot).size[0] > 100


def test_train_commands_write_loadable_models(tmp_path: Path) -> None:
    from solvers import load_driftrec, load_prior

    folder = tmp_path / "imgs"
    folder.mkdir()
    _png(folder / "a.png", 20, 20, seed=1)
    prior = tmp_path / "prior"
    common = ["--steps", "2", "--batch", "2", "--crop", "16", "--preset", "tiny"]
    assert main(["train", "prior", str(folder), "-o", str(prior), *common]) == 0
    assert load_prior(prior).alphas_cumprod.numel() == 1000
    drift = tmp_path / "drift"
    assert main(["train", "driftrec", str(folder), "-o", str(drift), "--qualities", "5-50", *common]) == 0
    assert callable(load_driftrec(drift))


def test_the_runner_takes_the_entrys_settings_and_the_flags_win() -> None:
    import argparse

    import opkit
    from opkit_cli.runner import Runner

    class Model:
        def __init__(self) -> None:
            self.settings = {"jpeg": {"t_start": 45, "steps": 6, "num_samples": 8, "eta": 0.8}}

    none = dict(steps=None, samples=None, eta=None, eta_b=None, t_start=None, sigma_y=0.0)
    runner = Runner.__new__(Runner)  # the keyword assembly alone, without loading a model
    runner.entry = opkit.default_registry().solver_entry("ddrm")
    jpeg = opkit.create("jpeg", shape=(3, 16, 16), quality=10)
    runner.args = argparse.Namespace(op="jpeg", **none)
    # DDRM's defaults for encode/decode pairs, then the model's tuned settings
    want = {"t_start": 45, "steps": 6, "num_samples": 8, "eta": 0.8, "eta_b": 0.4}
    assert runner.keywords(jpeg, Model()) == want
    runner.args = argparse.Namespace(op="jpeg", **{**none, "samples": 2, "eta_b": 0.5, "sigma_y": 0.0})
    assert runner.keywords(jpeg, Model()) == {**want, "num_samples": 2, "eta_b": 0.5}
    sr = opkit.create("sr_block", shape=(3, 16, 16), factor=2)
    runner.args = argparse.Namespace(op="sr_block", **{**none, "steps": 3, "sigma_y": 0.1})
    svd = {"steps": 3, "eta": 0.85, "eta_b": 1.0, "t_start": None, "sigma_y": 0.1}
    assert runner.keywords(sr, Model()) == svd
    assert runner.keywords(sr, object()) == svd  # a model without settings
    assert runner.effective(sr, object())["num_samples"] == 1  # the signature's default


def test_main_job_prints_only_progress_and_result_lines(tmp_path: Path) -> None:
    """The README's main command with the bundled prior: no third-party warning on stderr."""
    import os
    import subprocess
    import sys

    src = Image.open(_png(tmp_path / "c.png", 32, 48, seed=4))
    src.save(tmp_path / "c.jpg", quality=10)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "opkit_cli", "restore", str(tmp_path / "c.jpg"), "--op", "jpeg"]
    cmd += ["-o", str(tmp_path / "r.png"), "--steps", "2", "--samples", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"wrote {tmp_path / 'r.png'} (ddrm, jpeg, (3, 32, 48))"]
    # stderr: nothing, or the progress bar (not a terminal here, so it is off by default)
    assert [ln for ln in res.stderr.splitlines() if ln.strip() and "%|" not in ln] == []


def test_opkit_solvers_lists_builtins_and_the_example_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    for name in ("ddrm", "driftrec", "pigdm"):
        assert f"\n{name} " in f"\n{out}"
    assert "operators: svd, linear, encode_decode   model: prior" in out  # pigdm
    try:
        import opkit_ddnm  # noqa: F401  (the example third-party package, installed by CI)
    except ImportError:
        return
    assert "[plugin: ddnm]" in out


@pytest.mark.parametrize("solver", ["pigdm", "ddnm", "diffpir", "dps"])
def test_restore_with_any_registered_solver(tmp_path: Path, prior_dir: Path, solver: str) -> None:
    if solver == "ddnm":
        pytest.importorskip("opkit_ddnm")  # the example third-party package
    clean = _png(tmp_path / "clean.png", 16, 32)
    low = tmp_path / "low.png"
    assert main(["degrade", str(clean), "--op", "sr_block", "--param", "factor=2", "-o", str(low)]) == 0
    out = tmp_path / "x.png"
    args = ["restore", str(low), "--op", "sr_block", "--param", "factor=2", "--model", str(prior_dir)]
    assert main([*args, "--solver", solver, "--steps", "2", "--quiet", "-o", str(out)]) == 0
    assert load_image(out).shape == (1, 3, 16, 32)


def test_solver_options_reach_the_solver_through_its_registry_entry(tmp_path: Path, prior_dir: Path) -> None:
    """``--solver-option K=V`` sets any keyword the entry lists, on top of the entry's settings."""
    import torch

    import opkit
    from opkit_cli.main import build_parser
    from opkit_cli.runner import Runner

    low = _png(tmp_path / "low.png", 8, 16)
    base = ["restore", str(low), "--op", "sr_block", "--param", "factor=2", "--model", str(prior_dir)]
    base += ["--steps", "2", "--quiet", "-o", str(tmp_path / "x.png"), "--force"]
    args = build_parser().parse_args(
        [*base, "--solver", "diffpir", "--solver-option", "lam=3", "--device", "cpu"]
    )
    op = opkit.create("sr_block", shape=(3, 8, 16), factor=2)
    kw = Runner(args, torch.Generator(), progress=False).keywords(op)
    assert kw["lam"] == 3 and kw["zeta"] == 0.25 and kw["steps"] == 2  # the task's ζ stays
    assert (
        main([*base, "--solver", "diffpir", "--solver-option", "lam=3", "--solver-option", "skip='uniform'"])
        == 0
    )
    assert main([*base, "--solver", "dps", "--solver-option", "zeta=0.5"]) == 0
    with pytest.raises(SystemExit, match="--solver-option eta does not apply to --solver diffpir"):
        main([*base, "--solver", "diffpir", "--solver-option", "eta=0.5"])
    with pytest.raises(SystemExit, match="--solver-option lam does not apply to --solver ddrm"):
        main([*base, "--solver", "ddrm", "--solver-option", "lam=3"])
    with pytest.raises(SystemExit, match="--solver-option expects key=value"):
        main([*base, "--solver", "dps", "--solver-option", "zeta"])
    with pytest.raises(SystemExit, match="zeta must"):  # the solver's own check, in one line
        main([*base, "--solver", "diffpir", "--solver-option", "zeta=2"])


def test_restore_refuses_options_a_solver_does_not_take(
    tmp_path: Path, prior_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    low = _png(tmp_path / "low.png", 8, 16)
    base = ["restore", str(low), "--model", str(prior_dir), "--quiet", "-o", str(tmp_path / "x.png")]
    with pytest.raises(SystemExit, match="--eta-b does not apply to --solver pigdm"):
        main([*base, "--op", "sr_block", "--param", "factor=2", "--solver", "pigdm", "--eta-b", "0.5"])
    with pytest.raises(SystemExit):  # a usage error, listing the solvers
        main([*base, "--op", "sr_block", "--param", "factor=2", "--solver", "nope"])
    assert "unknown solver 'nope'; available: " in capsys.readouterr().err
