r"""A solver's measurement, checked once per call, and its spectral form in the model range.

DDRM, ΠGDM, DiffPIR and DPS take their measurements through these functions, so that every
solver refuses the same faults with the same message:

* :func:`linear_measurement` -- ``y`` of a linear operator: a finite floating tensor that fits;
* :func:`decoded_measurement` -- ``Decode(y)`` of an encode/decode pair, checked;
* :func:`spectral_measurement` -- :math:`\bar y = \Sigma^+ U^\top (2y - H\mathbf 1)`, the
  measurement in the spectral coordinates of an SVD operator and the model range
  :math:`[-1, 1]`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import opkit
from solvers.common.finite import check_finite
from solvers.common.run import check_batch

__all__ = ["decoded_measurement", "linear_measurement", "spectral_measurement"]


def linear_measurement(op: opkit.LinearOperator, y: Any) -> Tensor:
    """``y`` checked for a linear operator: a floating tensor that fits ``op``, without NaN or inf.

    Parameters
    ----------
    op : opkit.LinearOperator
        The operator.
    y : object
        The candidate measurement ``(B, *op.out_shape)``.

    Returns
    -------
    torch.Tensor
        ``y`` itself.

    Raises
    ------
    ValueError
        If ``y`` is not a floating tensor, does not fit ``op``, is an empty batch or is not
        finite.
    """
    if not isinstance(y, Tensor):
        raise ValueError(f"y must be a tensor for {op.label}, got {type(y).__name__}")
    if not y.is_floating_point():
        raise ValueError(f"y must be a floating tensor for {op.label}, got {y.dtype}")
    op.check_measurement(y)
    check_batch(y.shape[0])
    check_finite("y", y)
    return y


def decoded_measurement(op: opkit.EncodeDecodeOperator[Any], y: Any) -> Tensor:
    """``Decode(y)`` of an encode/decode pair, after ``op.check_measurement(y)``, checked.

    Parameters
    ----------
    op : opkit.EncodeDecodeOperator
        The pair.
    y : measurement
        Its measurement (codes made by this operator's encoder).

    Returns
    -------
    torch.Tensor
        ``(B, *op.shape)`` floating images.

    Raises
    ------
    ValueError
        If ``y`` is not this operator's measurement or decodes to something that is not a
        finite, non-empty floating image batch of ``op``'s shape.
    """
    op.check_measurement(y)
    dec_y = op.decode(y)
    if not isinstance(dec_y, Tensor) or not dec_y.is_floating_point():
        raise ValueError(f"{op.label}.decode(y) must return a floating image tensor")
    if dec_y.ndim != 4 or tuple(dec_y.shape[1:]) != op.shape:
        raise ValueError(
            f"y does not fit {op.label}: it decodes to shape {tuple(dec_y.shape)}, "
            f"expected (B, {', '.join(map(str, op.shape))})"
        )
    check_batch(dec_y.shape[0])
    check_finite("Decode(y)", dec_y)
    return dec_y


def spectral_measurement(op: opkit.SVDOperator, y: Tensor) -> Tensor:
    r"""The measurement in the spectral coordinates of ``op`` and the model range.

    With :math:`H = U \Sigma V^\top` and images mapped to the model range by :math:`x \mapsto
    2x - 1`, the measurement of :math:`2x - 1` is :math:`2y - H\mathbf 1`, and

    .. math::

        \bar y = \Sigma^+ U^\top (2y - H\mathbf 1) = 2\, s^+ \odot U^\top y - [s > 0] \odot V^\top \mathbf 1,

    which equals :math:`V^\top (2x - 1)` on the measured coordinates (:math:`s_i > 0`) for
    noiseless ``y = H x`` and is zero on the null space. No singular value is divided by where
    it is zero (:meth:`opkit.SVDOperator.singulars_pinv_like`).

    Parameters
    ----------
    op : opkit.SVDOperator
        The operator.
    y : torch.Tensor
        ``(B, *op.out_shape)`` measurements (checked by :func:`linear_measurement`).

    Returns
    -------
    torch.Tensor
        :math:`\bar y`, shaped like ``op.Vt(x)`` for a batch ``x`` of ``B`` images.
    """
    pos = (op.singulars_like(y) > 0).to(y.dtype)
    ones = torch.ones((1, *op.shape), dtype=y.dtype, device=y.device)
    return 2.0 * op.singulars_pinv_like(y) * op.Ut(y) - pos * op.Vt(ones)
