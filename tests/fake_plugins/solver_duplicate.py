"""A plugin registering an operator and a solver name that is already taken: skipped as a whole."""

from typing import Any

import opkit
from solvers import ddrm
from tests.fake_plugins.good import _factory


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    registry.add_operator("fake_round_two", _factory)


@opkit.hookimpl
def opkit_register_solvers(registry: Any) -> None:
    registry.add_solver("fake_pigdm", ddrm, accepts=("svd",), model="prior")
