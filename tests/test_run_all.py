"""benchmarks/run_all.py: the prepared device command runs on the CPU and writes device-tagged blocks."""

from __future__ import annotations

import importlib.util
import json
import subprocess
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


def test_bench_diffpir_dps_runs_resumes_and_writes_its_tables(tmp_path: Path) -> None:
    """The quality table at a smoke size, written as reStructuredText and resumed from its rows."""
    script = str(ROOT / "benchmarks" / "bench_diffpir_dps.py")
    rows, rst = tmp_path / "rows.jsonl", tmp_path / "table.rst"
    cmd = [sys.executable, script, "--size", "32", "--tasks", "sr4", "--images", "rocket"]
    cmd += ["--runs", "diffpir:2,dps:2", "--jsonl", str(rows), "--rst", str(rst)]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    assert "DiffPIR (2)" in first.stdout and "DPS (2)" in first.stdout
    assert len(rows.read_text(encoding="utf-8").splitlines()) == 3  # bicubic, DiffPIR, DPS
    table = rst.read_text(encoding="utf-8")
    assert table.startswith("Measured with ``python benchmarks/bench_diffpir_dps.py --size 32")
    again = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    assert "dB," not in again.stdout  # every row came from the file: nothing restored again
    assert len(rows.read_text(encoding="utf-8").splitlines()) == 3
    assert rst.read_text(encoding="utf-8").split("\n", 1)[1] == table.split("\n", 1)[1]


def test_bench_diffpir_dps_memory_of_one_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One memory measurement (what ``--memory`` runs in a fresh process per batch and step)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "bench_diffpir_dps", ROOT / "benchmarks" / "bench_diffpir_dps.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--memory-one", "--what", "dps", "--batch", "2", "--size", "16", "--threads", "0"])
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["batch"] == 2 and got["what"] == "dps" and got["peak"] >= got["base"] > 0
