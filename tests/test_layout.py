"""The solvers' layout: one package per method, and every name that worked before still works."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from types import FunctionType, ModuleType

import pytest

import solvers

ROOT = Path(solvers.__file__).resolve().parent

# module names before the per-method split -> where the module lives now
MOVED = {
    "solvers.adm": "solvers.ddrm.adm",
    "solvers.checkpoints": "solvers.ddrm.checkpoints",
    "solvers.priors": "solvers.ddrm.priors",
    "solvers.prior_training": "solvers.ddrm.training",
    "solvers.sdes": "solvers.driftrec.sdes",
    "solvers.samplers": "solvers.driftrec.samplers",
    "solvers.score_models": "solvers.driftrec.score_models",
    "solvers.training": "solvers.driftrec.training",
    "solvers.data": "solvers.common.data",
}


def test_each_method_has_its_own_package_and_the_top_level_holds_no_method_code() -> None:
    for package in ("ddrm", "driftrec", "pigdm", "common"):
        assert (ROOT / package / "__init__.py").is_file(), package
    for method in ("ddrm", "driftrec", "pigdm"):
        assert (ROOT / method / "solver.py").is_file(), method
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert top == ["__init__.py", "_plugin.py"], top


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_module_names_are_the_same_module_objects(old: str, new: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(new)
    assert getattr(solvers, old.split(".")[1]) is importlib.import_module(new)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_names_import_in_a_fresh_interpreter(old: str) -> None:
    # "import solvers.priors" as the first import of a program: the old name gives the new module
    new = MOVED[old]
    code = f"import {old} as m; from {old} import *; assert m.__name__ == {new!r}, m.__name__"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("method", ["ddrm", "driftrec", "pigdm"])
def test_solvers_method_is_the_solver_function(method: str) -> None:
    fn = getattr(solvers, method)
    assert isinstance(fn, FunctionType)
    assert fn.__name__ == method
    params = inspect.signature(fn).parameters
    for name in ("steps", "num_samples", "generator", "callback", "progress", "return_info"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (method, name)
    # the package stays importable by its dotted name, and its modules through the function
    package = sys.modules[f"solvers.{method}"]
    assert isinstance(package, ModuleType)
    assert getattr(package, method) is fn
    assert fn.solver is importlib.import_module(f"solvers.{method}.solver")


def test_package_modules_are_reachable_every_usual_way() -> None:
    import solvers.ddrm.priors
    import solvers.driftrec.sdes as sdes_module
    from solvers.ddrm import priors

    assert solvers.ddrm.priors is priors is importlib.import_module("solvers.ddrm.priors")
    assert sdes_module is solvers.sdes
    assert solvers.ddrm.priors.load_prior is solvers.load_prior
    assert solvers.sdes.OUVE is solvers.driftrec.sdes.OUVE


def test_design_section_2_names() -> None:
    assert callable(solvers.load_prior) and callable(solvers.load_driftrec)
    sde = solvers.sdes.OUVE(gamma=1.0, sigma_min=0.01, sigma_max=1.0, t_eps=0.03)
    assert sde.std(0.5) > 0
    for name in ("TSDVE", "CosVE"):
        assert isinstance(getattr(solvers.sdes, name), type)


def test_the_command_lines_training_markers_are_the_trainers_file_names() -> None:
    from opkit_cli.train import TRAINING_RUN_MARKERS
    from solvers.common.state import STATE_JSON
    from solvers.driftrec.score_models import DRIFTREC_CONFIG_NAME

    assert TRAINING_RUN_MARKERS["prior"][0] == TRAINING_RUN_MARKERS["driftrec"][0] == STATE_JSON
    assert TRAINING_RUN_MARKERS["driftrec"][1] == DRIFTREC_CONFIG_NAME
