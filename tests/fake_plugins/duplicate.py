"""A plugin registering a name that another plugin already took."""

from typing import Any

import opkit
from tests.fake_plugins.good import _factory


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    registry.add_operator("fake_round", _factory)
