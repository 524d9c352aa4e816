"""A plugin that registers one operator and then fails: it must be rolled back entirely."""

from typing import Any

import opkit
from tests.fake_plugins.good import _factory


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    registry.add_operator("fake_partial", _factory)
    raise RuntimeError("boom while registering")
