"""benchmarks/run_all.py: the prepared device command runs on the CPU and writes device-tagged blocks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_blocks_are_tagged_by_device_and_replaced_in_place(tmp_path: Path) -> None:
    ra = _run_all()
    page = tmp_path / "page.rst"
    page.write_text("Title\n=====\n\nHand-written CPU table.\n", encoding="utf-8")
    ra.write_block(page, "cuda", "jpeg", ra._block("cuda", "cuda (GPU)", "jpeg", "cmd", "| a |\n| 1 |"))
    ra.write_block(page, "cpu", "jpeg", ra._block("cpu", "cpu (x86)", "jpeg", "cmd", "| b |"))
    ra.write_block(page, "cuda", "jpeg", ra._block("cuda", "cuda (GPU)", "jpeg", "cmd", "| c |"))
    text = page.read_text(encoding="utf-8")
    assert text.startswith("Title\n=====\n\nHand-written CPU table.")
    assert text.count(ra.SECTION) == 1
    assert text.count(".. run_all: begin cuda jpeg") == 1 and "| c |" in text and "| a |" not in text
    assert "| b |" in text  # the other device's block stays


def test_every_benchmark_script_is_a_step_or_named_with_a_reason() -> None:
    ra = _run_all()
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")}
    scripts.discard("run_all.py")
    steps = {s.script for s in ra.STEPS}
    assert steps <= scripts
    assert not steps & set(ra.NOT_RUN)
    assert scripts == steps | set(ra.NOT_RUN), sorted(scripts - steps - set(ra.NOT_RUN))


def test_an_absent_device_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    ra = _run_all()
    import torch

    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        pytest.skip("CUDA is available here")
    assert ra.main(["--device", "cuda", "--no-docs"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_quick_cpu_run_of_one_benchmark(tmp_path: Path) -> None:
    ra = _run_all()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "jpeg.rst").write_text("JPEG\n====\n", encoding="utf-8")
    out = str(tmp_path / "out")
    rc = ra.main(
        [
            "--device",
            "cpu",
            "--quick",
            "--only",
            "jpeg",
            "--write-docs",
            "--docs-dir",
            str(docs),
            "--out",
            out,
        ]
    )
    assert rc == 0
    assert "equal to Pillow" in (tmp_path / "out" / "jpeg.txt").read_text(encoding="utf-8")
    assert ".. run_all: begin cpu jpeg" in (docs / "jpeg.rst").read_text(encoding="utf-8")


@pytest.mark.slow
def test_quick_cpu_run_of_everything(tmp_path: Path) -> None:  # pragma: no cover - minutes
    ra = _run_all()
    docs = tmp_path / "docs"
    docs.mkdir()
    for step in ra.STEPS:
        (docs / step.page).write_text("Page\n====\n", encoding="utf-8")
    rc = ra.main(
        ["--device", "cpu", "--quick", "--write-docs", "--docs-dir", str(docs), "--out", str(tmp_path)]
    )
    assert rc == 0
    for step in ra.STEPS:
        assert f".. run_all: begin cpu {step.name}" in (docs / step.page).read_text(encoding="utf-8")
