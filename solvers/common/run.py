"""What every solver shares: noise draws, the progress bar, the contract's checks and its info.

Solvers written as plugins may use these too; they follow :mod:`opkit.solver`.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

import opkit
from opkit.params import check_positive_int
from opkit.solver import accepts, operator_kind

__all__ = [
    "Progress",
    "SolveInfo",
    "check_batch",
    "check_common",
    "check_operator_kind",
    "normal_",
    "randn",
    "repeat_rows",
]


@dataclass
class SolveInfo:
    """What a solver run did (``return_info=True``).

    Attributes
    ----------
    nfe : int
        Model evaluations (each on the whole batch of ``B · num_samples``).
    steps : int
        Steps taken.
    samples : torch.Tensor or None
        The individual samples ``(B, num_samples, C, H, W)`` before averaging.
    extra : dict
        Solver-specific statistics.
    """

    nfe: int = 0
    steps: int = 0
    samples: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def normal_(buf: Tensor, generator: torch.Generator | Sequence[torch.Generator] | None) -> Tensor:
    """Fill ``buf`` with standard normal noise from ``generator``, which may live on any device.

    Parameters
    ----------
    buf : torch.Tensor
        The tensor to fill.
    generator : torch.Generator, sequence of torch.Generator, or None
        Source of the noise. A sequence of ``B`` generators fills the rows of measurement ``b``
        (its ``len(buf) / B`` samples) from generator ``b`` alone, exactly as ``b`` restored by
        itself would be.

    Returns
    -------
    torch.Tensor
        ``buf``.
    """
    if isinstance(generator, Sequence):
        per, rest = divmod(buf.shape[0], len(generator))
        if rest or not per:
            raise ValueError(f"got {len(generator)} generators for a batch of {buf.shape[0]} rows")
        for b, g in enumerate(generator):
            normal_(buf[b * per : (b + 1) * per], g)
        return buf
    if generator is None or generator.device == buf.device:
        return buf.normal_(generator=generator)
    return buf.copy_(torch.randn(buf.shape, generator=generator, device=generator.device, dtype=buf.dtype))


def randn(shape: Sequence[int], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise of ``shape`` on ``like``'s device and dtype, from ``generator`` anywhere.

    Parameters
    ----------
    shape : sequence of int
        Shape of the draw.
    like : torch.Tensor
        Gives device and dtype.
    generator : torch.Generator or None
        Source of the noise.

    Returns
    -------
    torch.Tensor
        The noise.
    """
    return normal_(torch.empty(tuple(shape), dtype=like.dtype, device=like.device), generator)


def repeat_rows(v: Any, k: int, batch: int) -> Any:
    """Repeat each row of a tensor whose first axis is ``batch`` ``k`` times (sample layout)."""
    if k > 1 and isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == batch:
        return v.repeat_interleave(k, dim=0)
    return v


def check_common(steps: Any, num_samples: Any) -> None:
    """``ValueError`` for ``steps`` or ``num_samples`` that are not positive integers."""
    check_positive_int("num_samples", num_samples)
    check_positive_int("steps", steps)


def check_batch(batch: int) -> None:
    """``ValueError`` for a measurement batch of size 0 (the contract's error, before any work).

    Parameters
    ----------
    batch : int
        The number of measurements (the first axis of ``y``, or of ``Decode(y)``).

    Raises
    ------
    ValueError
        If ``batch < 1``.
    """
    if batch < 1:
        raise ValueError(f"y holds no measurement: a batch of {batch}; give at least one")


def check_operator_kind(solver: str, op: Any, accepted: tuple[str, ...]) -> str:
    """The kind of ``op`` (:func:`opkit.solver.operator_kind`); ``TypeError`` if ``solver`` cannot take it.

    Parameters
    ----------
    solver : str
        Solver name, for the message.
    op : opkit.Operator
        The operator.
    accepted : tuple of str
        Kinds the solver accepts.

    Returns
    -------
    str
        The operator's kind.
    """
    kind = operator_kind(op) if isinstance(op, opkit.Operator) else None
    if kind is None or not accepts(kind, accepted):
        raise TypeError(
            f"{solver} takes operators of kind {', '.join(accepted)}; got {type(op).__name__}"
            + (f" (kind {kind})" if kind else "")
        )
    return kind


def callback_arity(callback: Callable[..., Any]) -> int:
    """How many positional arguments ``callback`` takes (4 when it takes ``*args``)."""
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return 4
    n = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return 4
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


class Progress:
    """A tqdm bar with the time per step, or nothing (``progress=False``).

    Parameters
    ----------
    total : int
        Steps.
    desc : str
        Label.
    progress : bool or None
        Show it; ``None`` shows it when stderr is a terminal.
    """

    def __init__(self, total: int, desc: str, progress: bool | None) -> None:
        show = progress if progress is not None else sys.stderr.isatty()
        self.bar: Any = None
        self._tic = time.perf_counter()
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", leave=True)

    def start(self) -> None:
        """Mark the start of a step."""
        self._tic = time.perf_counter()

    def tick(self, n: int = 1) -> None:
        """Advance by ``n`` steps and show the time of the step just done."""
        if self.bar is not None:
            per = (time.perf_counter() - self._tic) * 1e3 / max(n, 1)
            self.bar.set_postfix_str(f"{per:.1f} ms/step", refresh=False)
            self.bar.update(n)
        self._tic = time.perf_counter()

    def close(self) -> None:
        """Show the mean time per step and close the bar."""
        bar = self.bar
        if bar is None:
            return
        elapsed = bar.format_dict.get("elapsed", 0.0)
        if bar.n:
            bar.set_postfix_str(f"{elapsed / bar.n * 1e3:.1f} ms/step on average", refresh=False)
        bar.refresh()
        bar.close()
        self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
