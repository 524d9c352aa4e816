"""``opkit eval --task ... --solver a,b``: the field's task presets and its comparison table."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch

import opkit
import solvers
from opkit_cli.errors import EXIT_OK, EXIT_USAGE
from opkit_cli.table import TABLE_FIELDS
from opkit_cli.tasks import PRESETS, degrade
from tests.helpers import cli
from tests.test_cli_reliability import png

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def test_the_presets_are_the_papers_settings() -> None:
    assert list(PRESETS) == [
        "sr4", "gauss_deblur", "motion_deblur", "box_inpaint", "random_inpaint", "colorize", "jpeg10", "cs25",
    ]  # fmt: skip
    at = {name: (p.op, p.params(256, 256, seed=5), p.sigma_y) for name, p in PRESETS.items()}
    assert at["sr4"] == ("sr_bicubic", {"factor": 4}, 0.05)
    assert at["gauss_deblur"] == ("conv2d", {"kernel": "gaussian", "size": 61, "sigma": 3.0}, 0.05)
    motion = {"kernel": "motion", "size": 61, "intensity": 0.5, "seed": 5}
    assert at["motion_deblur"] == ("conv2d", motion, 0.05)
    assert at["box_inpaint"] == (
        "inpaint",
        {"mask": "box", "box_size": 128, "position": "random", "margin": 16, "seed": 5},
        0.05,
    )
    assert at["random_inpaint"] == ("inpaint", {"mask": "random", "missing": 0.7, "seed": 5}, 0.05)
    assert at["colorize"] == ("colorize", {}, 0.0)
    assert at["jpeg10"] == ("jpeg", {"quality": 10}, 0.0)
    assert at["cs25"] == ("cs", {"ratio": 4.0, "seed": 0}, 0.0)
    assert PRESETS["box_inpaint"].params(64, 64, 0)["box_size"] == 32  # scaled with the image
    assert all(p.source for p in PRESETS.values())


def test_the_presets_build_their_operators_and_measurements() -> None:
    x = torch.rand((1, 3, 64, 64), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ops = {}
    for name in PRESETS:
        op, y, _ = degrade(name, x, 3, torch.Generator().manual_seed(0))
        ops[name] = (op, y)
        assert op.name == PRESETS[name].op
    assert ops["sr4"][1].shape == (1, 3, 16, 16)
    box = ops["box_inpaint"][0].mask
    assert int((~box).sum()) == 32 * 32 * box.shape[0]  # one 32×32 box at 64²
    missing = 1 - ops["random_inpaint"][0].mask.double().mean()
    assert abs(float(missing) - 0.7) < 0.01
    assert ops["cs25"][1].shape[-1] == 64 * 64 // 4
    # the deblurring measurement is the exact circular blur plus σ_y = 0.05 noise
    op, y = ops["gauss_deblur"]
    exact = opkit.create("conv2d", shape=(3, 64, 64), kernel="gaussian", size=61, sigma=3.0, threshold=0.0)
    noise = (y - exact(x)).std()
    assert 0.04 < float(noise) < 0.06
    # the motion kernel is drawn from the image's seed
    k3 = degrade("motion_deblur", x, 3, torch.Generator())[0].kernel
    k4 = degrade("motion_deblur", x, 4, torch.Generator())[0].kernel
    assert torch.equal(k3, ops["motion_deblur"][0].kernel) and not torch.equal(k3, k4)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    png(folder / "a.png", 32, 32, seed=1)
    png(folder / "b.png", 32, 32, seed=2)
    return folder


def _table(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_eval_writes_the_task_by_solver_table_with_why_cells(
    capsys: Any, tmp_path: Path, prior_dir: Path
) -> None:
    folder = _folder(tmp_path)
    table, plot = tmp_path / "table.csv", tmp_path / "table.png"
    args = ["eval", folder, "--task", "sr4,box_inpaint,jpeg10", "--solver", "ddrm,diffpir"]
    args += ["--model", prior_dir, "--steps", "2", "--samples", "1", "--csv", table, "--plot", plot]
    code, out, err = cli(capsys, *args)
    assert code == EXIT_OK, err
    rows = _table(table)
    assert tuple(rows[0]) == TABLE_FIELDS
    assert TABLE_FIELDS == (
        "task", "solver", "images", "PSNR", "PSNR_sd", "SSIM", "SSIM_sd",
        "calls", "seconds", "seconds_sd", "note",
    )  # fmt: skip
    assert [(r["task"], r["solver"]) for r in rows] == [
        (t, s) for t in ("sr4", "box_inpaint", "jpeg10") for s in ("ddrm", "diffpir")
    ]
    for r in rows:
        if (r["task"], r["solver"]) == ("jpeg10", "diffpir"):
            assert r["images"] == "0" and r["PSNR"] == "" and r["note"] == "needs an SVD"
        else:
            assert r["images"] == "2" and float(r["PSNR"]) > 0 and r["note"] == ""
            assert float(r["calls"]) == 2 and float(r["seconds"]) > 0
    assert "| jpeg10 | diffpir | — (needs an SVD) |" in out
    assert plot.stat().st_size > 0
    assert not Path(f"{table}.parts").exists()


def test_eval_table_resumes_done_cells_and_gathers_shards(
    capsys: Any, tmp_path: Path, prior_dir: Path
) -> None:
    folder = _folder(tmp_path)
    table = tmp_path / "table.csv"
    args = ["eval", folder, "--task", "sr4,colorize", "--solver", "ddrm,dps", "--model", prior_dir]
    args += ["--steps", "2", "--samples", "1", "--solver-option", "dps.zeta=0.5", "--csv", table]
    code, _, err = cli(capsys, *args, "--shard", "0/2")
    assert code == EXIT_OK, err
    assert not table.exists() and "shard 0/2 done" in err
    done = sorted(p.name for p in Path(f"{table}.parts").glob("*.json") if p.name != "settings.json")
    assert len(done) == 4  # half of 2 tasks × 2 solvers × 2 images, one file per cell
    code, _, err = cli(capsys, *args)
    assert code == EXIT_OK, err
    assert "4 cell(s) scored by an earlier run (resumed)" in err
    assert err.count(" dB, ") == 4  # only the other half was restored
    rows = _table(table)
    assert [r["images"] for r in rows] == ["2"] * 4


def test_eval_table_refuses_bad_names_and_mixtures_in_one_line(capsys: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    for extra, fragment in (
        (["--task", "sr5", "--solver", "ddrm"], "unknown task 'sr5'"),
        (["--task", "sr4", "--solver", "ddrm,nope"], "unknown solver 'nope'"),
        (["--task", "sr4", "--op", "jpeg"], "not both"),
        ([], "one of --op, --task is required"),
        (["--op", "jpeg", "--solver", "ddrm,pigdm"], "several --solver names"),
    ):
        code, _, err = cli(capsys, "eval", folder, *extra)
        assert code == EXIT_USAGE, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("opkit: eval: ") and fragment in lines[0], err


def test_eval_table_refuses_an_option_no_solver_takes(capsys: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    args = ["eval", folder, "--task", "sr4", "--solver", "ddrm"]
    code, _, err = cli(capsys, *args, "--solver-option", "lam=3")
    assert code == 1 and "applies to none of --solver ddrm" in err
    code, _, err = cli(capsys, "eval", folder, "--task", "sr4", "--sigma-y", "0.1")
    assert code == 1 and "each task's preset sets its σ_y" in err


def test_driftrec_applies_only_to_the_degradation_its_model_learned() -> None:
    from opkit_cli.table import applies
    from solvers.sdes.score_models import ScoreModel

    jpeg = opkit.create("jpeg", shape=(3, 16, 16), quality=10)
    sr = opkit.create("sr_bicubic", shape=(3, 16, 16), factor=4)
    bundled = solvers.load_driftrec("default")  # its driftrec.json records the pairs it learned: jpeg
    assert applies("driftrec", jpeg, bundled) == ""
    assert applies("driftrec", sr, bundled) == "its model is trained on jpeg only"
    sr_model = ScoreModel.from_preset("tiny", trained_on="sr_bicubic")  # what the model says counts
    assert applies("driftrec", sr, sr_model) == "" and applies("driftrec", jpeg, sr_model) != ""
    assert applies("driftrec", sr) == ""  # before any model is loaded: the kinds only
    assert applies("ddrm", sr) == "" and applies("diffpir", jpeg) == "needs an SVD"


def test_restore_warns_when_driftrec_meets_a_degradation_its_model_did_not_learn(
    capsys: Any, tmp_path: Path
) -> None:
    src = png(tmp_path / "x.png", 16, 16)
    args = ["restore", src, "--solver", "driftrec", "--steps", "2", "--quiet"]
    code, _, err = cli(capsys, *args, "--op", "sr_bicubic", "--param", "factor=2", "-o", tmp_path / "a.png")
    assert code == EXIT_OK
    assert "opkit: warning: driftrec on sr_bicubic: its model is trained on jpeg only" in err
    code, _, err = cli(
        capsys, *args, "--op", "jpeg", "--solver-option", "grid_power=1", "-o", tmp_path / "b.png"
    )
    assert code == EXIT_OK and "warning" not in err  # (2 steps: the uniform grid, not the model's)


def test_restore_applies_the_settings_a_driftrec_model_ships(capsys: Any, tmp_path: Path) -> None:
    from solvers.sdes.score_models import ScoreModel

    model = tmp_path / "m"
    ScoreModel.from_preset("tiny", trained_on="jpeg", settings={"jpeg": {"grid_power": 0.5}}).save_pretrained(
        model
    )
    src = png(tmp_path / "x.png", 16, 16)
    args = ["restore", src, "--op", "jpeg", "--solver", "driftrec", "--model", model, "--quiet"]
    code, _, err = cli(capsys, *args, "--steps", "10", "-o", tmp_path / "a.png")
    assert code != EXIT_OK  # the model's grid_power 0.5 applied: 10 steps are unstable on it
    assert "grid_power=0.5 with 10 steps" in err and "use at least 31 steps, or grid_power=1" in err
    code, _, err = cli(
        capsys, *args, "--steps", "10", "--solver-option", "grid_power=1", "-o", tmp_path / "b.png"
    )
    assert code == EXIT_OK, err  # the user's choice on top
    code, _, err = cli(capsys, *args, "--steps", "31", "-o", tmp_path / "c.png")
    assert code == EXIT_OK, err
