"""The ``opkit ops`` and ``opkit solvers`` commands: what the registry holds, and which plugins were
skipped.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any

import opkit
from opkit.messages import one_line
from opkit_cli.entries import quiet_registry
from opkit_cli.errors import EXIT_OK


def _keywords(defaults: dict[str, Any]) -> str:
    """``name`` or ``name=default`` for each keyword, comma-separated, or ``(none)``."""
    text = ", ".join(
        name if default is inspect.Parameter.empty else f"{name}={default!r}"
        for name, default in defaults.items()
    )
    return text or "(none)"


def _print_skipped(reg: opkit.Registry) -> None:
    for name, why in reg.skipped.items():
        print(f"(skipped plugin {name}: {one_line(why)})", file=sys.stderr)


def cmd_ops(args: argparse.Namespace) -> int:
    """List the registered operators with their parameters and plugins."""
    reg = quiet_registry()
    for entry in reg.operator_entries():
        print(f"{entry.name:<14} {entry.description}")
        print(f"{'':<14} parameters: {_keywords(entry.parameters())}   [plugin: {entry.plugin}]")
    _print_skipped(reg)
    return EXIT_OK


def cmd_solvers(args: argparse.Namespace) -> int:
    """List the registered solvers: operator kinds, model, options and plugin."""
    reg = quiet_registry()
    for entry in reg.solver_entries():
        print(f"{entry.name:<14} {entry.description}")
        kinds = ", ".join(entry.accepts)
        print(f"{'':<14} operators: {kinds}   model: {entry.model}   [plugin: {entry.plugin}]")
        print(f"{'':<14} options: {_keywords(entry.options())}")
    _print_skipped(reg)
    return EXIT_OK
