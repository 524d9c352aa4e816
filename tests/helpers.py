"""Helpers shared by the test files."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor

import opkit


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the previous count.

    Elementwise kernels on two threads crawl when the other core is busy (shared machine).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def dense_matrix(
    fn: Callable[[Tensor], Tensor], shape: tuple[int, ...], out_shape: tuple[int, ...] | None = None
) -> Tensor:
    """The matrix of a linear map of images, column j = fn(e_j) flattened (float64).

    With ``out_shape`` the columns must have exactly that many entries.
    """
    n = math.prod(shape)
    cols = fn(torch.eye(n, dtype=torch.float64).reshape(n, *shape))
    return cols.reshape(n, -1 if out_shape is None else math.prod(out_shape)).T


def assert_rejects_wrong_shapes(
    op: opkit.LinearOperator,
    input_shape: tuple[int, ...],
    pinv_shape: tuple[int, ...],
    adjoint_shape: tuple[int, ...],
) -> None:
    """``op`` refuses an input of ``input_shape``, an unbatched and an integer input; ``pinv`` and
    ``adjoint`` refuse measurements of ``pinv_shape`` and ``adjoint_shape``."""
    with pytest.raises(ValueError, match="expected input of shape"):
        op(torch.rand(*input_shape))
    with pytest.raises(ValueError, match="expected input of shape"):
        op(torch.rand(*op.shape))
    with pytest.raises(ValueError, match="floating"):
        op(torch.ones(1, *op.shape, dtype=torch.int64))
    with pytest.raises(ValueError, match="measurement of shape"):
        op.pinv(torch.rand(*pinv_shape))
    with pytest.raises(ValueError, match="measurement of shape"):
        op.adjoint(torch.rand(*adjoint_shape))


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run ``opkit ARGV`` in-process as the interpreter would: ``(status, stdout, stderr)``."""
    from opkit_cli.main import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        if isinstance(exc.code, str):  # what the interpreter prints and exits 1 for
            print(exc.code, file=sys.stderr)
            code = 1
        else:
            code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
