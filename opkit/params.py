"""Validators for operator parameter classes (frozen attrs classes).

Every operator keeps its parameters in a frozen, validated attrs class; a bad value raises
``ValueError`` naming the parameter. These validators are shared by the built-in plugins and
available to third-party ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["in_range", "one_of", "positive", "positive_int"]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def positive_int(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: ``value`` is an ``int`` (not ``bool``) greater than zero.

    Parameters
    ----------
    _inst : object
        The instance being validated (unused).
    attribute : attrs.Attribute
        The attribute, whose name the error message carries.
    value : object
        The value to check.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def positive(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: ``value`` is a finite real number greater than zero.

    Parameters
    ----------
    _inst : object
        The instance being validated (unused).
    attribute : attrs.Attribute
        The attribute, whose name the error message carries.
    value : object
        The value to check.
    """
    try:
        ok = float(value) > 0 and float(value) != float("inf")
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be a positive finite number, got {value!r}")


def in_range(lo: float, hi: float, *, integer: bool = False) -> Validator:
    """attrs validator factory: ``lo <= value <= hi`` (an ``int`` if ``integer``).

    Parameters
    ----------
    lo, hi : float
        Inclusive bounds.
    integer : bool
        Require an ``int`` (``bool`` is refused).

    Returns
    -------
    callable
        The validator.
    """

    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        kind = "an integer" if integer else "a number"
        bad = isinstance(value, bool) or (integer and not isinstance(value, int))
        if not bad:
            try:
                bad = not (lo <= float(value) <= hi)
            except (TypeError, ValueError):
                bad = True
        if bad:
            raise ValueError(f"{attribute.name} must be {kind} in [{lo}, {hi}], got {value!r}")

    return check


def one_of(*choices: Any) -> Validator:
    """attrs validator factory: ``value`` is one of ``choices``.

    Parameters
    ----------
    *choices
        The allowed values.

    Returns
    -------
    callable
        The validator.
    """

    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {choices!r}, got {value!r}")

    return check
