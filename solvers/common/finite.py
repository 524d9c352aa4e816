"""Checks that the solvers' inputs and the models' outputs are finite (private).

A model that returns NaN or infinity would otherwise turn the whole result into NaN (or, after
clamping, a black image) without a word. :class:`FiniteWatch` records the first step whose model
output is not finite. On the CPU the check costs one reduction and the error is raised at once;
on an accelerator the flag stays on the device (no host synchronisation in the sampling loop) and
is read once, by :meth:`FiniteWatch.check`, at the end.
"""

from __future__ import annotations

import torch
from torch import Tensor

from opkit.operators import all_finite

__all__ = ["FiniteWatch", "check_finite", "working_dtype"]


def check_finite(name: str, t: Tensor) -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or infinity; the message names ``name``."""
    if not all_finite(t):
        raise ValueError(f"{name} contains NaN or infinity")


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a solver computes in for inputs of ``dtype``: float32 for half precision."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class FiniteWatch:
    """Remembers the first step at which a model returned a non-finite value.

    Parameters
    ----------
    what : str
        Who produced the values, for the message (e.g. ``"the model"``).
    describe : callable
        ``describe(step) -> str``: where that step is, e.g. ``"step 3 of 20 (timestep 850)"``.
    """

    def __init__(self, what: str, describe: object) -> None:
        self.what = what
        self.describe = describe
        self._first: Tensor | None = None

    def update(self, step: int, out: Tensor) -> None:
        """Record ``out``, the model output of ``step`` (raises at once on the CPU)."""
        if out.device.type == "cpu":
            if not all_finite(out):
                self._raise(step)
            return
        bad = ~torch.isfinite(out).all()
        here = torch.where(bad, step, -1)
        self._first = here if self._first is None else torch.where(self._first >= 0, self._first, here)

    def check(self) -> None:
        """Raise ``ValueError`` if some recorded step was not finite (one synchronisation)."""
        if self._first is not None:
            step = int(self._first)
            if step >= 0:
                self._raise(step)

    def _raise(self, step: int) -> None:
        where = self.describe(step) if callable(self.describe) else f"step {step + 1}"
        raise ValueError(f"{self.what} returned NaN or infinity at {where}")
