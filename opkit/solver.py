r"""The solver contract: one call signature, one callback, one set of errors.

Every solver, built-in (:func:`solvers.ddrm`, :func:`solvers.driftrec`, :func:`solvers.pigdm`)
or from a plugin, is a callable following :class:`Solver`::

    x0 = solver(op, y, model, *, steps, num_samples, generator, callback, progress, return_info)

* ``op`` is any :class:`~opkit.Operator` of a kind the solver accepts (:data:`KINDS`), ``y`` its
  measurement, ``model`` what the solver needs (a diffusion prior, a score model, ...).
* ``steps`` (positive int) model-call steps; ``num_samples`` (positive int) samples per
  measurement, drawn as one batch and averaged.
* ``generator``: a :class:`torch.Generator`, the only source of randomness; it may live on
  another device than ``y``.
* ``callback(step, t, x_t, x0_pred)`` once per step: the step index from 0, the time or timestep,
  the current iterate and the solver's estimate of the clean image in ``[0, 1]``, both of batch
  ``B · num_samples`` (the samples of measurement ``b`` in consecutive rows).
* ``progress``: a tqdm bar on stderr; ``False`` shows none, ``None`` shows one when stderr is a
  terminal.
* ``return_info``: also return an object with at least ``nfe`` (model evaluations).
* Solver-specific options (``sigma_y``, ``eta``, ...) are further keywords.

The same faults raise the same errors in every solver:

========================================================  ==============
fault                                                     error
========================================================  ==============
an operator of a kind the solver does not accept          ``TypeError``
a model that does not follow the solver's model protocol  ``TypeError``
bad ``steps``, ``num_samples`` or option values           ``ValueError``
a measurement that does not fit ``op`` or is not finite   ``ValueError``
an empty batch of measurements (``B = 0``)                ``ValueError``
a model that returns NaN or infinity                      ``ValueError``
========================================================  ==============
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from opkit.operators import EncodeDecodeOperator, LinearOperator, Operator, SVDOperator

__all__ = ["KINDS", "MODEL_KINDS", "Solver", "SolverCallback", "operator_kind"]

#: Operator kinds a solver may accept: linear with an implicit SVD, any linear operator (``Hx``,
#: ``Hᵀy`` and ``H†y``), and non-linear encode/decode pairs.
KINDS: tuple[str, ...] = ("svd", "linear", "encode_decode")

#: Model kinds the command line knows how to load: ``"prior"`` (an ε-prediction diffusion prior,
#: :func:`solvers.load_prior`), ``"driftrec"`` (a conditional score model,
#: :func:`solvers.load_driftrec`) and ``"none"``.
MODEL_KINDS: tuple[str, ...] = ("prior", "driftrec", "none")


def operator_kind(op: Operator[Any]) -> str | None:
    """The most specific kind of ``op`` in :data:`KINDS`, or ``None``.

    Parameters
    ----------
    op : opkit.Operator
        Any operator.

    Returns
    -------
    str or None
        ``"svd"`` for an :class:`~opkit.SVDOperator`, ``"linear"`` for another
        :class:`~opkit.LinearOperator`, ``"encode_decode"`` for an
        :class:`~opkit.EncodeDecodeOperator`, ``None`` otherwise.

    Examples
    --------
    >>> import opkit
    >>> operator_kind(opkit.create("denoise", shape=(1, 4, 4)))
    'svd'
    """
    if isinstance(op, SVDOperator):
        return "svd"
    if isinstance(op, LinearOperator):
        return "linear"
    if isinstance(op, EncodeDecodeOperator):
        return "encode_decode"
    return None


def accepts(kind: str | None, accepted: tuple[str, ...]) -> bool:
    """Whether an operator of ``kind`` fits a solver accepting ``accepted``.

    An SVD operator is also a linear operator, so ``"linear"`` covers it.

    Parameters
    ----------
    kind : str or None
        From :func:`operator_kind`.
    accepted : tuple of str
        Kinds from :data:`KINDS`.

    Returns
    -------
    bool
        ``True`` if the solver can take it.
    """
    if kind is None:
        return False
    return kind in accepted or (kind == "svd" and "linear" in accepted)


class SolverCallback(Protocol):
    """``callback(step, t, x_t, x0_pred)``, called once per solver step."""

    def __call__(self, step: int, t: float, x_t: Tensor, x0_pred: Tensor) -> object: ...


@runtime_checkable
class Solver(Protocol):
    """A restoration method: ``solver(op, y, model, **keywords)`` (see the module docstring)."""

    def __call__(
        self,
        op: Operator[Any],
        y: Any,
        model: Any,
        *,
        steps: int = ...,
        num_samples: int = ...,
        generator: torch.Generator | None = ...,
        callback: SolverCallback | None = ...,
        progress: bool | None = ...,
        return_info: bool = ...,
        **options: Any,
    ) -> Any: ...
