"""The newer surfaces of the command line tried as a hostile user would: ``eval``'s ``--save``,
``--csv``, ``--plot`` and its resumable state, ``convert``, ``--model``, ``--model-config`` and
``--class-label``, and third-party solver plugins.

Every case checks what the command-line page promises, as ``test_cli_reliability`` does: the
exit status, one ``opkit:`` line naming the problem (never a traceback, never an internal error),
and the files before and after (``snapshot``): nothing the user made is changed without
``--force``, and nothing at all before every argument is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import opkit
from opkit.images import load_image
from opkit_cli.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from solvers.priors.adm import ADMUNet
from tests.helpers import cli
from tests.test_cli_reliability import png, refused, snapshot

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "solvers" / "weights"

#: A tiny class-conditional ADM network (10 classes).
ADM = {
    "image_size": 32,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "16",
    "learn_sigma": True,
    "class_cond": True,
    "num_classes": 10,
    "resblock_updown": True,
    "num_head_channels": 16,
}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder with a colour PNG ``in.png`` (16x16) and an eval folder ``imgs`` of two images."""
    png(tmp_path / "in.png")
    (tmp_path / "imgs").mkdir()
    png(tmp_path / "imgs" / "a.png", seed=1)
    png(tmp_path / "imgs" / "b.png", seed=2)
    return tmp_path


@pytest.fixture
def adm(tmp_path: Path) -> tuple[Path, Path]:
    """A class-conditional ADM checkpoint ``adm.pt`` and its configuration ``adm.json``."""
    torch.manual_seed(0)
    ckpt, cfg = tmp_path / "adm.pt", tmp_path / "adm.json"
    torch.save(ADMUNet(ADM).state_dict(), ckpt)
    cfg.write_text(json.dumps(ADM))
    return ckpt, cfg


def ev(prior: Path, folder: Path) -> list[Any]:
    """``opkit eval`` of ``folder``: 2x block SR, the tiny prior, one step."""
    op = ["--op", "sr_block", "--param", "factor=2"]
    return ["eval", folder, *op, "--model", prior, "--steps", "1", "--multiple", "8"]


def restore1(model: object, image: Path, out: Path, *extra: object) -> list[Any]:
    return [
        "restore",
        image,
        "--op",
        "denoise",
        "--model",
        model,
        "--steps",
        "1",
        "--quiet",
        "-o",
        out,
        *extra,
    ]


# -- eval --save, --csv, --plot: nothing the user made changed without --force --------------------
def test_eval_save_overwrites_earlier_images_only_with_force(
    capsys: Any, work: Path, prior_dir: Path
) -> None:
    save = work / "saved"
    args = [*ev(prior_dir, work / "imgs"), "--save", save]
    assert cli(capsys, *args)[0] == EXIT_OK
    before = snapshot(save)
    assert sorted(before) == ["a_degraded.png", "a_restored.png", "b_degraded.png", "b_restored.png"]
    refused(
        cli(capsys, *args, "--seed", "1"),
        EXIT_ERROR,
        "--save:",
        "a_degraded.png and 3 more exist(s); pass --force to overwrite them",
    )
    assert snapshot(save) == before
    status, _, err = cli(capsys, *args, "--seed", "1", "--force")
    assert status == EXIT_OK, err
    after = snapshot(save)
    assert after["a_degraded.png"] == before["a_degraded.png"]  # the same measurement
    assert after["a_restored.png"] != before["a_restored.png"]  # another seed, another restoration


def test_eval_save_a_resumed_run_may_overwrite_its_own_images(
    capsys: Any, work: Path, prior_dir: Path
) -> None:
    save, csv_path = work / "saved", work / "r.csv"
    args = [*ev(prior_dir, work / "imgs"), "--save", save, "--csv", csv_path]
    assert cli(capsys, *args, "--shard", "0/2")[0] == EXIT_OK  # a.png done: its images and its part
    parts = Path(f"{csv_path}.parts")
    (parts / "a.png.json").unlink()  # killed after saving a's images, before its part was written
    mine = snapshot(save)
    status, _, err = cli(capsys, *args)
    assert status == EXIT_OK, err
    assert err.count("q=None") == 2 and not parts.exists()
    assert {k: v for k, v in snapshot(save).items() if k.startswith("a_")} == mine  # the same work


