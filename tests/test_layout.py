"""The house: the solvers' rooms, plain imports, and no private name crossing a package boundary."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from types import FunctionType

import pytest

import solvers

ROOT = Path(solvers.__file__).resolve().parent
REPO = ROOT.parent
#: The import packages of the distribution, and the folders of scripts that use them.
PACKAGES = ("opkit", "opkit_plugins", "solvers", "opkit_cli")
SOURCE_DIRS = (*PACKAGES, "examples", "benchmarks", "scripts")


def test_the_rooms() -> None:
    for room in ("methods", "priors", "sdes", "common"):
        assert (ROOT / room / "__init__.py").is_file(), room
    for method in ("ddrm", "diffpir", "dps", "driftrec", "pigdm"):
        assert (ROOT / "methods" / f"{method}.py").is_file(), method
    for part in ("protocol", "schedules", "unet", "loading", "adm", "checkpoints", "training"):
        assert (ROOT / "priors" / f"{part}.py").is_file(), part
    for part in ("forward", "samplers", "score_models", "training"):
        assert (ROOT / "sdes" / f"{part}.py").is_file(), part
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert top == ["__init__.py", "_plugin.py", "oracles.py"], top


def test_solvers_init_holds_plain_imports_only() -> None:
    tree = ast.parse((ROOT / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]:
            continue
        raise AssertionError(f"solvers/__init__.py line {node.lineno}: {ast.unparse(node)[:80]}")


def test_no_module_writes_sys_modules() -> None:
    for folder in PACKAGES:
        for path in (REPO / folder).rglob("*.py"):
            assert "sys.modules[" not in path.read_text(encoding="utf-8"), path


@pytest.mark.parametrize("method", ["ddrm", "diffpir", "dps", "driftrec", "pigdm"])
def test_solvers_method_is_the_function_however_it_is_reached(method: str) -> None:
    fn = getattr(solvers, method)
    assert isinstance(fn, FunctionType) and fn.__name__ == method
    module = importlib.import_module(f"solvers.methods.{method}")
    assert getattr(module, method) is fn
    params = inspect.signature(fn).parameters
    for name in ("steps", "num_samples", "generator", "callback", "progress", "return_info"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (method, name)
    # no module of that name exists, so no way of importing gives anything else
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"solvers.{method}")
    assert not hasattr(fn, "priors") and not hasattr(fn, "solver")  # functions carry no modules


def test_design_section_2_names_in_a_fresh_interpreter() -> None:
    code = (
        "import solvers\n"
        "from solvers.sdes import OUVE, TSDVE, CosVE\n"
        "import solvers.priors as p\n"
        "assert callable(solvers.load_prior) and callable(solvers.load_driftrec)\n"
        "assert p.load_prior is solvers.load_prior\n"
        "sde = solvers.sdes.OUVE(gamma=1.0, sigma_min=0.01, sigma_max=1.0, t_eps=0.03)\n"
        "assert sde.std(0.5) > 0 and solvers.sdes.TSDVE is TSDVE and solvers.sdes.CosVE is CosVE\n"
        "for name in ('ddrm', 'pigdm', 'diffpir', 'dps', 'driftrec'):\n"
        "    assert callable(getattr(solvers, name))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _top(module: str) -> str:
    return module.split(".")[0]


def private_imports(path: Path, own: str) -> list[str]:
    """``from X import _name`` and ``X._private`` module paths of another package than ``own``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _top(node.module) not in PACKAGES or _top(node.module) == own:
                continue
            if any(part.startswith("_") for part in node.module.split(".")):
                found.append(f"{path}:{node.lineno}: from {node.module} import ...")
            found += [
                f"{path}:{node.lineno}: from {node.module} import {a.name}"
                for a in node.names
                if a.name.startswith("_")
            ]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if _top(a.name) in PACKAGES and _top(a.name) != own:
                    if any(part.startswith("_") for part in a.name.split(".")):
                        found.append(f"{path}:{node.lineno}: import {a.name}")
    return found


def test_no_private_name_is_imported_across_packages() -> None:
    found = []
    for folder in SOURCE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            if "build" in path.parts:
                continue
            own = folder if folder in PACKAGES else ""  # scripts and examples own no package
            found += private_imports(path, own)
    assert not found, "\n".join(found)


def test_the_private_import_check_finds_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from solvers.priors.protocol import _x\nimport opkit_plugins._separable\n")
    assert len(private_imports(bad, "opkit_cli")) == 2
    assert private_imports(bad, "solvers") == [f"{bad}:2: import opkit_plugins._separable"]


def test_the_command_lines_training_markers_are_the_trainers_file_names() -> None:
    from opkit_cli.train import TRAINING_RUN_MARKERS
    from solvers.common.state import STATE_JSON
    from solvers.sdes.score_models import DRIFTREC_CONFIG_NAME

    assert TRAINING_RUN_MARKERS["prior"][0] == TRAINING_RUN_MARKERS["driftrec"][0] == STATE_JSON
    assert TRAINING_RUN_MARKERS["driftrec"][1] == DRIFTREC_CONFIG_NAME
