"""A plugin interrupted by Ctrl-C while registering: the interrupt must go through."""

from typing import Any

import opkit


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    raise KeyboardInterrupt
