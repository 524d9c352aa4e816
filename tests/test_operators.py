"""The operator base classes: derived maps, validation, casting, composition."""

from __future__ import annotations

import pytest
import torch

import opkit
from opkit.testing import check_operator
from tests.toy_operators import DenseSVD, RoundToGrid, random_dense_svd


def test_check_shape_accepts_and_rejects() -> None:
    assert opkit.check_shape([3, 4, 5]) == (3, 4, 5)
    for bad in [(3, 4), (0, 4, 4), (3, -1, 4), "abc", 5, (3, 4.5, 4)]:
        with pytest.raises(ValueError):
            opkit.check_shape(bad)


def test_svd_operator_derives_forward_adjoint_pinv_from_factors() -> None:
    op, A = random_dense_svd((1, 3, 4), m=7, rank=5, seed=1)
    x = torch.rand(2, 1, 3, 4, dtype=torch.float64)
    y = torch.randn(2, 7, dtype=torch.float64)
    xf = x.flatten(1)
    torch.testing.assert_close(op(x), xf @ A.T, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.adjoint(y).flatten(1), y @ A, rtol=0, atol=1e-12)
    Ap = torch.linalg.pinv(A)
    torch.testing.assert_close(op.pinv(y).flatten(1), y @ Ap.T, rtol=0, atol=1e-10)


def test_pinv_never_divides_by_zero_singular_values() -> None:
    op, _ = random_dense_svd((1, 2, 2), m=4, rank=0, seed=2)  # all singular values zero
    y = torch.randn(3, 4, dtype=torch.float64)
    out = op.pinv(y)
    assert torch.isfinite(out).all()
    assert torch.count_nonzero(out) == 0


def test_call_validates_input() -> None:
    op = opkit.create("denoise", shape=(3, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, 3, 4, 5\)"):
        op(torch.zeros(1, 3, 5, 4))
    with pytest.raises(ValueError, match="floating"):
        op(torch.zeros(1, 3, 4, 5, dtype=torch.int64))
    with pytest.raises(TypeError):
        op([0.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="measurement"):
        op.pinv(torch.zeros(1, 3, 4))


def test_cast_caches_per_device_and_dtype() -> None:
    op, _ = random_dense_svd((1, 2, 2), m=3, rank=2, seed=3)
    x32 = torch.zeros(1, dtype=torch.float32)
    a = op.singulars_like(x32)
    assert a.dtype == torch.float32
    assert op.singulars_like(x32) is a  # cached, not rebuilt per call
    assert op.singulars_like(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64


def test_composition_matches_dense_product_and_its_pinv() -> None:
    inner, A = random_dense_svd((1, 3, 3), m=9, rank=9, seed=4)
    outer, B = random_dense_svd((1, 3, 3), m=5, rank=4, seed=5)
    outer_img = _Reshape(outer, (1, 3, 3))
    comp = outer_img @ _AsImage(inner, (1, 3, 3))
    x = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    M = B @ A
    torch.testing.assert_close(comp(x), x.flatten(1) @ M.T)
    y = torch.randn(2, 5, dtype=torch.float64)
    torch.testing.assert_close(comp.pinv(y).flatten(1), y @ torch.linalg.pinv(M).T, rtol=1e-7, atol=1e-7)
    check_operator(comp, rtol=1e-7)


def test_composition_rejects_mismatched_shapes() -> None:
    a, _ = random_dense_svd((1, 2, 2), m=3, rank=3, seed=6)
    b, _ = random_dense_svd((1, 2, 2), m=3, rank=3, seed=7)
    with pytest.raises(ValueError, match="cannot compose"):
        a @ b


def test_encode_decode_base_routes_forward_and_pinv() -> None:
    op = RoundToGrid((1, 2, 3), levels=4)
    x = torch.rand(2, 1, 2, 3, dtype=torch.float64)
    assert torch.equal(op(x), op.encode(x))
    assert torch.equal(op.pinv(op(x)), op.decode(op(x)))
    check_operator(op)


class _AsImage(opkit.LinearOperator):
    """Wrap a flat-output dense operator so that it maps images to images."""

    def __init__(self, op: DenseSVD, out: tuple[int, int, int]) -> None:
        super().__init__(op.shape)
        self.op, self._out = op, out

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self._out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.forward(x).view(x.shape[0], *self._out)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(y.flatten(1))

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.pinv(y.flatten(1))


class _Reshape(opkit.LinearOperator):
    """Treat an operator's image input as the outer operator of a composition."""

    def __init__(self, op: DenseSVD, shape: tuple[int, int, int]) -> None:
        super().__init__(shape)
        self.op = op

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.op.out_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(y)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.pinv(y)


def test_per_sample_shapes_a_batch_coefficient_and_passes_scalars_through() -> None:
    from opkit.operators import per_sample

    like = torch.zeros(3, 2, 4, 5, dtype=torch.float64)
    v = torch.tensor([1.0, 2.0, 3.0])
    out = per_sample(v, like)
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float64
    assert torch.equal((out + like)[:, 1, 2, 3], v.double())
    assert per_sample(0.5, like) == 0.5
    assert per_sample(torch.tensor(2.0), like).ndim == 0
    assert per_sample(v, torch.zeros(3, 7)).shape == (3, 1)
