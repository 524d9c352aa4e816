"""A plugin registering one solver (the built-in ΠGDM under another name) and a file reader."""

from typing import Any

import torch

import opkit
from solvers import pigdm
from solvers.oracles import OraclePrior


@opkit.hookimpl
def opkit_register_solvers(registry: Any) -> None:
    registry.add_solver("fake_pigdm", pigdm, accepts=("svd",), model="prior", oracle=OraclePrior)


@opkit.hookimpl
def opkit_read_measurement(path: str, max_pixels: int | None) -> Any:
    if not path.endswith(".fake"):
        return None
    op = opkit.create("denoise", shape=(1, 2, 2))
    return op, torch.zeros(1, 1, 2, 2)


@opkit.hookimpl
def opkit_write_measurement(op: Any, x: Any, suffix: str | None) -> Any:
    if suffix not in (None, ".fake"):
        return None
    return ".fake", b"fake:" + bytes(str(tuple(op.shape)), "ascii")
