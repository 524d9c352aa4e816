"""A well-behaved plugin registering one operator."""

from typing import Any

import opkit
from tests.toy_operators import RoundToGrid


def _factory(*, shape: tuple[int, int, int], levels: int = 4) -> RoundToGrid:
    """Round to a grid of levels (test plugin)."""
    return RoundToGrid(shape, levels)


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    registry.add_operator("fake_round", _factory)
