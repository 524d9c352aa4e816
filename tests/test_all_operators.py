"""The generic property suite: every registered operator, third-party ones included.

Each operator's own hypothesis strategy draws valid parameters (shape included); the testing
kit then checks every law that applies, in float64 and in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import opkit
from opkit.testing import check_operator, strategies

NAMES = opkit.available()


def test_something_is_registered() -> None:
    assert "denoise" in NAMES


def for_every_registered_name(max_examples: int) -> Callable[[Callable[..., None]], Any]:
    """``test(name, data)`` for every registered name, each with ``max_examples`` hypothesis draws."""

    def wrap(test: Callable[..., None]) -> Any:
        drawn = settings(max_examples=max_examples)(given(data=st.data())(test))
        return pytest.mark.parametrize("name", NAMES)(drawn)

    return wrap


@for_every_registered_name(max_examples=8)
def test_registered_operator_obeys_its_laws(name: str, data: st.DataObject) -> None:
    kwargs: dict[str, Any] = data.draw(strategies.operator_kwargs(name), label="kwargs")
    op = opkit.create(name, **kwargs)
    assert op.shape == tuple(kwargs["shape"])
    seed = data.draw(st.integers(0, 2**16), label="seed")
    batch = data.draw(st.integers(1, 3), label="batch")
    check_operator(op, dtype=torch.float64, batch=batch, seed=seed)
    check_operator(op, dtype=torch.float32, batch=batch, seed=seed)


@for_every_registered_name(max_examples=3)
def test_registered_operator_rejects_a_wrong_input_shape(name: str, data: st.DataObject) -> None:
    kwargs: dict[str, Any] = data.draw(strategies.operator_kwargs(name), label="kwargs")
    op = opkit.create(name, **kwargs)
    c, h, w = op.shape
    with pytest.raises(ValueError, match="shape"):
        op(torch.zeros(1, c, h + 1, w))


@pytest.mark.parametrize("name", NAMES)
def test_registered_operator_has_a_description(name: str) -> None:
    assert opkit.default_registry().operator_entry(name).description, f"{name}: give the factory a docstring"