def test_eval_save_names_images_that_share_a_stem_apart(capsys: Any, work: Path, prior_dir: Path) -> None:
    from PIL import Image

    Image.open(work / "imgs" / "a.png").save(work / "imgs" / "a.jpg", quality=90)
    status, _, err = cli(capsys, *ev(prior_dir, work / "imgs"), "--save", work / "saved")
    assert status == EXIT_OK, err
    assert sorted(snapshot(work / "saved")) == [
        f"{name}_{what}.png" for name in ("a.jpg", "a.png", "b") for what in ("degraded", "restored")
    ]


@pytest.mark.parametrize("where", ["model", "bundled", "bundled_unet"])
def test_eval_save_never_writes_into_a_model_folder(
    capsys: Any, work: Path, prior_dir: Path, where: str
) -> None:
    model = work / "model"
    shutil.copytree(prior_dir, model)
    save = {"model": model, "bundled": BUNDLED / "prior", "bundled_unet": BUNDLED / "prior" / "unet"}[where]
    before, bundled = snapshot(work), snapshot(BUNDLED)
    refused(
        cli(capsys, *ev(model, work / "imgs"), "--save", save),
        EXIT_ERROR,
        f"--save {save}: refusing to write into the model folder",
    )
    assert snapshot(work) == before and snapshot(BUNDLED) == bundled


@pytest.mark.parametrize("flag", ["--csv", "--plot", "--save"])
def test_eval_writes_nothing_into_the_evaluated_folder(
    capsys: Any, work: Path, prior_dir: Path, flag: str
) -> None:
    imgs = work / "imgs"
    target = {"--csv": imgs / "r.csv", "--plot": imgs / "rd.png", "--save": imgs}[flag]
    base = ["eval", imgs, "--op", "jpeg", "--qualities", "10", "--model", prior_dir, "--steps", "1"]
    before = snapshot(work)
    message = "is the folder of the images" if flag == "--save" else "lies in the evaluated folder"
    refused(cli(capsys, *base, flag, target, "--force"), EXIT_ERROR, flag, message)
    assert snapshot(work) == before


def test_eval_save_may_not_be_a_csv_output(capsys: Any, work: Path, prior_dir: Path) -> None:
    (work / "saved").mkdir()
    refused(
        cli(
            capsys,
            *ev(prior_dir, work / "imgs"),
            "--save",
            work / "saved",
            "--csv",
            work / "saved" / "a_restored.png",
        ),
        EXIT_ERROR,
        "a_restored.png is also a --csv or --plot output",
    )
    assert not any((work / "saved").iterdir())


def test_eval_force_checks_every_argument_before_touching_the_resume_state(
    capsys: Any, work: Path, prior_dir: Path
) -> None:
    csv_path = work / "r.csv"
    args = ["eval", work / "imgs", "--op", "jpeg", "--qualities", "10", "--model", prior_dir, "--steps", "1"]
    args += ["--csv", csv_path]
    assert cli(capsys, *args, "--shard", "0/2")[0] == EXIT_OK  # an unfinished run: r.csv.parts
    assert (work / "r.csv.parts" / "a.png.json").is_file()
    before = snapshot(work)
    refused(cli(capsys, *args, "--plot", work / "r.xyz", "--force"), EXIT_ERROR, "--plot", "unknown suffix")
    refused(cli(capsys, *args, "--save", work / "in.png", "--force"), EXIT_ERROR, "--save", "is a file")
    broken = [a if a != prior_dir else work / "nowhere" for a in args]  # a model that cannot load
    refused(cli(capsys, *broken, "--force"), EXIT_ERROR, "nowhere")
    assert snapshot(work) == before  # the finished part is still there


def test_eval_never_uses_nor_removes_a_parts_folder_it_did_not_make(
    capsys: Any, work: Path, prior_dir: Path
) -> None:
    mine = work / "r.csv.parts"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    before = snapshot(work)
    for extra in ([], ["--force"]):
        refused(
            cli(capsys, *ev(prior_dir, work / "imgs"), "--csv", work / "r.csv", *extra),
            EXIT_ERROR,
            "r.csv.parts is a folder that `opkit eval` did not make",
        )
    assert snapshot(work) == before


