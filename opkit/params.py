"""Validators for operator and solver parameters.

Every operator keeps its parameters in a frozen, validated attrs class; a bad value raises
``ValueError`` naming the parameter. Each rule is written once, as a plain check for function
arguments, ``check_*(name, value, ...)``, which returns the value (as ``float`` for the real-number
checks) or raises ``ValueError`` whose message starts with ``name``. The attrs validators
(:func:`positive_int`, :func:`positive`, :func:`non_negative`, :func:`in_range`, :func:`one_of`)
are the same checks, called with the attribute's name. The built-in plugins and solvers share them,
and third-party ones may use them too.

Examples
--------
>>> check_positive_int("steps", 20)
20
>>> check_unit("eta", 0.85)
0.85
>>> check_in_range("quality", 101, 1, 100, integer=True)
Traceback (most recent call last):
    ...
ValueError: quality must be an integer in [1, 100], got 101
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

__all__ = [
    "check_in_range",
    "check_non_negative",
    "check_one_of",
    "check_positive",
    "check_positive_int",
    "check_unit",
    "in_range",
    "non_negative",
    "one_of",
    "positive",
    "positive_int",
]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _as_float(value: Any) -> float:
    """``float(value)``; NaN (which every range check refuses) for ``bool`` and non-numbers."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_positive_int(name: str, value: Any) -> int:
    """``value`` if it is an ``int`` (not ``bool``) greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_positive(name: str, value: Any) -> float:
    """``float(value)`` if it is a finite real number greater than zero."""
    f = _as_float(value)
    if not 0.0 < f < math.inf:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return f


def check_non_negative(name: str, value: Any) -> float:
    """``float(value)`` if it is a finite real number ``>= 0``."""
    f = _as_float(value)
    if not 0.0 <= f < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return f


def check_unit(name: str, value: Any) -> float:
    """``float(value)`` if it is a real number in ``[0, 1]``."""
    f = _as_float(value)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return f


def check_in_range(name: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> Any:
    """``value`` if ``lo <= value <= hi`` (inclusive; an ``int``, not ``bool``, if ``integer``)."""
    bad = isinstance(value, bool) or (integer and not isinstance(value, int))
    if bad or not lo <= _as_float(value) <= hi:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} in [{lo}, {hi}], got {value!r}")
    return value


def check_one_of(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices!r}, got {value!r}")
    return value


def _validator(name: str, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Validator:
    """The attrs validator ``name`` that runs ``check(attribute.name, value, *args, **kwargs)``."""

    def validate(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        check(attribute.name, value, *args, **kwargs)

    given = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    validate.__name__ = validate.__qualname__ = name
    validate.__doc__ = f"attrs validator: :func:`{check.__name__}`" + (f" with {given}." if given else ".")
    return validate


positive_int = _validator("positive_int", check_positive_int)
positive = _validator("positive", check_positive)
non_negative = _validator("non_negative", check_non_negative)


def in_range(lo: float, hi: float, *, integer: bool = False) -> Validator:
    """attrs validator factory: :func:`check_in_range` with these bounds."""
    return _validator("in_range", check_in_range, lo, hi, integer=integer)


def one_of(*choices: Any) -> Validator:
    """attrs validator factory: :func:`check_one_of` with these ``choices``."""
    return _validator("one_of", check_one_of, choices)
