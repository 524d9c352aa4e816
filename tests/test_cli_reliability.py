"""The command line given bad inputs, interrupts and dangerous outputs, as a new user would give them.

Every case checks what the command-line page promises: the exit status, one ``opkit:`` line
naming the problem (never a traceback), inputs byte-identical afterwards, and no partial or
temporary file left behind (``snapshot`` compares every file of the folder before and after).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import opkit
from opkit.images import load_image
from opkit_cli.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from opkit_cli.main import main
from tests.helpers import cli

ROOT = Path(__file__).resolve().parents[1]


# -- helpers -------------------------------------------------------------------------------------
def run_process(
    *argv: object, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m opkit_cli ARGV`` in a real process."""
    return subprocess.run(
        [sys.executable, "-m", "opkit_cli", *map(str, argv)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(result: tuple[int, str, str], code: int, *fragments: str) -> None:
    """The command failed with ``code`` and exactly one ``opkit:`` line holding every fragment."""
    status, _, err = result
    assert status == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("opkit: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def png(path: Path, h: int = 16, w: int = 16, seed: int = 0, channels: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels > 1 else (h, w)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def drift_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from solvers.sdes.score_models import ScoreModel

    d = tmp_path_factory.mktemp("models") / "drift"
    ScoreModel.from_preset("tiny").save_pretrained(d)
    return d


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder with a colour PNG ``in.png`` (16x16) and an eval folder ``imgs`` of two images."""
    png(tmp_path / "in.png")
    (tmp_path / "imgs").mkdir()
    png(tmp_path / "imgs" / "a.png", seed=1)
    png(tmp_path / "imgs" / "b.png", seed=2)
    return tmp_path


# -- data loss: nothing overwritten, truncated or lost without --force ----------------------------
def test_eval_refuses_to_write_csv_or_plot_over_an_evaluated_image(capsys: Any, work: Path) -> None:
    before = snapshot(work)
    base = ["eval", work / "imgs", "--op", "jpeg", "--qualities", "10", "--model", "nowhere"]
    refused(
        cli(capsys, *base, "--csv", work / "imgs" / "a.png"), EXIT_ERROR, "refusing to overwrite the input"
    )
    refused(
        cli(capsys, *base, "--plot", work / "imgs" / "b.png", "--force"),
        EXIT_ERROR,
        "--plot",
        "refusing to overwrite the input",
    )
    assert snapshot(work) == before


def test_eval_replaces_an_existing_csv_only_with_force(capsys: Any, work: Path, prior_dir: Path) -> None:
    (work / "scores.csv").write_text("keep me")
    before = snapshot(work)
    args = ["eval", work / "imgs", "--op", "sr_block", "--param", "factor=2", "--model", prior_dir]
    args += ["--steps", "1", "--csv", work / "scores.csv"]
    refused(cli(capsys, *args), EXIT_ERROR, "scores.csv exists; pass --force to overwrite it")
    assert snapshot(work) == before
    status, _, err = cli(capsys, *args, "--force")
    assert status == EXIT_OK, err
    assert (work / "scores.csv").read_text().startswith("image,quality,bpp,method,PSNR")
    after = snapshot(work)
    assert set(after) == set(before) and all(after[k] == before[k] for k in before if k != "scores.csv")


def test_train_never_replaces_a_model_folder(
    capsys: Any, work: Path, prior_dir: Path, drift_dir: Path
) -> None:
    model = work / "model"
    shutil.copytree(prior_dir, model)  # a finished model, not a training run
    drift_run = work / "drift_run"
    shutil.copytree(drift_dir, drift_run)
    (drift_run / "training_state.json").write_text("{}")
    before = snapshot(work)
    common = ["--steps", "1", "--batch", "1", "--crop", "16", "--preset", "tiny"]
    refused(
        cli(capsys, "train", "prior", work / "imgs", "-o", model, *common),
        EXIT_ERROR,
        "exists and is not a resumable `opkit train prior` run",
    )
    refused(
        cli(capsys, "train", "prior", work / "imgs", "-o", drift_run, *common),
        EXIT_ERROR,
        "holds an `opkit train driftrec` run",
    )
    refused(
        cli(capsys, "train", "prior", work / "imgs", "-o", work / "in.png", *common),
        EXIT_ERROR,
        "not a folder",
    )
    refused(
        cli(capsys, "train", "driftrec", work / "imgs", "-o", work / "no" / "m", *common),
        EXIT_ERROR,
        "does not exist",
    )
    assert snapshot(work) == before


def test_train_never_writes_into_the_bundled_models(capsys: Any, tmp_path: Path) -> None:
    weights = ROOT / "solvers" / "weights"
    before = snapshot(weights)
    for out in (weights / "prior", weights / "new_model"):
        refused(
            cli(capsys, "train", "prior", "-o", out, "--steps", "1"),
            EXIT_ERROR,
            "refusing to write into the bundled models",
        )
    assert snapshot(weights) == before


def test_train_resumes_its_own_run_and_writes_atomically(capsys: Any, work: Path) -> None:
    run = work / "run"
    common = ["--batch", "1", "--crop", "16", "--preset", "tiny"]
    status, out, err = cli(capsys, "train", "prior", work / "imgs", "-o", run, "--steps", "1", *common)
    assert status == EXIT_OK, err
    status, out, err = cli(capsys, "train", "prior", work / "imgs", "-o", run, "--steps", "2", *common)
    assert status == EXIT_OK, err
    assert out.startswith("prior: 2 steps")
    assert json.loads((run / "training_state.json").read_text())["step"] == 2
    assert not [p for p in work.rglob("*") if ".part" in p.name]
    (run / "training_state.json").write_text("{}")  # a damaged run is named, not resumed blindly
    before = snapshot(work)
    refused(
        cli(capsys, "train", "prior", work / "imgs", "-o", run, "--steps", "3", *common),
        EXIT_ERROR,
        "training_state.json and training_state.safetensors do not hold a training state",
    )
    assert snapshot(work) == before


def test_restore_refuses_truth_or_output_as_compare_even_with_force(capsys: Any, work: Path) -> None:
    png(work / "truth.png", seed=5)
    before = snapshot(work)
    args = ["restore", work / "in.png", "--op", "denoise", "--model", "nowhere", "--force"]
    refused(
        cli(
            capsys,
            *args,
            "-o",
            work / "o.png",
            "--truth",
            work / "truth.png",
            "--compare",
            work / "truth.png",
        ),
        EXIT_ERROR,
        "refusing to overwrite the input",
        "truth.png",
    )
    refused(
        cli(capsys, *args, "-o", work / "o.png", "--compare", work / "o.png"),
        EXIT_ERROR,
        "-o and --compare name the same file",
    )
    refused(cli(capsys, *args, "-o", work / "o.png", "--truth", work / "truth.png"), EXIT_ERROR, "--truth")
    assert snapshot(work) == before


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_an_output_linked_to_the_input_is_refused(capsys: Any, work: Path, link: str) -> None:
    out = work / "out.png"
    if link == "hard":
        os.link(work / "in.png", out)
    else:
        out.symlink_to(work / "in.png")
    before = snapshot(work)
    refused(
        cli(capsys, "degrade", work / "in.png", "--op", "denoise", "-o", out, "--force"),
        EXIT_ERROR,
        "refusing to overwrite the input",
    )
    assert snapshot(work) == before


def test_an_interrupted_write_keeps_the_old_output_and_leaves_no_partial_file(
    capsys: Any, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = png(work / "out.png", seed=9)
    before = snapshot(work)

    def interrupted_save(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        Path(str(fp)).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted_save)
    status, _, err = cli(capsys, "degrade", work / "in.png", "--op", "denoise", "-o", out, "--force")
    assert status == EXIT_INTERRUPTED and err.strip() == "opkit: interrupted"
    assert snapshot(work) == before


def test_a_failed_write_is_one_line_and_leaves_no_partial_file(
    capsys: Any, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(work)

    def disk_full(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        Path(str(fp)).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device", str(fp))

    monkeypatch.setattr(Image.Image, "save", disk_full)
    refused(
        cli(capsys, "degrade", work / "in.png", "--op", "denoise", "-o", work / "o.png"),
        EXIT_ERROR,
        "No space left on device",
    )
    assert snapshot(work) == before


def test_outputs_are_checked_before_any_work(capsys: Any, work: Path) -> None:
    (work / "adir.png").mkdir()
    before = snapshot(work)
    restore = ["restore", work / "in.png", "--op", "denoise", "--model", "nowhere"]
    refused(cli(capsys, *restore, "-o", work / "x.xyz"), EXIT_ERROR, "-o", "unknown suffix '.xyz'")
    refused(cli(capsys, *restore, "-o", work / "noext"), EXIT_ERROR, "no suffix")
    refused(cli(capsys, *restore, "-o", work / "in.png" / "x.png"), EXIT_ERROR, "is not a folder")
    refused(cli(capsys, *restore, "-o", work / "adir.png"), EXIT_ERROR, "is a folder")
    refused(cli(capsys, *restore, "-o", work / "o.png", "--compare", work / "c.txt"), EXIT_ERROR, "--compare")
    refused(
        cli(capsys, "degrade", work / "in.png", "--op", "denoise", "-o", work / "x.webp"),
        EXIT_ERROR,
        "no file format plugin writes .webp files for --op denoise",
        ".png",
    )
    refused(
        cli(capsys, "eval", work / "imgs", "--op", "jpeg", "--qualities", "10", "--plot", work / "p.xyz"),
        EXIT_ERROR,
        "--plot",
        "unknown suffix",
    )
    assert snapshot(work) == before


def test_an_unwritable_folder_is_found_before_any_work(
    capsys: Any, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opkit import files as ofiles

    def denied(target: Path, *, directory: bool = False) -> Path:
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(ofiles, "_temp_beside", denied)
    refused(
        cli(
            capsys, "restore", work / "in.png", "--op", "denoise", "--model", "nowhere", "-o", work / "o.png"
        ),
        EXIT_ERROR,
        "cannot write into",
        "Permission denied",
    )


# -- wrong results given silently ----------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 3, 8])
def test_degrade_quantize_writes_a_viewable_image_whose_levels_restore_recovers(
    capsys: Any, work: Path, bits: int
) -> None:
    out = work / "q.png"
    status, _, err = cli(
        capsys, "degrade", work / "in.png", "--op", "quantize", "--param", f"bits={bits}", "-o", out
    )
    assert status == EXIT_OK, err
    x, q = load_image(work / "in.png", dtype=torch.float64), load_image(out, dtype=torch.float64)
    op = opkit.create("quantize", shape=(3, 16, 16), bits=bits)
    levels = op(x)
    want = torch.round((levels.double() + 0.5) / 2**bits * 255) / 255  # Decode(Encode(x)) in 8 bits
    assert torch.equal(q, want)
    assert torch.equal(op(q), levels)  # what restore re-encodes: exactly the measurement


def test_degrade_refuses_a_jpeg_file_for_another_operator(capsys: Any, work: Path) -> None:
    before = snapshot(work)
    refused(
        cli(
            capsys,
            "degrade",
            work / "in.png",
            "--op",
            "sr_block",
            "--param",
            "factor=2",
            "-o",
            work / "x.jpg",
        ),
        EXIT_ERROR,
        "no file format plugin writes .jpg files for --op sr_block",
    )
    assert snapshot(work) == before


@pytest.mark.parametrize("value", ["-0.1", "nan", "inf"])
def test_degrade_refuses_a_negative_or_nan_sigma(capsys: Any, work: Path, value: str) -> None:
    before = snapshot(work)
    args = ["degrade", work / "in.png", "--op", "denoise", f"--sigma-y={value}", "-o", work / "o.png"]
    refused(cli(capsys, *args), EXIT_USAGE, "opkit: degrade: argument --sigma-y")
    assert snapshot(work) == before


@pytest.mark.parametrize("command", ["restore", "eval"])
def test_steps_zero_is_refused(capsys: Any, work: Path, command: str) -> None:
    target = work / "in.png" if command == "restore" else work / "imgs"
    extra = ["-o", work / "o.png"] if command == "restore" else []
    refused(
        cli(capsys, command, target, "--op", "denoise", "--steps", "0", *extra),
        EXIT_USAGE,
        f"opkit: {command}: argument --steps: must be a positive integer, got '0'",
    )


@pytest.mark.parametrize("name", ["sr_block", "sr_bicubic"])
def test_restore_super_resolution_defaults_to_factor_4(
    capsys: Any, work: Path, prior_dir: Path, name: str
) -> None:
    low = png(work / "low.png", 8, 6)
    status, _, err = cli(
        capsys,
        "restore",
        low,
        "--op",
        name,
        "--model",
        prior_dir,
        "--steps",
        "1",
        "--quiet",
        "-o",
        work / "x.png",
    )
    assert status == EXIT_OK, err
    assert load_image(work / "x.png").shape == (1, 3, 32, 24)


def test_a_greyscale_jpeg_restores_as_one_channel(
    capsys: Any, work: Path, prior_dir: Path, drift_dir: Path
) -> None:
    Image.open(png(work / "g.png", channels=1)).save(work / "g.jpg", quality=30)
    before = (work / "g.jpg").read_bytes()
    for solver, model in (("ddrm", prior_dir), ("driftrec", drift_dir)):
        out = work / f"r_{solver}.png"
        args = [
            "restore",
            work / "g.jpg",
            "--op",
            "jpeg",
            "--solver",
            solver,
            "--model",
            model,
            "--steps",
            "2",
        ]
        status, _, err = cli(capsys, *args, "--quiet", "-o", out)
        assert status == EXIT_OK, err
        assert Image.open(out).mode == "L" and load_image(out).shape == (1, 1, 16, 16)
    assert (work / "g.jpg").read_bytes() == before


def test_a_16bit_greyscale_png_restores_with_every_solver(
    capsys: Any, work: Path, prior_dir: Path, drift_dir: Path
) -> None:
    arr = np.random.default_rng(3).integers(0, 65536, (16, 16), dtype=np.uint16)
    Image.fromarray(arr).save(work / "g16.png")
    for solver, model, op in (
        ("ddrm", prior_dir, "denoise"),
        ("ddrm", prior_dir, "sr_block"),
        ("driftrec", drift_dir, "denoise"),
    ):
        out = work / f"r_{solver}_{op}.png"
        args = ["restore", work / "g16.png", "--op", op, "--solver", solver, "--model", model, "--steps", "1"]
        status, _, err = cli(capsys, *args, "--quiet", "-o", out)
        assert status == EXIT_OK, err
        assert load_image(out).shape[:2] == (1, 1)


def test_a_greyscale_image_and_a_channel_dependent_operator_are_refused(
    capsys: Any, work: Path, prior_dir: Path
) -> None:
    png(work / "g.png", channels=1)
    args = [
        "restore",
        work / "g.png",
        "--op",
        "inpaint",
        "--param",
        "missing=0.5",
        "--param",
        "per_channel=True",
    ]
    refused(
        cli(capsys, *args, "--model", prior_dir, "--steps", "1", "-o", work / "o.png"),
        EXIT_ERROR,
        "treats the three channels differently",
    )
    assert not (work / "o.png").exists()


def test_a_dropped_alpha_channel_is_said_on_stderr(capsys: Any, work: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    rgba[..., 3] = 100
    Image.fromarray(rgba, "RGBA").save(work / "a.png")
    status, _, err = cli(capsys, "degrade", work / "a.png", "--op", "denoise", "-o", work / "o.png")
    assert status == EXIT_OK
    message = "its alpha channel (transparency) is dropped; the stored colours are used"
    assert err.strip().splitlines() == [f"opkit: warning: {work / 'a.png'}: {message}"]


def test_a_model_returning_nan_stops_with_the_step(capsys: Any, work: Path, prior_dir: Path) -> None:
    from diffusers import UNet2DModel

    bad = work / "nan_prior"
    shutil.copytree(prior_dir, bad)
    net = UNet2DModel.from_pretrained(str(bad / "unet"), low_cpu_mem_usage=False)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(float("nan"))
    net.save_pretrained(str(bad / "unet"), safe_serialization=True)
    refused(
        cli(
            capsys,
            "restore",
            work / "in.png",
            "--op",
            "denoise",
            "--model",
            bad,
            "--steps",
            "2",
            "--quiet",
            "-o",
            work / "o.png",
        ),
        EXIT_ERROR,
        "the model returned NaN or infinity at step 1 of 2 (timestep 500)",
    )
    assert not (work / "o.png").exists()


# -- resources and interrupts --------------------------------------------------------------------
def _bomb(path: Path, side: int = 10000) -> Path:
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_is_refused_from_its_header(capsys: Any, work: Path) -> None:
    bomb = _bomb(work / "bomb.jpg")
    assert bomb.stat().st_size < 1000
    before = snapshot(work)
    message = (
        "declares 10000x10000 = 100.0 megapixels, more than the limit of 50 megapixels",
        "--max-pixels",
    )
    t0 = time.perf_counter()
    refused(cli(capsys, "degrade", bomb, "--op", "denoise", "-o", work / "o.png"), EXIT_ERROR, *message)
    refused(
        cli(capsys, "restore", bomb, "--op", "jpeg", "--model", "nowhere", "-o", work / "o.png"),
        EXIT_ERROR,
        *message,
    )
    shutil.copy(bomb, work / "imgs" / "c.jpg")
    refused(cli(capsys, "eval", work / "imgs", "--op", "denoise", "--model", "nowhere"), EXIT_ERROR, *message)
    assert time.perf_counter() - t0 < 10  # nothing was decoded
    (work / "imgs" / "c.jpg").unlink()
    assert snapshot(work) == before


def test_max_pixels_sets_the_limit(capsys: Any, work: Path) -> None:
    png(work / "big.png", 100, 100)
    args = ["degrade", work / "big.png", "--op", "denoise", "-o", work / "o.png"]
    refused(cli(capsys, *args, "--max-pixels", "5000"), EXIT_ERROR, "100x100", "limit of 0.005 megapixels")
    assert cli(capsys, *args, "--max-pixels", "10000")[0] == EXIT_OK
    refused(cli(capsys, *args, "--max-pixels", "-1"), EXIT_USAGE, "--max-pixels")


def test_a_header_pillow_refuses_is_one_line(capsys: Any, work: Path) -> None:
    data = bytearray((work / "in.png").read_bytes())
    data[16:24] = struct.pack(">II", 0, 0)  # IHDR with zero size
    (work / "bad.png").write_bytes(bytes(data))
    refused(
        cli(capsys, "degrade", work / "bad.png", "--op", "denoise", "-o", work / "o.png"),
        EXIT_ERROR,
        "cannot read",
        "bad.png",
    )
    (work / "junk.png").write_bytes(b"not an image at all")
    refused(
        cli(capsys, "degrade", work / "junk.png", "--op", "denoise", "-o", work / "o.png"),
        EXIT_ERROR,
        "cannot read",
        "junk.png",
    )


def test_ctrl_c_prints_one_line_removes_partial_files_and_exits_130(work: Path, prior_dir: Path) -> None:
    png(work / "big.png", 64, 64)
    before = snapshot(work)
    err_path = work.parent / f"{work.name}_stderr.txt"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "opkit_cli",
                "restore",
                "big.png",
                "--op",
                "denoise",
                "--model",
                str(prior_dir),
                "--steps",
                "1000",
                "-o",
                "out.png",
            ],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=err,
            # as in a terminal's foreground job: a job started in the background of a
            # non-interactive shell (as CI may be) inherits an ignored SIGINT, and Python keeps it so
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.time() + 120
        while "DDRM" not in err_path.read_text() and time.time() < deadline:  # the progress bar runs
            assert proc.poll() is None, err_path.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=60)
    text = err_path.read_text()
    assert status == EXIT_INTERRUPTED, text
    assert "Traceback" not in text and text.strip().splitlines()[-1] == "opkit: interrupted"
    assert snapshot(work) == before  # no output, no partial file


# -- tracebacks that are one line now ------------------------------------------------------------
def test_missing_or_folder_jpeg_inputs(capsys: Any, work: Path) -> None:
    (work / "dir.jpg").mkdir()
    restore = ["restore", "--op", "jpeg", "--model", "nowhere", "-o", work / "o.png"]
    refused(cli(capsys, *restore, work / "none.jpg"), EXIT_ERROR, "no such JPEG file", "none.jpg")
    refused(cli(capsys, *restore, work / "dir.jpg"), EXIT_ERROR, "dir.jpg is a folder")
    degrade = ["degrade", "--op", "jpeg", "-o", work / "o.png"]
    refused(cli(capsys, *degrade, work / "none.jpg"), EXIT_ERROR, "no such image file", "none.jpg")
    refused(cli(capsys, *degrade, work / "dir.jpg"), EXIT_ERROR, "dir.jpg is a folder")


def test_damaged_model_folders_are_named(capsys: Any, work: Path, prior_dir: Path, drift_dir: Path) -> None:
    def damaged(src: Path, name: str, rel: str, content: bytes | None) -> Path:
        d = work / name
        shutil.copytree(src, d)
        f = d / rel
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2] if content is None else content)
        return d

    weights = "diffusion_pytorch_model.safetensors"
    meta = json.loads((drift_dir / "driftrec.json").read_text())
    del meta["sde"]
    no_sde = json.dumps(meta).encode()
    sched = "scheduler/scheduler_config.json"
    cases = [
        ("ddrm", damaged(prior_dir, "p_cut", f"unet/{weights}", None), ("cannot load the model", weights)),
        (
            "ddrm",
            damaged(prior_dir, "p_junk", f"unet/{weights}", b"junk"),
            ("cannot load the model", weights),
        ),
        ("ddrm", damaged(prior_dir, "p_json", sched, b"{x"), ("scheduler_config.json is not valid JSON",)),
        ("ddrm", damaged(prior_dir, "p_cfg", "unet/config.json", b"[1"), ("config.json is not valid JSON",)),
        ("driftrec", damaged(drift_dir, "d_cut", weights, None), (weights, "is not a readable safetensors")),
        ("driftrec", damaged(drift_dir, "d_sde", "driftrec.json", no_sde), ('driftrec.json has no "sde"',)),
        (
            "driftrec",
            damaged(drift_dir, "d_json", "driftrec.json", b"{oops"),
            ("driftrec.json is not valid JSON",),
        ),
    ]
    for solver, model, fragments in cases:
        refused(
            cli(
                capsys,
                "restore",
                work / "in.png",
                "--op",
                "denoise",
                "--solver",
                solver,
                "--model",
                model,
                "-o",
                work / "o.png",
            ),
            EXIT_ERROR,
            *fragments,
        )
    assert not (work / "o.png").exists()


def test_a_corrupt_image_in_the_eval_folder(capsys: Any, work: Path, prior_dir: Path) -> None:
    (work / "imgs" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    args = ["eval", work / "imgs", "--op", "denoise", "--model", prior_dir, "--steps", "1"]
    refused(cli(capsys, *args), EXIT_ERROR, "cannot read", "c.png")
    data = (work / "imgs" / "b.png").read_bytes()
    (work / "imgs" / "c.png").write_bytes(data[: len(data) - 200])  # the header is fine, the pixels are cut
    refused(cli(capsys, *args), EXIT_ERROR, "cannot read", "c.png")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--qualities", "10,abc", "JPEG quality 'abc' is not an integer"),
        ("--qualities", "0,50", "JPEG quality 0 is not in 1..100"),
        ("--multiple", "0", "argument --multiple: must be a positive integer"),
        ("--samples", "-2", "argument --samples: must be a positive integer"),
    ],
)
def test_bad_eval_options_are_usage_errors(
    capsys: Any, work: Path, option: str, value: str, message: str
) -> None:
    refused(cli(capsys, "eval", work / "imgs", "--op", "jpeg", f"{option}={value}"), EXIT_USAGE, message)


def test_outputs_in_a_missing_folder(capsys: Any, work: Path) -> None:
    before = snapshot(work)
    refused(
        cli(capsys, "eval", work / "imgs", "--op", "jpeg", "--csv", work / "nodir" / "x.csv"),
        EXIT_ERROR,
        "--csv",
        "the folder",
        "does not exist",
    )
    refused(
        cli(capsys, "degrade", work / "in.png", "--op", "jpeg", "-o", work / "nodir" / "x.jpg"),
        EXIT_ERROR,
        "the folder",
        "does not exist",
    )
    assert snapshot(work) == before


def test_bad_param_values_are_named(capsys: Any, work: Path) -> None:
    restore = ["restore", work / "in.png", "--model", "nowhere", "-o", work / "o.png"]
    refused(
        cli(capsys, *restore, "--op", "sr_block", "--param", "factor=abc"),
        EXIT_ERROR,
        "sr_block: factor must be a positive integer, got 'abc'",
    )
    refused(
        cli(capsys, *restore, "--op", "sr_block", "--param", "fator=2"),
        EXIT_ERROR,
        "sr_block has no parameter 'fator'; its parameters: factor",
    )
    refused(cli(capsys, *restore, "--op", "blur", "--param", "kernel=bogus"), EXIT_ERROR, "blur:", "bogus")
    refused(cli(capsys, *restore, "--op", "nope"), EXIT_ERROR, "unknown operator 'nope'; available:")
    refused(cli(capsys, *restore, "--op", "denoise", "--param", "x"), EXIT_ERROR, "--param expects key=value")


def test_too_many_steps_for_jpeg_are_explained_in_command_line_terms(capsys: Any, work: Path) -> None:
    Image.open(work / "in.png").save(work / "in.jpg", quality=50)
    refused(
        cli(
            capsys,
            "restore",
            work / "in.jpg",
            "--op",
            "jpeg",
            "--steps",
            "400",
            "--t-start",
            "300",
            "-o",
            work / "o.png",
        ),
        EXIT_ERROR,
        "--steps 400 is too many for --op jpeg",
        "at most 301 steps",
    )


# -- plugins -------------------------------------------------------------------------------------
def test_a_plugin_raising_system_exit_does_not_end_any_command(work: Path) -> None:
    site = work / "site"
    dist = site / "badplug-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: badplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[opkit]\nexit_import = badplug_import\nexit_hook = badplug_hook\n"
    )
    (site / "badplug_import.py").write_text("import sys\nsys.exit(4)\n")
    hook = "@opkit.hookimpl\ndef opkit_register_operators(registry):\n    raise SystemExit('no')\n"
    (site / "badplug_hook.py").write_text("import opkit\n\n" + hook)
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    ops = run_process("ops", cwd=work, env=env)
    assert ops.returncode == EXIT_OK, ops.stderr
    assert "denoise" in ops.stdout and "Traceback" not in ops.stderr
    assert "(skipped plugin exit_import: failed to import 'badplug_import': SystemExit: 4)" in ops.stderr
    assert "(skipped plugin exit_hook: failed to register: SystemExit: no)" in ops.stderr
    degrade = run_process("degrade", "in.png", "--op", "denoise", "-o", "o.png", cwd=work, env=env)
    assert degrade.returncode == EXIT_OK, degrade.stderr
    warned = degrade.stderr.strip().splitlines()
    assert len(warned) == 2 and all(line.startswith("opkit: warning: opkit plugin 'exit_") for line in warned)


# -- more found by trying ------------------------------------------------------------------------
def test_a_real_process_exits_1_with_one_line(work: Path) -> None:
    res = run_process("degrade", "none.png", "--op", "denoise", "-o", "o.png", cwd=work)
    assert res.returncode == EXIT_ERROR
    assert res.stderr.strip() == "opkit: no such image file: none.png"


def test_usage_errors_are_one_line(capsys: Any) -> None:
    refused(
        cli(capsys), EXIT_USAGE, "opkit: the following arguments are required: command (see 'opkit --help')"
    )
    refused(
        cli(capsys, "degrade", "x.png"), EXIT_USAGE, "opkit: degrade: the following arguments are required"
    )
    refused(
        cli(capsys, "restore", "x.png", "--op", "denoise", "--solver", "nosuch", "-o", "o.png"),
        EXIT_USAGE,
        "--solver",
    )


def test_sigma_y_where_it_cannot_apply(capsys: Any, work: Path) -> None:
    base = ["restore", work / "in.png", "--model", "nowhere", "-o", work / "o.png", "--sigma-y", "0.1"]
    refused(
        cli(capsys, *base, "--op", "denoise", "--solver", "driftrec"),
        EXIT_ERROR,
        "--sigma-y does not apply to --solver driftrec",
    )
    refused(cli(capsys, *base, "--op", "quantize"), EXIT_ERROR, "--sigma-y does not apply to --op quantize")
    refused(
        cli(capsys, "degrade", work / "in.png", "--op", "jpeg", "--sigma-y", "0.1", "-o", work / "o.png"),
        EXIT_ERROR,
        "--sigma-y does not apply to --op jpeg",
    )


def test_eval_plot_needs_a_jpeg_operator(capsys: Any, work: Path) -> None:
    refused(
        cli(capsys, "eval", work / "imgs", "--op", "denoise", "--plot", work / "rd.png"),
        EXIT_ERROR,
        "--plot draws PSNR against the bits per pixel of the measurement's file; no file format "
        "plugin writes one for --op denoise",
    )
    refused(
        cli(capsys, "eval", work / "imgs", "--op", "denoise", "--qualities", "10"),
        EXIT_ERROR,
        "denoise has no quality parameter",
    )
    assert not (work / "rd.png").exists()


def test_train_options_that_cannot_apply(capsys: Any, work: Path) -> None:
    out = ["-o", work / "m", "--steps", "1"]
    refused(
        cli(capsys, "train", "prior", work / "imgs", *out, "--qualities", "5-50"),
        EXIT_ERROR,
        "--qualities apply to",
    )
    refused(
        cli(capsys, "train", "driftrec", work / "imgs", *out, "--qualities", "50-5"),
        EXIT_USAGE,
        "empty quality range",
    )
    refused(
        cli(capsys, "train", "driftrec", work / "imgs", *out, "--param", "qualty=3"),
        EXIT_ERROR,
        "jpeg has no parameter 'qualty'",
    )
    refused(cli(capsys, "train", "prior", work / "nothing", *out), EXIT_ERROR, "no such folder")
    refused(
        cli(capsys, "train", "prior", work / "imgs", *out, "--crop", "64"),
        EXIT_ERROR,
        "no training images of at least 64x64 pixels",
    )
    refused(cli(capsys, "train", "prior", work / "imgs", *out, "--lr", "-1"), EXIT_USAGE, "--lr")
    if not torch.cuda.is_available():
        refused(
            cli(capsys, "train", "prior", work / "imgs", *out, "--device", "cuda"),
            EXIT_ERROR,
            "CUDA is not available",
        )
    assert not (work / "m").exists()


def test_an_unexpected_error_is_one_line_unless_asked(
    capsys: Any, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(args: Any) -> int:
        raise ZeroDivisionError("division by zero\nsecond line")

    main_module = importlib.import_module("opkit_cli.main")  # the package re-exports main() over it
    monkeypatch.setattr(main_module, "cmd_ops", bug)
    refused(cli(capsys, "ops"), EXIT_ERROR, "internal error: ZeroDivisionError: division by zero second line")
    monkeypatch.setenv("OPKIT_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        main(["ops"])