# -- eval resume: a part is taken only for the very same work -----------------------------------
def test_eval_resume_ignores_the_parts_of_other_work(capsys: Any, work: Path, prior_dir: Path) -> None:
    other = work / "other"
    other.mkdir()
    png(other / "a.png", seed=7)  # same names, other pictures
    png(other / "b.png", seed=8)
    csv_path = work / "r.csv"
    assert cli(capsys, *ev(prior_dir, work / "imgs"), "--csv", work / "fresh.csv")[0] == EXIT_OK
    assert cli(capsys, *ev(prior_dir, other), "--csv", csv_path, "--shard", "0/2")[0] == EXIT_OK
    status, _, err = cli(capsys, *ev(prior_dir, work / "imgs"), "--csv", csv_path)  # the stale state
    assert status == EXIT_OK, err
    assert "resumed" not in err and err.count("q=None") == 2
    assert err.count("opkit: warning:") == 1
    assert "1 finished image(s) were scored from another file, model or settings" in err
    assert csv_path.read_text() == (work / "fresh.csv").read_text()


def test_eval_resume_redoes_the_work_of_a_changed_model(capsys: Any, work: Path, prior_dir: Path) -> None:
    model = work / "model"
    shutil.copytree(prior_dir, model)
    args = [*ev(model, work / "imgs"), "--csv", work / "r.csv"]
    assert cli(capsys, *args, "--shard", "0/2")[0] == EXIT_OK
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    shutil.copy(BUNDLED / "prior" / "unet" / "config.json", work / "unused.json")
    from safetensors.torch import load_file, save_file

    state = load_file(weights)
    save_file({k: v * 1.01 for k, v in state.items()}, weights)  # retrained in place
    status, _, err = cli(capsys, *args)
    assert status == EXIT_OK, err
    assert err.count("q=None") == 2 and "scored from another file, model or settings" in err


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'"a string"',
        b'{"key": "x", "rows": "abc"}',
        b"[[[[" * 50_000,
        b'{"rows": [{"image": 1}]}',
    ],
)
def test_eval_redoes_a_damaged_part_and_says_so_once(
    capsys: Any, work: Path, prior_dir: Path, content: bytes
) -> None:
    csv_path = work / "r.csv"
    args = [*ev(prior_dir, work / "imgs"), "--csv", csv_path]
    assert cli(capsys, *args, "--shard", "0/2")[0] == EXIT_OK
    (work / "r.csv.parts" / "a.png.json").write_bytes(content)
    status, _, err = cli(capsys, *args)
    assert status == EXIT_OK, err
    assert "internal error" not in err and "Traceback" not in err
    assert err.count("could not be read (damaged); they were scored again") == 1
    assert err.count("q=None") == 2  # a.png again, and b.png
    assert len(csv_path.read_text().splitlines()) == 1 + 2 * 3


def test_eval_rewrites_a_damaged_settings_file(capsys: Any, work: Path, prior_dir: Path) -> None:
    csv_path = work / "r.csv"
    args = [*ev(prior_dir, work / "imgs"), "--csv", csv_path]
    assert cli(capsys, *args, "--shard", "0/2")[0] == EXIT_OK
    (work / "r.csv.parts" / "settings.json").write_text("{half")
    status, _, err = cli(capsys, *args)
    assert status == EXIT_OK, err
    assert "settings.json is damaged; it is rewritten" in err
    assert "1 of them by an earlier run (resumed)" in err  # the part's key still names the work


KILLED_PART = """
import sys, time
from pathlib import Path
import opkit_cli.eval as ev
from opkit.files import atomic_path
from opkit_cli.main import main

real = ev.write_atomic

def half_then_hang(path, data, **kw):
    if Path(path).name == "b.png.json":
        with atomic_path(path) as tmp:
            tmp.write_text(data[: len(data) // 2])
            print("writing", flush=True)
            time.sleep(120)
    return real(path, data, **kw)

ev.write_atomic = half_then_hang
sys.exit(main(sys.argv[1:]))
"""


