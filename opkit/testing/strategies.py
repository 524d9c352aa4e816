"""Hypothesis strategies for operators and images.

Plugin authors build their parameter strategies from :func:`shapes`; the generic property
suite draws any registered operator with :func:`operators`.

Examples
--------
A parameter strategy for an operator that needs sizes divisible by its ``factor``::

    from hypothesis import strategies as st
    from opkit.testing import strategies as ost

    params = st.sampled_from([2, 4]).flatmap(
        lambda f: st.fixed_dictionaries({"shape": ost.shapes(multiple_of=f), "factor": st.just(f)})
    )
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

from opkit.operators import Operator

__all__ = ["images", "operator_kwargs", "operators", "shapes"]


def shapes(
    *,
    channels: int | tuple[int, ...] = (1, 3),
    multiple_of: int = 1,
    min_side: int = 1,
    max_side: int = 24,
) -> st.SearchStrategy[tuple[int, int, int]]:
    """Image shapes ``(C, H, W)``, square or not.

    Parameters
    ----------
    channels : int or tuple of int
        Allowed channel counts.
    multiple_of : int
        Height and width are multiples of this.
    min_side, max_side : int
        Bounds on height and width (``max_side`` is raised to one multiple if needed).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Strategy of shapes.
    """
    chans = (channels,) if isinstance(channels, int) else tuple(channels)
    lo = max(1, -(-min_side // multiple_of))
    hi = max(lo, max_side // multiple_of)
    side = st.integers(lo, hi).map(lambda k: k * multiple_of)
    return st.tuples(st.sampled_from(chans), side, side)


def images(
    shape: tuple[int, int, int] | None = None,
    *,
    batch: int | st.SearchStrategy[int] | None = None,
    dtype: torch.dtype | st.SearchStrategy[torch.dtype] | None = None,
) -> st.SearchStrategy[torch.Tensor]:
    """Image batches ``(B, C, H, W)`` with values in ``[0, 1]``, drawn from a seeded generator.

    Parameters
    ----------
    shape : tuple of int, optional
        Fixed ``(C, H, W)``; drawn from :func:`shapes` if omitted.
    batch : int or strategy, optional
        Batch size (default: 1 to 3).
    dtype : torch.dtype or strategy, optional
        Floating dtype (default: float32 or float64).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Strategy of tensors.
    """
    shape_st = st.just(shape) if shape is not None else shapes()
    batch_st = st.integers(1, 3) if batch is None else st.just(batch) if isinstance(batch, int) else batch
    if dtype is None:
        dtype_st = st.sampled_from([torch.float32, torch.float64])
    else:
        dtype_st = st.just(dtype) if isinstance(dtype, torch.dtype) else dtype

    @st.composite
    def draw(d: st.DrawFn) -> torch.Tensor:
        shp = d(shape_st)
        b = d(batch_st)
        dt = d(dtype_st)
        seed = d(st.integers(0, 2**31 - 1))
        g = torch.Generator().manual_seed(seed)
        return torch.rand((b, *shp), generator=g, dtype=torch.float64).to(dt)

    return draw()


def operator_kwargs(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword dicts (``shape`` included) valid for the registered operator ``name``.

    Uses the strategy the plugin registered; without one, draws shapes only.

    Parameters
    ----------
    name : str
        A registered operator name.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Strategy of dicts for :func:`opkit.create`.
    """
    from opkit.registry import default_registry

    entry = default_registry().operator_entry(name)
    if entry.strategy is None:
        return st.fixed_dictionaries({"shape": shapes()})
    return entry.strategy  # type: ignore[no-any-return]


def operators(names: list[str] | tuple[str, ...] | None = None) -> st.SearchStrategy[Operator[Any]]:
    """Registered operators with valid, randomly drawn parameters.

    Parameters
    ----------
    names : sequence of str, optional
        Restrict to these names; all registered operators by default (third-party included).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Strategy of operators.
    """
    from opkit.registry import default_registry

    reg = default_registry()
    pool = list(names) if names is not None else reg.operator_names()
    if not pool:
        raise ValueError("no operators are registered")

    def build(name: str) -> st.SearchStrategy[Operator[Any]]:
        return operator_kwargs(name).map(lambda kw: reg.create(name, **kw))

    return st.sampled_from(sorted(pool)).flatmap(build)
