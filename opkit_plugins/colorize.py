"""Placeholder: the colorize family is being written (registers nothing yet)."""

from typing import Any

import opkit


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    """Register nothing yet."""
