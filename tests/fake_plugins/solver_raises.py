"""A solver plugin that fails while registering, after registering one solver."""

from typing import Any

import opkit
from solvers import ddrm


@opkit.hookimpl
def opkit_register_solvers(registry: Any) -> None:
    registry.add_solver("half_registered", ddrm, accepts=("svd",), model="prior")
    raise RuntimeError("solver boom")