def test_eval_killed_while_writing_its_state_keeps_the_old_state_and_resumes(
    work: Path, prior_dir: Path
) -> None:
    csv_path = work / "r.csv"
    args = [*map(str, ev(prior_dir, work / "imgs")), "--csv", str(csv_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_PART, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        if line.strip() != "writing":
            pytest.fail(f"the child did not start writing: {child.communicate(timeout=60)[1]}")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=60)
    parts = work / "r.csv.parts"
    visible = sorted(p.name for p in parts.iterdir() if not p.name.startswith("."))
    assert visible == ["a.png.json", "settings.json"]  # b's part is not there, not half there
    assert json.loads((parts / "a.png.json").read_text())["rows"][0]["image"] == "a.png"
    done = subprocess.run(
        [sys.executable, "-m", "opkit_cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert "1 of them by an earlier run (resumed)" in done.stderr
    assert len(csv_path.read_text().splitlines()) == 1 + 2 * 3


# -- convert: a model folder is replaced whole or not at all ------------------------------------
def test_convert_on_a_full_disk_is_one_line_and_keeps_the_old_folder(
    capsys: Any, work: Path, prior_dir: Path, adm: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    out = work / "model"
    shutil.copytree(prior_dir, out)  # an existing model folder, replaced with --force
    before = snapshot(work)

    def disk_full(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"half of the weights")
        raise safetensors.SafetensorError(
            "Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
            'message: "No space left on device" })'
        )

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    ckpt, cfg = adm
    for source in (["convert", ckpt, "--model-config", cfg], ["convert", prior_dir]):
        refused(
            cli(capsys, *source, "-o", out, "--force"),
            EXIT_ERROR,
            f"opkit: -o {out}: cannot write the model folder: No space left on device; nothing was changed",
        )
        assert snapshot(work) == before  # the old folder, and no staging folder beside it


def test_convert_refuses_to_write_over_its_own_input(
    capsys: Any, work: Path, prior_dir: Path, adm: tuple[Path, Path]
) -> None:
    model = work / "model"
    shutil.copytree(prior_dir, model)
    (work / "link").symlink_to(model)
    ckpt, cfg = adm
    inside = work / "ckpts"
    inside.mkdir()
    (inside / "config.json").write_text("{}")  # looks like a model folder
    shutil.copy(ckpt, inside / "adm.pt")
    before = snapshot(work)
    for source, out in [
        ([model], model),
        ([model], work / "link"),
        ([work / "link"], model),
        ([model], model / "unet"),
        ([inside / "adm.pt", "--model-config", cfg], inside),  # the checkpoint would be deleted
        ([ckpt, "--model-config", inside / "config.json"], inside),
    ]:
        refused(cli(capsys, "convert", *source, "-o", out, "--force"), EXIT_ERROR, "refusing to write over")
    assert snapshot(work) == before


def test_convert_never_writes_over_the_bundled_models(capsys: Any, work: Path, prior_dir: Path) -> None:
    before = snapshot(BUNDLED)
    for out in (BUNDLED / "prior", BUNDLED / "driftrec", BUNDLED, BUNDLED.parent):
        refused(
            cli(capsys, "convert", prior_dir, "-o", out, "--force"),
            EXIT_ERROR,
            "refusing to write over the bundled models",
        )
    assert snapshot(BUNDLED) == before


def test_convert_force_replaces_only_a_model_folder(capsys: Any, work: Path, prior_dir: Path) -> None:
    before = snapshot(work)
    refused(
        cli(capsys, "convert", prior_dir, "-o", work / "imgs", "--force"),
        EXIT_ERROR,
        "is a folder that holds no model",
    )
    refused(cli(capsys, "convert", prior_dir, "-o", work / "imgs"), EXIT_ERROR, "exists; pass --force")
    refused(
        cli(capsys, "convert", prior_dir, "-o", work / "in.png", "--force"), EXIT_ERROR, "is not a folder"
    )
    refused(cli(capsys, "convert", prior_dir, "-o", work / "no" / "m"), EXIT_ERROR, "does not exist")
    assert snapshot(work) == before
    out = work / "model"
    assert cli(capsys, "convert", prior_dir, "-o", out)[0] == EXIT_OK
    (out / "stale.txt").write_text("from the old model")
    assert cli(capsys, "convert", prior_dir, "-o", out, "--force")[0] == EXIT_OK
    assert not (out / "stale.txt").exists()  # replaced whole
    assert not [p for p in work.iterdir() if p.name.startswith(".")]


KILLED_CONVERT = """
import sys, time
from pathlib import Path
import safetensors.torch
from opkit_cli.main import main

def half_then_hang(tensors, filename, metadata=None):
    Path(filename).write_bytes(b"half of the weights")
    print("writing", flush=True)
    time.sleep(120)

safetensors.torch.save_file = half_then_hang
sys.exit(main(sys.argv[1:]))
"""


def test_convert_killed_mid_write_keeps_the_old_model_folder(work: Path, adm: tuple[Path, Path]) -> None:
    ckpt, cfg = adm
    out = work / "model"
    from opkit_cli.main import main

    assert main(["convert", str(ckpt), "--model-config", str(cfg), "-o", str(out)]) == EXIT_OK
    before = snapshot(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    argv = ["convert", str(ckpt), "--model-config", str(cfg), "-o", str(out), "--force"]
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CONVERT, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        if line.strip() != "writing":
            pytest.fail(f"the child did not start writing: {child.communicate(timeout=60)[1]}")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=60)
    assert snapshot(out) == before
    import solvers

    assert solvers.load_prior(out).net.config.class_cond  # still the old model, whole


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("meta", "--device meta: opkit does not run on meta devices; use auto, cpu, cuda, cuda:INDEX or mps"),
        ("tpu", "--device tpu: not a device; use auto, cpu, cuda, cuda:INDEX or mps"),
        ("cuda:99", "--device cuda:99:"),
    ],
)
@pytest.mark.parametrize("command", ["convert", "restore", "eval", "train"])
def test_devices_a_machine_lacks_are_one_line_before_any_work(
    capsys: Any, work: Path, prior_dir: Path, command: str, device: str, message: str
) -> None:
    argv = {
        "convert": ["convert", prior_dir, "-o", work / "m"],
        "restore": restore1(prior_dir, work / "in.png", work / "o.png"),
        "eval": ev(prior_dir, work / "imgs"),
        "train": ["train", "prior", work / "imgs", "-o", work / "m", "--steps", "1"],
    }[command]
    before = snapshot(work)
    refused(cli(capsys, *argv, "--device", device), EXIT_ERROR, message)
    if not torch.cuda.is_available():
        refused(cli(capsys, *argv, "--device", "cuda"), EXIT_ERROR, "--device cuda: CUDA is not available")
    assert snapshot(work) == before


# -- --model, --model-config and --class-label ---------------------------------------------------
def test_class_labels_out_of_range_are_named(
    capsys: Any, work: Path, adm: tuple[Path, Path], prior_dir: Path
) -> None:
    ckpt, cfg = adm
    img = png(work / "x.png", 32, 32)
    args = restore1(ckpt, img, work / "o.png", "--model-config", cfg)
    refused(
        cli(capsys, *args, "--class-label", "99999999999999999999"),
        EXIT_USAGE,
        "argument --class-label: expected a class index (an integer >= 0), got '99999999999999999999'",
    )
    refused(cli(capsys, *args, "--class-label", "-1"), EXIT_USAGE, "--class-label")
    refused(
        cli(capsys, *args, "--class-label", "10"),
        EXIT_ERROR,
        f"--class-label 10 is out of range: the model {ckpt} has 10 classes (0 to 9)",
    )
    refused(
        cli(capsys, *restore1(prior_dir, img, work / "o.png", "--class-label", "0")),
        EXIT_ERROR,
        f"--class-label: the model {prior_dir} is not class-conditional",
    )
    assert cli(capsys, *args, "--class-label", "9")[0] == EXIT_OK


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dropout": None}, "dropout must be a number in [0, 1), got None"),
        ({"num_res_blocks": None}, "num_res_blocks must be a positive integer, got None"),
        ("deep", "is not valid JSON: it is nested too deeply"),
        ({"diffusion_steps": 200_000_000}, "diffusion_steps must be at most 100000"),
        ({"num_res_blocks": 5000}, "check num_res_blocks or channel_mult"),  # 10 001 blocks: refused unbuilt
        ({"num_channels": 4096, "num_head_channels": -1}, "check num_channels"),
    ],
)
def test_hostile_model_configs_are_one_line_before_anything_is_built(
    capsys: Any, work: Path, adm: tuple[Path, Path], change: Any, message: str
) -> None:
    ckpt, _ = adm
    cfg = work / "cfg.json"
    cfg.write_text("[" * 100_000 + "]" * 100_000 if change == "deep" else json.dumps({**ADM, **change}))
    t0 = time.perf_counter()
    args = restore1(
        ckpt, png(work / "x.png", 32, 32), work / "o.png", "--model-config", cfg, "--class-label", "1"
    )
    refused(cli(capsys, *args), EXIT_ERROR, message)
    refused(cli(capsys, "convert", ckpt, "--model-config", cfg, "-o", work / "m"), EXIT_ERROR, message)
    assert time.perf_counter() - t0 < 20
    assert not (work / "o.png").exists() and not (work / "m").exists()


