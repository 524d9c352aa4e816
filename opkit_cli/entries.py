"""Registry look-ups of the ``opkit`` command line: operator and solver entries, ``--param``
checks, building operators and inferring an image's shape from its measurement's, each with
one-line errors.
"""

from __future__ import annotations

import inspect
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import opkit
from opkit.messages import one_line
from opkit_cli.errors import fail


def _entry_or_fail(lookup: Callable[[str], Any], name: str) -> Any:
    try:
        return lookup(name)
    except KeyError as exc:  # the registry's message lists the names
        fail(exc.args[0])


def operator_entry(name: str) -> opkit.OperatorEntry:
    """The registry entry of ``name``, or a one-line error listing the operators."""
    return _entry_or_fail(opkit.default_registry().operator_entry, name)  # type: ignore[no-any-return]


def solver_entry(name: str) -> opkit.SolverEntry:
    """The registry entry of the solver ``name``, or a one-line error listing the solvers."""
    return _entry_or_fail(opkit.default_registry().solver_entry, name)  # type: ignore[no-any-return]


def _takes_any_keyword(factory: Any) -> bool:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return True
    return any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def check_params(name: str, params: dict[str, Any]) -> None:
    """Refuse ``--param`` names the operator ``name`` does not take (naming its parameters)."""
    entry = operator_entry(name)
    if _takes_any_keyword(entry.factory):
        return
    known = entry.parameters()
    for key in params:
        if key not in known:
            fail(f"{name} has no parameter {key!r}; its parameters: {', '.join(known) or '(none)'}")


def create_operator(name: str, shape: tuple[int, ...], params: dict[str, Any]) -> Any:
    """``opkit.create(name, shape=shape, **params)`` with one-line errors naming the parameter."""
    check_params(name, params)
    try:
        return opkit.create(name, shape=shape, **params)
    except (ValueError, TypeError) as exc:
        fail(f"{name}: {exc}")


def infer_image_shape(name: str, y_shape: tuple[int, ...], params: dict[str, Any]) -> tuple[int, int, int]:
    """The image shape ``(C, H, W)`` whose measurement under ``name`` has shape ``y_shape``.

    Tries the measurement's own size and, for operators with a ``factor`` (given, or the
    operator's default, e.g. 4 for super-resolution), the size times the factor, with three
    channels first (colorization) and then the measurement's count; the first shape for which
    the operator builds and its ``out_shape`` equals ``y_shape`` wins. An encode/decode operator
    keeps the image's own shape. When no shape builds, the operator's own error (which names the
    bad parameter) is reported.

    Parameters
    ----------
    name : str
        Registered operator name.
    y_shape : tuple of int
        ``(C, h, w)`` of the measurement image.
    params : dict
        Operator parameters.

    Returns
    -------
    tuple of int
        The image shape.
    """
    check_params(name, params)
    c, h, w = y_shape
    factor = params.get("factor", operator_entry(name).parameters().get("factor", 1))
    factors = [1]
    if isinstance(factor, int) and not isinstance(factor, bool) and factor > 1:
        factors.append(factor)
    errors: list[str] = []
    candidates = [(f, cc) for f in factors for cc in dict.fromkeys([3, c])]
    for f, cc in candidates:
        try:
            op = opkit.create(name, shape=(cc, h * f, w * f), **params)
        except (ValueError, TypeError) as exc:
            errors.append(one_line(exc))
            continue
        if isinstance(op, opkit.LinearOperator):
            if tuple(op.out_shape) != tuple(y_shape):
                continue
        elif (cc, f) != (c, 1):  # an encode/decode pair keeps the image's shape
            continue
        return (cc, h * f, w * f)
    if len(errors) == len(candidates):  # no shape builds: the parameters are at fault
        fail(f"{name}: {Counter(errors).most_common(1)[0][0]}")
    fail(f"cannot find an image shape whose {name} measurement is {tuple(y_shape)}; check --param")


def quiet_registry() -> opkit.Registry:
    """The default registry, loaded without plugin warnings (the listings name skipped plugins)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", opkit.OpkitPluginWarning)
        return opkit.default_registry()
