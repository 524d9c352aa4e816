"""Validators for operator and solver parameters.

Every operator keeps its parameters in a frozen, validated attrs class; a bad value raises
``ValueError`` naming the parameter. The attrs validators (:func:`positive_int`, ...) and the
plain checks for function arguments (:func:`check_positive_int`, :func:`check_unit`,
:func:`check_non_negative`) are shared by the built-in plugins and solvers and available to
third-party ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

__all__ = [
    "check_non_negative",
    "check_positive_int",
    "check_unit",
    "in_range",
    "non_negative",
    "one_of",
    "positive",
    "positive_int",
]

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


def non_negative(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: ``value`` is a finite real number ``>= 0``.

    Parameters
    ----------
    _inst : object
        The instance being validated (unused).
    attribute : attrs.Attribute
        The attribute, whose name the error message carries.
    value : object
        The value to check.
    """
    check_non_negative(attribute.name, value)


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


def check_positive_int(name: str, value: Any) -> int:
    """``value`` if it is an ``int`` (not ``bool``) greater than zero, else ``ValueError``.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value to check.

    Returns
    -------
    int
        ``value``.

    Examples
    --------
    >>> check_positive_int("steps", 20)
    20
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_unit(name: str, value: Any) -> float:
    """``float(value)`` if it is a number in ``[0, 1]``, else ``ValueError``.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value to check.

    Returns
    -------
    float
        The value.
    """
    f = _as_float(value)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return f


def check_non_negative(name: str, value: Any) -> float:
    """``float(value)`` if it is a finite number ``>= 0``, else ``ValueError``.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value to check.

    Returns
    -------
    float
        The value.
    """
    f = _as_float(value)
    if not 0.0 <= f < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return f