@pytest.mark.parametrize("value", ['"8"', "true", "-3", "null"])
def test_a_ddrm_settings_file_with_a_wrong_type_is_one_line(
    capsys: Any, work: Path, prior_dir: Path, value: str
) -> None:
    model = work / "model"
    shutil.copytree(prior_dir, model)
    (model / "ddrm_settings.json").write_text(f'{{"denoise": {{"steps": {value}}}}}')
    refused(
        cli(capsys, *restore1(model, work / "in.png", work / "o.png")),
        EXIT_ERROR,
        f"{model / 'ddrm_settings.json'}: 'denoise': 'steps' must be a positive integer, got",
    )
    refused(  # a folder run: refused when the model loads, before any image
        cli(capsys, *restore1(model, work / "imgs", work / "out")),
        EXIT_ERROR,
        "'denoise': 'steps' must be a positive integer",
    )
    assert not (work / "o.png").exists() and not list((work / "out").glob("*.png"))


# -- third-party solver plugins ------------------------------------------------------------------
@pytest.fixture
def plugin() -> Iterator[Callable[..., None]]:
    """``plugin(name, solver)`` registers ``solver`` from a third-party plugin called ``badplug``."""
    from opkit import registry

    registry.reload()

    def add(name: str, solver: Callable[..., Any], *, per_image: bool = False) -> None:
        module = types.ModuleType("badplug")

        @opkit.hookimpl
        def opkit_register_solvers(registry: Any) -> None:
            registry.add_solver(
                name, solver, accepts=("svd", "encode_decode"), model="none", generator_per_image=per_image
            )

        module.opkit_register_solvers = opkit_register_solvers  # type: ignore[attr-defined]
        assert opkit.default_registry().register_plugin(module, "badplug")

    yield add
    registry.reload()


