"""``denoise``: the identity operator (noise is the solver's ``sigma_y``)."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

import opkit
from opkit.testing.strategies import shapes

__all__ = ["Denoise"]


class Denoise(opkit.DiagonalOperator):
    """Identity degradation ``H = I``: ``U = V = I`` and every singular value is one.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``.
    """

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__(shape)
        self._s = torch.ones(())

    @property
    def singulars(self) -> Tensor:
        """A scalar one (broadcasts to every coordinate)."""
        return self._s

    def forward(self, x: Tensor) -> Tensor:
        """``H x = x`` (a copy)."""
        return x.clone()

    def pinv(self, y: Tensor) -> Tensor:
        """``H† y = y`` (a copy)."""
        self.check_measurement(y)
        return y.clone()


def _factory(*, shape: tuple[int, int, int]) -> Denoise:
    """Identity: the measurement is the (noisy) image itself."""
    return Denoise(shape)


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    """Register ``denoise``."""
    registry.add_operator("denoise", _factory, strategy=st.fixed_dictionaries({"shape": shapes()}))
