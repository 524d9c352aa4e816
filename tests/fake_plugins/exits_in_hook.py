"""A plugin whose hook registers one operator and then raises SystemExit: rolled back and skipped."""

from typing import Any

import opkit
from tests.fake_plugins.good import _factory


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    registry.add_operator("fake_exit", _factory)
    raise SystemExit("plugin gave up")