def _pinv(op: Any, y: Any) -> torch.Tensor:
    return op.pinv(y) if isinstance(op, opkit.LinearOperator) else op.decode(y)


def solver_returning(make: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def solve(op: Any, y: Any, model: Any, *, steps: int = 1, num_samples: int = 1, **kw: Any) -> Any:
        return make(op, y)

    return solve


BROKEN_RESULTS: dict[str, tuple[Callable[[Any, Any], Any], str]] = {
    "nan": (lambda op, y: _pinv(op, y) * float("nan"), "its result holds NaN or infinity"),
    "small": (
        lambda op, y: _pinv(op, y)[..., :8, :8],
        "it returned shape (1, 3, 8, 8) for measurements of images (1, 3, 16, 16)",
    ),
    "channels": (lambda op, y: torch.zeros(1, 5, 16, 16), "it returned shape (1, 5, 16, 16)"),
    "empty": (lambda op, y: _pinv(op, y)[:0], "it returned shape (0, 3, 16, 16)"),
    "integers": (
        lambda op, y: (_pinv(op, y) * 255).to(torch.uint8),
        "it returned torch.uint8, not a floating image",
    ),
    "list": (lambda op, y: [_pinv(op, y)], "it returned list, not an image tensor"),
    "meta": (
        lambda op, y: torch.empty(1, 3, 16, 16, device="meta"),
        "it returned a tensor without data (on the meta device)",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_RESULTS))
def test_a_plugin_solvers_broken_result_is_named_and_nothing_written(
    capsys: Any, work: Path, plugin: Callable[..., None], case: str
) -> None:
    make, message = BROKEN_RESULTS[case]
    plugin("broken", solver_returning(make))
    argv = ["restore", work / "in.png", "--op", "denoise", "--solver", "broken", "-o", work / "o.png"]
    refused(
        cli(capsys, *argv),
        EXIT_ERROR,
        f"opkit: --solver broken (plugin 'badplug') broke the solver contract: {message}",
    )
    assert not (work / "o.png").exists()


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (TypeError("unsupported operand"), "failed: TypeError: unsupported operand"),
        (KeyError("sigma"), "failed: KeyError: 'sigma'"),
        (SystemExit(3), "failed: SystemExit: 3"),
        (ValueError("no blur here"), "refused the problem: no blur here"),
        (RuntimeError("CUDA out of memory"), "failed: CUDA out of memory"),
    ],
)
def test_a_plugin_solver_that_raises_or_exits_is_named_not_an_internal_error(
    capsys: Any, work: Path, plugin: Callable[..., None], error: BaseException, message: str
) -> None:
    def solve(op: Any, y: Any, model: Any, **kw: Any) -> Any:
        raise error

    plugin("raiser", solve)
    argv = ["restore", work / "in.png", "--op", "denoise", "--solver", "raiser", "-o", work / "o.png"]
    refused(cli(capsys, *argv), EXIT_ERROR, f"opkit: --solver raiser (plugin 'badplug') {message}")
    assert not (work / "o.png").exists()


