"""Relaxations of encode/decode pairs: exact rounding to the codes, gradients, the kit's law."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

import opkit
from opkit.testing import check_operator


def _round_half_away(v: Tensor) -> Tensor:
    return torch.trunc(v + torch.copysign(torch.full_like(v, 0.5), v))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("shape", "params"),
    [
        ((3, 16, 16), {"quality": 10}),
        ((3, 21, 13), {"quality": 50, "subsampling": "4:2:2"}),
        ((3, 9, 30), {"quality": 90, "subsampling": "4:4:4"}),
        ((1, 17, 8), {"quality": 30}),
    ],
)
def test_jpeg_relaxation_rounds_to_the_codes_exactly(
    shape: tuple[int, int, int], params: dict[str, Any], dtype: torch.dtype
) -> None:
    op = opkit.create("jpeg", shape=shape, **params)
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(0), dtype=dtype)  # continuous images
    relaxed = op.relaxed_codes(x)
    assert relaxed.dtype == dtype and relaxed.shape == op.codes(op(x)).shape
    assert torch.equal(_round_half_away(relaxed).to(torch.int64), op.codes(op(x)).to(torch.int64))


def test_jpeg_relaxation_is_affine_and_differentiable() -> None:
    op = opkit.create("jpeg", shape=(3, 16, 24), quality=25)
    x = torch.rand((2, 3, 16, 24), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    leaf = x.clone().requires_grad_(True)
    relaxed = op.relaxed_codes(leaf)
    w = torch.randn(relaxed.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (g,) = torch.autograd.grad(relaxed, leaf, grad_outputs=w)
    # affine: r(x + d) − r(x) = J d, so <w, J d> = <Jᵀw, d>
    lhs = float((w * (op.relaxed_codes(x + d) - op.relaxed_codes(x))).sum())
    assert lhs == pytest.approx(float((g * d).sum()), rel=1e-10)
    # rows are independent: image 1's codes do not depend on image 0
    assert float(g[0].abs().sum()) > 0
    (g1,) = torch.autograd.grad(op.relaxed_codes(leaf)[1].sum(), leaf)
    assert float(g1[0].abs().max()) == 0.0


def test_jpeg_relaxation_of_eight_bit_images_is_the_float_arithmetics() -> None:
    """8-bit images encode through libjpeg's integer arithmetic; the relaxation stays the float one."""
    op = opkit.create("jpeg", shape=(3, 16, 16), quality=50)
    x = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0)).double() / 255
    codes = op.codes(op(x)).double()
    relaxed = op.relaxed_codes(x)
    assert float((codes - relaxed).abs().max()) <= 1.5  # within a code of the float arithmetic's
    flt = opkit.create("jpeg", shape=(3, 16, 16), quality=50, encoder="float")
    assert torch.equal(_round_half_away(relaxed).long(), flt.codes(flt(x)).long())


@pytest.mark.parametrize("bits", [1, 3, 8, 16])
def test_quantize_relaxation_floors_to_the_levels_exactly(bits: int) -> None:
    op = opkit.create("quantize", shape=(3, 8, 8), bits=bits)
    x = torch.rand((2, 3, 8, 8), generator=torch.Generator().manual_seed(bits), dtype=torch.float64)
    x[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 0.5, 1.0 - 2.0**-20], dtype=torch.float64)  # edges and a tie
    for dtype in (torch.float64, torch.float32):
        xx = x.to(dtype)
        r = op.relaxed_codes(xx)
        assert r.dtype == dtype
        levels = torch.clamp(torch.floor(r + 0.5), 0, op.levels - 1).long()
        assert torch.equal(levels, op(xx).long())
    # the relaxation's zero is the level's centre, i.e. Decode
    assert torch.allclose(op.relaxed_codes(op.decode(op(x))), op(x).double(), rtol=0, atol=1e-9)


def test_quantize_relaxation_is_not_clamped() -> None:
    """Outside [0, 1] it keeps its slope, so a residual still pulls a saturated pixel back."""
    op = opkit.create("quantize", shape=(1, 1, 2), bits=2)
    leaf = torch.tensor([[[[-0.5, 1.5]]]], dtype=torch.float64, requires_grad=True)
    r = op.relaxed_codes(leaf)
    assert torch.equal(r.detach(), torch.tensor([[[[-2.5, 5.5]]]], dtype=torch.float64))
    (g,) = torch.autograd.grad(r.sum(), leaf)
    assert torch.equal(g, torch.full_like(g, 4.0))


def test_operators_without_a_relaxation_say_none() -> None:
    class Plain(opkit.EncodeDecodeOperator[Tensor]):
        def encode(self, x: Tensor) -> Tensor:
            return torch.floor(x * 4).long()

        def decode(self, y: Tensor) -> Tensor:
            return (y.double() + 0.5) / 4

    assert Plain((1, 2, 2)).relaxed_codes(torch.rand(1, 1, 2, 2)) is None
    check_operator(Plain((1, 2, 2)))  # no relaxation, no relaxation law


def test_the_kit_checks_the_relaxation_laws() -> None:
    for name, kw in (("jpeg", {"quality": 20}), ("quantize", {"bits": 4})):
        report = check_operator(opkit.create(name, shape=(3, 16, 16), **kw))
        assert "codes within 1/2 of the relaxed codes (max distance - 1/2)" in report.errors
        assert "relaxed codes are differentiable (a finite, non-zero gradient)" in report.errors

    class Off(opkit.EncodeDecodeOperator[Tensor]):
        """A relaxation off by more than half a code, and one without a gradient."""

        detach = False

        def encode(self, x: Tensor) -> Tensor:
            return torch.clamp(torch.floor(x * 4), 0, 3).long()

        def decode(self, y: Tensor) -> Tensor:
            return (y.to(torch.float64) + 0.5) / 4

        def relaxed_codes(self, x: Tensor) -> Tensor:
            return (x.detach() * 4 - 0.5) if self.detach else x * 4 + 0.3

    with pytest.raises(AssertionError, match="codes within 1/2 of the relaxed codes"):
        check_operator(Off((1, 4, 4)))
    off = Off((1, 4, 4))
    off.detach = True
    with pytest.raises(AssertionError, match="relaxed codes are differentiable"):
        check_operator(off)
