"""The testing kit must pass correct operators and catch broken ones, naming the law."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import opkit
from opkit.testing import check_operator, default_rtol
from tests.toy_operators import DenseSVD, RoundToGrid, random_dense_svd


def test_correct_dense_operator_passes_in_both_precisions() -> None:
    op, _ = random_dense_svd((2, 3, 2), m=8, rank=6, seed=0)
    rep64 = check_operator(op)
    rep32 = check_operator(op, dtype=torch.float32)
    assert "H H† H = H" in rep64.errors
    assert rep64.errors["H H† H = H"] < default_rtol(torch.float64)
    assert rep32.tolerances["H H† H = H"] == default_rtol(torch.float32)


def test_tolerance_scales_with_dtype() -> None:
    assert default_rtol(torch.float32) > 1e6 * default_rtol(torch.float64)


class PinvOffByFactor(DenseSVD):
    def pinv(self, y: Tensor) -> Tensor:
        return 2.0 * super().pinv(y)


class AdjointNotTranspose(DenseSVD):
    def adjoint(self, y: Tensor) -> Tensor:
        return super().pinv(y)  # H† is not Hᵀ unless the singular values are one


class NonOrthogonalV(DenseSVD):
    def V(self, v: Tensor) -> Tensor:
        return 1.1 * super().V(v)

    def Vt(self, x: Tensor) -> Tensor:
        return 1.1 * super().Vt(x)


class ForwardDisagreesWithSVD(DenseSVD):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + 0.01 * super().forward(x.flip(-1))


class MixesBatch(DenseSVD):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x + x.mean(0, keepdim=True))


def _build(cls: type[DenseSVD]) -> DenseSVD:
    base, _ = random_dense_svd((1, 3, 3), m=6, rank=5, seed=11)
    return cls(base.shape, base.Um, base.s_m, base.Vm)


@pytest.mark.parametrize(
    ("cls", "law"),
    [
        (PinvOffByFactor, "H H† H = H"),
        (PinvOffByFactor, "V Σ⁺ Uᵀ y = H† y"),
        (AdjointNotTranspose, "dot test"),
        (NonOrthogonalV, "Vᵀ V = I"),
        (ForwardDisagreesWithSVD, "U Σ Vᵀ x = H x"),
        (MixesBatch, "batch item independently"),
    ],
)
def test_broken_operators_are_caught_and_the_law_named(cls: type[DenseSVD], law: str) -> None:
    op = _build(cls)
    with pytest.raises(AssertionError) as info:
        check_operator(op)
    assert law in str(info.value)
    assert "error" in str(info.value)


def test_wrong_reference_is_caught() -> None:
    op, A = random_dense_svd((1, 2, 2), m=3, rank=3, seed=5)
    check_operator(op, reference=lambda x: x.flatten(1) @ A.T)
    with pytest.raises(AssertionError, match="direct implementation"):
        check_operator(op, reference=lambda x: 1.01 * x.flatten(1) @ A.T)


class NotIdempotent(RoundToGrid):
    def decode(self, y: Tensor) -> Tensor:
        return (y.to(torch.float64) + 1.0) / self.levels  # bin edges, not centres: re-encodes up


class DecodeFar(RoundToGrid):
    def roundtrip_tolerance(self) -> float:
        return 1e-3


def test_encode_decode_laws() -> None:
    check_operator(RoundToGrid((3, 4, 5), levels=8))
    with pytest.raises(AssertionError, match=r"Encode\(Decode\(Encode\(x\)\)\) == Encode\(x\)"):
        check_operator(NotIdempotent((3, 4, 5), levels=8))
    with pytest.raises(AssertionError, match="close to x"):
        check_operator(DecodeFar((3, 4, 5), levels=8))


def test_report_lists_all_failures_at_once() -> None:
    op = _build(PinvOffByFactor)
    with pytest.raises(AssertionError) as info:
        check_operator(op)
    assert str(info.value).count("law '") >= 3


def test_strategies_draw_valid_images_and_operators() -> None:
    from hypothesis import given, settings

    from opkit.testing import strategies

    @settings(max_examples=10)
    @given(strategies.images(), strategies.shapes(multiple_of=4, max_side=16))
    def inner(x: Tensor, shape: tuple[int, int, int]) -> None:
        assert x.ndim == 4 and x.dtype in (torch.float32, torch.float64)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert shape[1] % 4 == 0 and shape[2] % 4 == 0 and shape[1] <= 16

    inner()

    @settings(max_examples=5)
    @given(strategies.operators(["denoise"]))
    def inner2(op: opkit.Operator) -> None:  # type: ignore[type-arg]
        assert op.name == "denoise"

    inner2()