def test_a_plugin_solver_calling_sys_exit_ends_with_an_opkit_line_in_a_real_process(work: Path) -> None:
    site = work / "site"
    dist = site / "exitplug-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: exitplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[opkit]\nexitplug = exitplug_mod\n")
    (site / "exitplug_mod.py").write_text(
        "import sys\nimport opkit\n\n"
        "def quits(op, y, model, **kw):\n    sys.exit(3)\n\n"
        "@opkit.hookimpl\ndef opkit_register_solvers(registry):\n"
        "    registry.add_solver('quits', quits, accepts=('svd',), model='none')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "opkit_cli",
            "restore",
            "in.png",
            "--op",
            "denoise",
            "--solver",
            "quits",
            "-o",
            "o.png",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == EXIT_ERROR, res.stderr
    assert res.stderr.strip() == "opkit: --solver quits (plugin 'exitplug') failed: SystemExit: 3"
    assert not (work / "o.png").exists()


def _white(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (16, 16), (255, 255, 255)).save(path)
    return path


def _raises_on_white(op: Any, y: Any, model: Any, *, steps: int = 1, num_samples: int = 1, **kw: Any) -> Any:
    if bool((y.flatten(1).mean(1) > 0.99).any()):
        raise TypeError("cannot restore a white image")
    return op.pinv(y)


@pytest.mark.parametrize("batch", ["1", "4"])
def test_a_folder_run_goes_on_when_a_plugin_solver_raises_on_some_images(
    capsys: Any, work: Path, plugin: Callable[..., None], batch: str
) -> None:
    plugin("picky", _raises_on_white, per_image=True)
    _white(work / "imgs" / "w.png")
    png(work / "imgs" / "c.png", seed=3)
    out = work / "out"
    argv = [
        "restore",
        work / "imgs",
        "--op",
        "denoise",
        "--solver",
        "picky",
        "--batch",
        batch,
        "-o",
        out,
        "--quiet",
    ]
    status, stdout, err = cli(capsys, *argv)
    assert status == EXIT_ERROR
    assert "restored 3 image(s)" in stdout and "1 failed" in stdout
    assert err.strip().splitlines() == [
        "opkit: w.png: --solver picky (plugin 'badplug') failed: TypeError: cannot restore a white image",
        "opkit: 1 image(s) failed (listed above); the others are done",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]


def test_a_folder_run_retries_a_batch_whose_result_breaks_the_contract(
    capsys: Any, work: Path, plugin: Callable[..., None]
) -> None:
    def first_only(op: Any, y: Any, model: Any, *, steps: int = 1, num_samples: int = 1, **kw: Any) -> Any:
        return op.pinv(y[:1])  # one image, whatever the batch

    plugin("lazy", first_only, per_image=True)
    png(work / "imgs" / "c.png", seed=3)
    png(work / "imgs" / "d.png", seed=4)
    out = work / "out"
    argv = [
        "restore",
        work / "imgs",
        "--op",
        "denoise",
        "--solver",
        "lazy",
        "--batch",
        "4",
        "-o",
        out,
        "--quiet",
    ]
    status, stdout, err = cli(capsys, *argv)
    assert status == EXIT_OK, err
    assert "restored 4 image(s)" in stdout and "0 failed" in stdout
    for name in "abcd":  # each the pseudo-inverse of its own measurement, restored alone
        assert torch.equal(load_image(out / f"{name}.png"), load_image(work / "imgs" / f"{name}.png"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (lambda model, op: 1 / 0, "failed in its settings(model, op): ZeroDivisionError: division by zero"),
        (lambda model, op: 5, "broke the solver contract: its settings(model, op) returned int, not a dict"),
    ],
)
def test_a_plugin_solvers_failing_settings_are_named(
    capsys: Any, work: Path, settings: Callable[[Any, Any], Any], message: str
) -> None:
    from opkit import registry

    registry.reload()
    module = types.ModuleType("badplug")

    @opkit.hookimpl
    def opkit_register_solvers(registry: Any) -> None:
        registry.add_solver(
            "tuned", solver_returning(_pinv), accepts=("svd",), model="none", settings=settings
        )

    module.opkit_register_solvers = opkit_register_solvers  # type: ignore[attr-defined]
    try:
        assert opkit.default_registry().register_plugin(module, "badplug")
        argv = ["restore", work / "in.png", "--op", "denoise", "--solver", "tuned", "-o", work / "o.png"]
        refused(cli(capsys, *argv), EXIT_ERROR, f"opkit: --solver tuned (plugin 'badplug') {message}")
    finally:
        registry.reload()
    assert not (work / "o.png").exists()


# -- more found by trying ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pipe.png", "pipe.jpg"])
def test_a_pipe_named_like_an_image_is_refused_not_waited_on(capsys: Any, work: Path, name: str) -> None:
    fifo = work / name
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    t0 = time.perf_counter()
    for argv in (
        ["restore", fifo, "--op", "jpeg" if name.endswith(".jpg") else "denoise", "-o", work / "o.png"],
        ["degrade", fifo, "--op", "denoise", "-o", work / "o.png"],
    ):
        refused(cli(capsys, *argv), EXIT_ERROR, f"{fifo} is not a regular file (a pipe, device or socket)")
    assert time.perf_counter() - t0 < 20 and not (work / "o.png").exists()


def test_steps_from_a_models_settings_are_not_blamed_on_the_flag(
    capsys: Any, work: Path, prior_dir: Path
) -> None:
    model = work / "model"
    shutil.copytree(prior_dir, model)
    (model / "ddrm_settings.json").write_text('{"denoise": {"steps": 5000}, "sr_block": {"steps": 5000}}')
    message = (
        "5000 steps (the settings of --solver ddrm for this model) is more than the model's 1000 timesteps"
    )
    argv = ["restore", work / "in.png", "--op", "denoise", "--model", model, "-o", work / "o.png"]
    refused(cli(capsys, *argv), EXIT_ERROR, message)
    ev_argv = ["eval", work / "imgs", "--op", "sr_block", "--param", "factor=2", "--model", model]
    refused(cli(capsys, *ev_argv, "--multiple", "8"), EXIT_ERROR, message)  # before any image
    assert cli(capsys, *argv, "--steps", "1")[0] == EXIT_OK  # the flag wins
