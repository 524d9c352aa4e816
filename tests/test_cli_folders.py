"""``opkit restore`` and ``opkit eval`` over folders: resume, batches, seeds, shards, torchrun, devices."""

from __future__ import annotations

import os
import shutil
import signal
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
import solvers
from opkit_cli.errors import EXIT_ERROR, EXIT_OK
from opkit_cli.folders import Ranks, expand_inputs, image_seed, make_batches, shard_spec
from tests.helpers import cli, single_thread

STEPS = ["--steps", "2"]


def eval_args(prior_dir: Path, imgs: Path) -> list[Any]:
    """``opkit eval`` of the folder ``imgs``: 2x block SR, the tiny prior, two steps."""
    return [
        "eval",
        imgs,
        "--op",
        "sr_block",
        "--param",
        "factor=2",
        "--model",
        prior_dir,
        *STEPS,
        "--multiple",
        "8",
    ]


def png(path: Path, h: int = 16, w: int = 16, seed: int = 0, channels: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels > 1 else (h, w)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def imgs(tmp_path: Path) -> Path:
    """Five 16x16 colour images, a greyscale 16x24 one and a colour 24x16 one."""
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(5):
        png(d / f"c{i}.png", seed=i)
    png(d / "grey.png", 16, 24, seed=10, channels=1)
    png(d / "tall.png", 24, 16, seed=11)
    return d


def restore(prior: Path, *inputs: object, out: Path, extra: tuple[object, ...] = ()) -> list[object]:
    return ["restore", *inputs, "--op", "denoise", "--model", prior, *STEPS, "-o", out, "--quiet", *extra]


# -- pieces ---------------------------------------------------------------------------------------
def test_image_seeds_depend_on_the_seed_and_the_name_only() -> None:
    assert image_seed(0, "a.png") == image_seed(0, "a.png")
    assert len({image_seed(0, "a.png"), image_seed(1, "a.png"), image_seed(0, "b.png")}) == 3
    assert 0 <= image_seed(123, "x.jpg") < 2**63


def test_shard_spec_and_partitions() -> None:
    assert shard_spec("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(Exception, match="i/n"):
            shard_spec(bad)
    items = list(range(23))
    parts = [Ranks(rank=r, world=2, shard=(i, 3)).take(items) for i in range(3) for r in range(2)]
    assert sorted(x for p in parts for x in p) == items  # disjoint, and together the whole


def test_batches_group_equal_sizes_in_a_fixed_order(imgs: Path) -> None:
    found = expand_inputs([str(imgs)])
    assert [f.name for f in found] == [
        "c0.png",
        "c1.png",
        "c2.png",
        "c3.png",
        "c4.png",
        "grey.png",
        "tall.png",
    ]
    batches = make_batches(found, 2)
    assert [[f.name for f in b] for b in batches] == [
        ["c0.png", "c1.png"],
        ["c2.png", "c3.png"],
        ["c4.png"],
        ["grey.png"],
        ["tall.png"],
    ]
    assert expand_inputs([str(imgs / "c*.png"), str(imgs / "c0.png")]) == found[:5]  # glob, once each


def test_ddrm_with_one_generator_per_measurement_equals_each_alone() -> None:
    class Net:
        alphas_cumprod = solvers.priors.linear_alphas_cumprod()

        def __call__(self, x: torch.Tensor, t: Any) -> torch.Tensor:
            return torch.tanh(x) * 0.3

    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    op = opkit.create("sr_block", shape=(3, 8, 8), factor=2)
    y = op(x)
    for k in (1, 2):
        gens = [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
        batch = solvers.ddrm(op, y, Net(), steps=4, num_samples=k, generator=gens)
        alone = [
            solvers.ddrm(
                op, y[i : i + 1], Net(), steps=4, num_samples=k, generator=torch.Generator().manual_seed(s)
            )
            for i, s in enumerate((5, 6, 7))
        ]
        assert torch.equal(batch, torch.cat(alone))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="generators"):
        solvers.ddrm(op, y, Net(), steps=2, generator=[torch.Generator()] * 2)


# -- restore --------------------------------------------------------------------------------------
def test_restore_a_folder_resumes_and_force_redoes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    out = tmp_path / "out"
    status, stdout, err = cli(capsys, *restore(prior_dir, imgs, out=out, extra=("--batch", "4")))
    assert status == EXIT_OK, err
    assert "restored 7 image(s)" in stdout and "0 already done" in stdout
    first = files(out)
    assert sorted(first) == [f"{p.stem}.png" for p in sorted(imgs.iterdir())]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    status, stdout, _ = cli(capsys, *restore(prior_dir, imgs, out=out, extra=("--batch", "4")))
    assert status == EXIT_OK and "restored 0 image(s)" in stdout and "7 already done" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing rewritten
    status, stdout, _ = cli(capsys, *restore(prior_dir, imgs, out=out, extra=("--batch", "4", "--force")))
    assert status == EXIT_OK and "restored 7 image(s)" in stdout
    assert files(out) == first  # the same seeds, the same images


def test_mixed_sizes_grey_and_colour_keep_their_shapes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    out = tmp_path / "out"
    status, _, err = cli(capsys, *restore(prior_dir, imgs, out=out, extra=("--batch", "3")))
    assert status == EXIT_OK, err
    for p in imgs.iterdir():
        src, res = Image.open(p), Image.open(out / f"{p.stem}.png")
        assert res.size == src.size and res.mode == src.mode, p.name


def test_results_do_not_depend_on_batch_order_or_selection(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    runs = {}
    for name, inputs, batch in [
        ("b1", [imgs], "1"),
        ("b4", [imgs], "4"),
        ("some", [imgs / "c3.png", imgs / "grey.png", imgs / "c1.png"], "2"),
    ]:
        status, _, err = cli(
            capsys, *restore(prior_dir, *inputs, out=tmp_path / name, extra=("--batch", batch))
        )
        assert status == EXIT_OK, err
        runs[name] = pixels(tmp_path / name)
    for name, img in runs["b1"].items():
        # batched convolutions may round differently in the last bit; the noise is the same
        assert np.abs(img.astype(int) - runs["b4"][name].astype(int)).max() <= 1, name
    for name, img in runs["some"].items():
        assert np.abs(img.astype(int) - runs["b1"][name].astype(int)).max() <= 1, name


def test_other_solvers_batch_with_one_generator_per_image(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    """ΠGDM takes no generator list: batched images are restored one by one, each with its seed."""
    runs = {}
    for batch in ("1", "4"):
        extra = ("--batch", batch, "--solver", "pigdm")
        status, _, err = cli(capsys, *restore(prior_dir, imgs, out=tmp_path / batch, extra=extra))
        assert status == EXIT_OK, err
        runs[batch] = pixels(tmp_path / batch)
    assert runs["1"].keys() == runs["4"].keys() and len(runs["1"]) == 7
    for name, img in runs["1"].items():
        assert np.array_equal(img, runs["4"][name]), name


def test_shards_add_up_to_the_whole_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert cli(capsys, *restore(prior_dir, imgs, out=whole, extra=("--batch", "2")))[0] == EXIT_OK
    counts = []
    for i in range(3):
        status, stdout, err = cli(
            capsys, *restore(prior_dir, imgs, out=sharded, extra=("--batch", "2", "--shard", f"{i}/3"))
        )
        assert status == EXIT_OK, err
        assert f"(shard {i}/3)" in stdout
        counts.append(int(stdout.split("restored ")[1].split()[0]))
    assert sum(counts) == 7 and all(counts)
    assert files(sharded) == files(whole)  # the same batches, the very same bytes


def test_bad_files_are_reported_and_the_rest_go_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    (imgs / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data = (imgs / "c0.png").read_bytes()
    (imgs / "cut.png").write_bytes(data[: len(data) - 200])
    out = tmp_path / "out"
    status, stdout, err = cli(capsys, *restore(prior_dir, imgs, out=out, extra=("--batch", "4")))
    assert status == EXIT_ERROR
    assert "2 failed" in stdout
    assert "opkit: bad.png: cannot read" in err and "opkit: cut.png:" in err and "Traceback" not in err
    assert sorted(files(out)) == sorted(
        f"{p.stem}.png" for p in imgs.iterdir() if p.stem not in ("bad", "cut")
    )


def test_folder_runs_refuse_unsafe_outputs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    status, _, err = cli(capsys, *restore(prior_dir, imgs, out=imgs))
    assert status == EXIT_ERROR and "is the folder of the input" in err
    png(imgs / "c0.jpg")
    status, _, err = cli(capsys, *restore(prior_dir, imgs, out=tmp_path / "o"))
    assert status == EXIT_ERROR and "the same output" in err
    (imgs / "c0.jpg").unlink()
    status, _, err = cli(capsys, *restore(prior_dir, imgs, out=tmp_path / "o.png"))
    assert status == EXIT_ERROR and "names a folder" in err
    status, _, err = cli(capsys, *restore(prior_dir, imgs, out=tmp_path / "o", extra=("--compare", "c.png")))
    assert status == EXIT_ERROR and "--compare" in err
    assert not (tmp_path / "o").exists()


def test_device_and_dtype_on_cpu(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    for device, dtype in [("auto", "float32"), ("cpu", "bfloat16")]:
        out = tmp_path / f"{device}-{dtype}"
        status, _, err = cli(
            capsys,
            *restore(
                prior_dir,
                imgs / "c0.png",
                imgs / "c1.png",
                out=out,
                extra=("--device", device, "--dtype", dtype),
            ),
        )
        assert status == EXIT_OK, err
        assert len(files(out)) == 2
    if not torch.cuda.is_available():
        status, _, err = cli(
            capsys, *restore(prior_dir, imgs, out=tmp_path / "g", extra=("--device", "cuda:0"))
        )
        assert status == EXIT_ERROR and "CUDA is not available" in err
    status, _, err = cli(capsys, *restore(prior_dir, imgs, out=tmp_path / "g", extra=("--device", "toaster")))
    assert status == EXIT_ERROR and "--device toaster" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_and_dtype_on_cuda(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    cpu = tmp_path / "cpu"
    assert cli(capsys, *restore(prior_dir, imgs, out=cpu, extra=("--device", "cpu")))[0] == EXIT_OK
    for dtype in ("float32", "float16", "bfloat16"):
        out = tmp_path / dtype
        status, _, err = cli(
            capsys, *restore(prior_dir, imgs, out=out, extra=("--device", "cuda", "--dtype", dtype))
        )
        assert status == EXIT_OK, err
        worst = max(np.abs(a.astype(int) - pixels(cpu)[n].astype(int)).max() for n, a in pixels(out).items())
        assert worst <= (3 if dtype == "float32" else 40), (dtype, worst)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_a_killed_run_leaves_no_partial_files_and_resumes(tmp_path: Path, prior_dir: Path) -> None:
    src = tmp_path / "many"
    src.mkdir()
    for i in range(12):
        png(src / f"p{i:02d}.png", seed=i)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "opkit_cli", *map(str, restore(prior_dir, src, out=out))]
    argv[argv.index("2")] = "40"  # --steps 40: slow enough to be killed partway
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (out.is_dir() and len(list(out.glob("p*.png"))) >= 2):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    finished = sorted(out.glob("p*.png"))
    assert 2 <= len(finished) < 12, "the run was not killed partway"
    for p in finished:  # every visible output is a whole image
        Image.open(p).load()
    stamps = {p.name: p.stat().st_mtime_ns for p in finished}
    result = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == EXIT_OK, result.stderr
    assert f"{len(finished)} already done" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"p{i:02d}.png" for i in range(12)]  # no leftovers
    assert all((out / n).stat().st_mtime_ns == t for n, t in stamps.items())


def _torchrun() -> list[str]:
    exe = Path(sys.executable).parent / "opkit"
    if not exe.exists() or shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("needs the opkit and torchrun executables beside the interpreter")
    return [
        str(Path(sys.executable).parent / "torchrun"),
        "--standalone",
        "--nproc-per-node=2",
        "--no-python",
        str(exe),
    ]


def test_torchrun_with_two_processes_equals_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    ev = eval_args(prior_dir, imgs)
    with single_thread():  # as many threads as each torchrun worker (OMP_NUM_THREADS=1): docs/scale.rst
        assert cli(capsys, *restore(prior_dir, imgs, out=one, extra=("--batch", "2")))[0] == EXIT_OK
        status, table, err = cli(capsys, *ev, "--csv", tmp_path / "one.csv")
    assert status == EXIT_OK, err
    run = " ".join(_torchrun())
    rest = " ".join(map(str, restore(prior_dir, imgs, out=two, extra=("--batch", "2"))))
    script = f"{run} {rest} && {run} {' '.join(map(str, ev))} --csv {tmp_path / 'two.csv'}"
    result = subprocess.run(["bash", "-c", script], env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert files(two) == files(one)
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()
    assert table.splitlines()[-1] in result.stdout  # rank 0 printed the same summary


@pytest.mark.parametrize("solver", ["diffpir", "dps"])
def test_new_solvers_in_folder_runs_batches_eval_and_torchrun(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path, solver: str
) -> None:
    """DiffPIR and DPS take one generator per image: any batch restores each image alike; eval and
    two torchrun processes give what one process gives."""
    op = ("--op", "sr_block", "--param", "factor=2", "--sigma-y", "0.05", "--solver", solver)
    runs = {}
    for batch in ("1", "3"):
        argv = [*restore(prior_dir, imgs, out=tmp_path / batch, extra=("--batch", batch))]
        argv[argv.index("--op") : argv.index("--op") + 2] = op  # sr_block instead of denoise
        status, _, err = cli(capsys, *argv)
        assert status == EXIT_OK, err
        runs[batch] = pixels(tmp_path / batch)
    assert runs["1"].keys() == runs["3"].keys() and len(runs["1"]) == 7
    for name, img in runs["1"].items():  # batched convolutions may round differently in the last bit
        assert np.abs(img.astype(int) - runs["3"][name].astype(int)).max() <= 1, name
    ev = [*eval_args(prior_dir, imgs), "--solver", solver, "--sigma-y", "0.05", "--csv", tmp_path / "one.csv"]
    status, _, err = cli(capsys, *ev)
    assert status == EXIT_OK, err
    assert len((tmp_path / "one.csv").read_text().strip().splitlines()) == 1 + 7 * 3
    run = " ".join(_torchrun())
    two = [*ev[:-1], tmp_path / "two.csv"]
    result = subprocess.run(
        ["bash", "-c", f"{run} {' '.join(map(str, two))}"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()


# -- eval -----------------------------------------------------------------------------------------
def test_eval_resumes_shards_and_saves(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    ev = eval_args(prior_dir, imgs)
    assert cli(capsys, *ev, "--csv", tmp_path / "whole.csv")[0] == EXIT_OK
    whole = (tmp_path / "whole.csv").read_text()
    assert len(whole.strip().splitlines()) == 1 + 7 * 3  # pinv, bicubic, restored per image
    csv_path = tmp_path / "s.csv"
    status, _, err = cli(capsys, *ev, "--csv", csv_path, "--shard", "0/2", "--save", tmp_path / "saved")
    assert status == EXIT_OK and "CSV is written when every shard is done" in err
    assert not csv_path.exists() and len(list(Path(f"{csv_path}.parts").glob("*.png.json"))) == 4
    assert len(list((tmp_path / "saved").glob("*_restored.png"))) == 4
    assert len(list((tmp_path / "saved").glob("*_degraded.png"))) == 4
    status, _, err = cli(capsys, *ev, "--csv", csv_path, "--save", tmp_path / "other")  # another setting
    assert status == EXIT_ERROR and "other settings (save)" in err
    status, _, err = cli(capsys, *ev, "--csv", csv_path, "--save", tmp_path / "saved")  # resume the rest
    assert status == EXIT_OK, err
    assert "4 of them by an earlier run (resumed)" in err
    assert err.count("q=None") == 3  # only the three images left were scored
    assert csv_path.read_text() == whole and not Path(f"{csv_path}.parts").exists()
    assert len(list((tmp_path / "saved").glob("*_restored.png"))) == 7


# -- folder edge cases ----------------------------------------------------------------------------
def test_a_link_beside_its_target_gets_its_own_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    (imgs / "link.png").symlink_to("c0.png")
    out = tmp_path / "out"
    status, stdout, err = cli(capsys, *restore(prior_dir, imgs, out=out))
    assert status == EXIT_OK, err
    assert "restored 8 image(s)" in stdout
    assert "link.png" in files(out) and "c0.png" in files(out)  # each name is an input
    assert expand_inputs([str(imgs), str(imgs / "c0.png")]).count(imgs / "c0.png") == 1  # one path, once


def test_a_broken_link_is_reported_and_the_rest_go_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    (imgs / "gone.png").symlink_to("nowhere.png")
    status, stdout, err = cli(capsys, *restore(prior_dir, imgs, out=tmp_path / "out"))
    assert status == EXIT_ERROR
    assert "restored 7 image(s)" in stdout and "1 failed" in stdout
    assert "opkit: gone.png: no such image file" in err


def test_a_folder_named_like_an_output_is_not_done(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    out = tmp_path / "out"
    (out / "c1.png").mkdir(parents=True)
    for extra in ((), ("--force",)):
        status, stdout, err = cli(capsys, *restore(prior_dir, imgs, out=out, extra=extra))
        assert status == EXIT_ERROR and not stdout
        assert (
            err.strip()
            == f"opkit: -o {out}: the output {out / 'c1.png'} is a folder; move it away or choose another -o"
        )
    assert [p.name for p in out.iterdir()] == ["c1.png"]


def test_a_file_name_that_is_not_utf8_is_restored_and_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    odd = os.fsdecode(b"caf\xe9.png")  # latin-1 bytes, as an old camera or archive leaves them
    png(src / odd, seed=1)
    png(src / "ok.png", seed=2)
    (src / os.fsdecode(b"bad\xff.png")).write_bytes(b"not an image")
    out = tmp_path / "out"
    status, stdout, err = cli(capsys, *restore(prior_dir, src, out=out))
    assert status == EXIT_ERROR
    assert "restored 2 image(s)" in stdout and "1 failed" in stdout
    assert "opkit: bad\\xff.png: cannot read" in err  # the name shown with its byte, on one line
    assert sorted(os.fsencode(p.name) for p in out.iterdir()) == [b"caf\xe9.png", b"ok.png"]
    assert image_seed(0, odd) != image_seed(0, "cafe.png")


def test_an_unwritable_output_folder_is_found_before_any_work(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    prior_dir: Path,
    imgs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opkit import files as ofiles

    out = tmp_path / "out"
    out.mkdir()

    def denied(target: Path, *, directory: bool = False) -> Path:
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(ofiles, "_temp_beside", denied)
    t0 = time.perf_counter()
    for o in (out, tmp_path / "new"):
        status, stdout, err = cli(capsys, *restore(tmp_path / "nowhere", imgs, out=o))  # no model loaded
        assert status == EXIT_ERROR and not stdout
        assert (
            err.strip()
            == f"opkit: -o {o}: cannot write into {o if o.exists() else tmp_path}: Permission denied"
        )
    status, _, err = cli(capsys, *eval_args(prior_dir, imgs), "--save", tmp_path / "saved")
    assert status == EXIT_ERROR and "--save cannot write into" in err and "Permission denied" in err
    assert time.perf_counter() - t0 < 30 and not any(out.iterdir())


@pytest.mark.parametrize("force", [False, True])
def test_an_output_folder_that_is_an_input_folder_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, force: bool
) -> None:
    jpgs = tmp_path / "jpgs"
    jpgs.mkdir()
    for i in range(2):
        Image.open(png(tmp_path / f"p{i}.png", seed=i)).save(jpgs / f"p{i}.jpg", quality=50)
    before = files(jpgs)
    args = ["restore", jpgs, "--op", "jpeg", "--model", prior_dir, *STEPS, "-o", jpgs, "--quiet"]
    status, _, err = cli(capsys, *args, *(["--force"] if force else []))
    assert status == EXIT_ERROR
    assert err.strip() == (
        f"opkit: -o {jpgs} is the folder of the input {jpgs / 'p0.jpg'}: its outputs would become inputs "
        "of the next run; choose another folder"
    )
    assert files(jpgs) == before


def test_a_folder_run_removes_no_file_it_did_not_make(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mine = {".c1.0123abcd.part.png": b"the user's own file", "notes.part": b"mine too"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    assert cli(capsys, *restore(prior_dir, imgs, out=out, extra=("--force",)))[0] == EXIT_OK
    assert all((out / n).read_bytes() == d for n, d in mine.items())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*mine, *(f"{p.stem}.png" for p in imgs.iterdir())]
    )


def test_torchrun_failures_are_listed_once_by_rank_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prior_dir: Path, imgs: Path
) -> None:
    (imgs / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (imgs / "cut.png").write_bytes((imgs / "c0.png").read_bytes()[:-200])
    one = tmp_path / "one"
    status, single, single_err = cli(capsys, *restore(prior_dir, imgs, out=one))
    assert status == EXIT_ERROR
    two = tmp_path / "two"
    cmd = [*_torchrun(), *map(str, restore(prior_dir, imgs, out=two))]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == EXIT_ERROR, result.stderr[-3000:]
    ours = [line for line in result.stderr.splitlines() if line.startswith("opkit:")]
    assert ours == single_err.strip().splitlines()  # the same lines, once, from rank 0
    # torchrun reports rank 0's exit status with a traceback of its own launcher (docs/scale.rst):
    # no frame of opkit's, and no other rank failed
    frames = [line for line in result.stderr.splitlines() if line.lstrip().startswith('File "')]
    assert frames and all("/torch/" in line or "torchrun" in line for line in frames), result.stderr
    assert "<NO_OTHER_FAILURES>" in result.stderr and "exitcode  : 1" in result.stderr
    # "restored 7 image(s) into OUT; 0 already done, 2 failed; ..."
    assert (
        single.replace(str(one), "OUT").split(";")[:2]
        == result.stdout.replace(str(two), "OUT").split(";")[:2]
    )
    assert files(two) == files(one)
