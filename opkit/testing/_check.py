"""check_operator: every law of DESIGN.md section 3 that applies to an operator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor

from opkit.operators import EncodeDecodeOperator, LinearOperator, Operator, SVDOperator

__all__ = ["OperatorReport", "check_operator", "default_rtol"]


def default_rtol(dtype: torch.dtype) -> float:
    """Relative tolerance of the algebraic laws for ``dtype``.

    ``2e4 · eps``: about ``4e-12`` in float64 and ``2.4e-3`` in float32. The margin covers the
    error amplification of ``H†`` on moderately conditioned operators (a blur whose smallest
    kept singular value is ``1e-3``) while a wrong factor, transpose or basis gives errors of
    order one.

    Parameters
    ----------
    dtype : torch.dtype
        A floating dtype.

    Returns
    -------
    float
        The tolerance.
    """
    return 2e4 * torch.finfo(dtype).eps


@attrs.define
class OperatorReport:
    """What :func:`check_operator` measured: the error of each law it checked.

    Attributes
    ----------
    operator : str
        ``repr`` of the operator.
    errors : dict
        Law name to measured (relative) error.
    tolerances : dict
        Law name to the tolerance it was held to.
    """

    operator: str
    errors: dict[str, float] = attrs.field(factory=dict)
    tolerances: dict[str, float] = attrs.field(factory=dict)
    failures: list[str] = attrs.field(factory=list)

    def record(self, law: str, error: float, tol: float) -> None:
        """Store a measurement and note a failure if ``error > tol`` (or is NaN)."""
        self.errors[law] = error
        self.tolerances[law] = tol
        if not error <= tol:  # NaN fails too
            self.failures.append(f"law '{law}' failed: error {error:.3e} > tolerance {tol:.1e}")


def _rel(a: Tensor, b: Tensor) -> float:
    """Relative error ‖a − b‖ / max(‖b‖, ‖a‖, tiny), in float64."""
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    if a64.shape != b64.shape:
        return float("inf")
    den = max(float(b64.norm()), float(a64.norm()), 1e-300)
    return float((a64 - b64).norm()) / den


def _dot(a: Tensor, b: Tensor) -> float:
    return float((a.detach().to(torch.float64) * b.detach().to(torch.float64)).sum())


def _norm(a: Tensor) -> float:
    return float(a.detach().to(torch.float64).norm())


def _scale_free(lhs: float, rhs: float, scale: float) -> float:
    return abs(lhs - rhs) / max(scale, 1e-300)


def check_operator(
    op: Operator[Any],
    *,
    dtype: torch.dtype = torch.float64,
    batch: int = 2,
    seed: int = 0,
    rtol: float | None = None,
    device: str | torch.device = "cpu",
    reference: Callable[[Tensor], Any] | None = None,
) -> OperatorReport:
    """Check every law of DESIGN.md section 3 that applies to ``op``.

    Linear operators: the four Moore–Penrose conditions ``H H† H = H``, ``H† H H† = H†``,
    ``(H H†)ᵀ = H H†``, ``(H† H)ᵀ = H† H``; the dot test ``<Hx, y> = <x, Hᵀy>`` (scale-free
    error); linearity; batch independence; float32 agreeing with float64. SVD operators
    additionally: ``V`` orthogonal (``Vᵀ V = I``, ``V Vᵀ = I``), ``U Uᵀ = I`` on the range and
    ``U``/``Uᵀ`` adjoint to each other; ``U Σ Vᵀ x = H x``, ``V Σ Uᵀ y = Hᵀ y``,
    ``V Σ⁺ Uᵀ y = H† y``; singular values finite and non-negative. Encode/decode pairs:
    ``Encode(Decode(Encode(x))) == Encode(x)`` exactly, ``Decode(Encode(x))`` within
    :meth:`~opkit.EncodeDecodeOperator.roundtrip_tolerance` of ``x``, determinism and batch
    independence; for a pair with a relaxation (:meth:`~opkit.EncodeDecodeOperator.relaxed_codes`),
    its shape, every code within ½ of it, and a finite non-zero gradient. Every operator: output
    shapes and dtypes, and, if given, ``H x`` equal to a direct ``reference(x)`` of the degradation.

    Parameters
    ----------
    op : Operator
        The operator under test.
    dtype : torch.dtype
        Precision of the main check (float64 gives tight tolerances).
    batch : int
        Batch size of the random inputs.
    seed : int
        Seed of the random inputs (images uniform in [0, 1], measurements Gaussian).
    rtol : float, optional
        Relative tolerance; defaults to :func:`default_rtol` of ``dtype``.
    device : str or torch.device
        Where to run.
    reference : callable, optional
        A direct implementation of the degradation, ``reference(x) -> y``; ``H x`` must match
        it to ``rtol``.

    Returns
    -------
    OperatorReport
        The measured error of every law checked.

    Raises
    ------
    AssertionError
        If any law fails; the message names each failing law and the error measured.
    """
    tol = default_rtol(dtype) if rtol is None else rtol
    report = OperatorReport(operator=repr(op))
    g = torch.Generator(device="cpu").manual_seed(seed)

    def image(b: int = batch) -> Tensor:
        return torch.rand((b, *op.shape), generator=g, dtype=torch.float64).to(device=device, dtype=dtype)

    x = image()
    if isinstance(op, LinearOperator):
        _check_linear(op, x, image, g, dtype, device, tol, report)
        if isinstance(op, SVDOperator):
            _check_svd(op, x, g, dtype, device, tol, report)
    elif isinstance(op, EncodeDecodeOperator):
        _check_encode_decode(op, x, report)
    else:  # a general operator: shapes only
        y = op(x)
        xp = op.pinv(y)
        report.record("H† y has the shape of x", 0.0 if tuple(xp.shape) == tuple(x.shape) else 1.0, 0.0)
    if reference is not None:
        ref = reference(x)
        y = op(x)
        if isinstance(op, EncodeDecodeOperator):
            ok = torch.equal(op.codes(y), op.codes(ref))
            report.record("H x equals the direct implementation", 0.0 if ok else 1.0, 0.0)
        else:
            report.record("H x equals the direct implementation", _rel(y, ref), tol)
    if report.failures:
        raise AssertionError(f"{report.operator}:\n  " + "\n  ".join(report.failures))
    return report


def _check_linear(
    op: LinearOperator,
    x: Tensor,
    image: Callable[..., Tensor],
    g: torch.Generator,
    dtype: torch.dtype,
    device: str | torch.device,
    tol: float,
    report: OperatorReport,
) -> None:
    b = x.shape[0]

    def meas() -> Tensor:
        return torch.randn((b, *op.out_shape), generator=g, dtype=torch.float64).to(
            device=device, dtype=dtype
        )

    y = op(x)
    shape_ok = tuple(y.shape) == (b, *op.out_shape) and y.dtype == dtype
    report.record("H x has shape (B, *out_shape) and the input dtype", 0.0 if shape_ok else 1.0, 0.0)
    if not shape_ok:
        return
    yr, yr2 = meas(), meas()
    xr2 = image()
    xp = op.pinv(yr)
    report.record(
        "H† y has the shape and dtype of x",
        0.0 if tuple(xp.shape) == tuple(x.shape) and xp.dtype == dtype else 1.0,
        0.0,
    )
    report.record("H† y is finite", 0.0 if bool(torch.isfinite(xp).all()) else float("inf"), 0.0)
    report.record("H H† H = H", _rel(op(op.pinv(y)), y), tol)
    report.record("H† H H† = H†", _rel(op.pinv(op(xp)), xp), tol)
    # (H H†)ᵀ = H H†  <=>  <H H† a, b> = <a, H H† b>
    pa, pb = op(op.pinv(yr)), op(op.pinv(yr2))
    report.record(
        "(H H†)ᵀ = H H†",
        _scale_free(_dot(pa, yr2), _dot(yr, pb), _norm(pa) * _norm(yr2) + _norm(yr) * _norm(pb)),
        tol,
    )
    qa, qb = op.pinv(op(x)), op.pinv(op(xr2))
    report.record(
        "(H† H)ᵀ = H† H",
        _scale_free(_dot(qa, xr2), _dot(x, qb), _norm(qa) * _norm(xr2) + _norm(x) * _norm(qb)),
        tol,
    )
    hty = op.adjoint(yr)
    report.record(
        "<H x, y> = <x, Hᵀ y> (dot test)",
        _scale_free(_dot(y, yr), _dot(x, hty), _norm(y) * _norm(yr) + _norm(x) * _norm(hty)),
        tol,
    )
    report.record("H(2 x + x') = 2 H x + H x' (linearity)", _rel(op(2 * x + xr2), 2 * y + op(xr2)), tol)
    # batch independence: each item on its own gives the same as the batch
    single = torch.cat([op(x[i : i + 1]) for i in range(b)])
    report.record("H acts on each batch item independently", _rel(single, y), tol)
    # float32 agrees with float64 to float32 precision
    other = torch.float32 if dtype == torch.float64 else torch.float64
    y_other = op(x.to(other))
    report.record(
        f"H in {str(other).replace('torch.', '')} agrees",
        _rel(y_other, y),
        max(tol, default_rtol(torch.float32)),
    )


def _check_svd(
    op: SVDOperator,
    x: Tensor,
    g: torch.Generator,
    dtype: torch.dtype,
    device: str | torch.device,
    tol: float,
    report: OperatorReport,
) -> None:
    s = op.singulars_like(x)
    finite = bool(torch.isfinite(s).all()) and bool((s >= 0).all())
    report.record("singular values finite and >= 0", 0.0 if finite else float("inf"), 0.0)
    vx = op.Vt(x)
    try:
        torch.broadcast_shapes(s.shape, vx.shape[1:])  # type: ignore[no-untyped-call]
        bshape_ok = vx[0].numel() == x[0].numel()
    except RuntimeError:
        bshape_ok = False
    report.record("singulars broadcast to Vt(x); Vt keeps n coefficients", 0.0 if bshape_ok else 1.0, 0.0)
    if not bshape_ok:
        return
    v = torch.randn(vx.shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    report.record("Vᵀ V = I", _rel(op.Vt(op.V(v)), v), tol)
    report.record("V Vᵀ = I", _rel(op.V(vx), x), tol)
    vv = op.V(v)
    report.record(
        "<V v, x> = <v, Vᵀ x>",
        _scale_free(_dot(vv, x), _dot(v, vx), _norm(vv) * _norm(x) + _norm(v) * _norm(vx)),
        tol,
    )
    y = op(x)
    uty = op.Ut(y)
    report.record("U Uᵀ = I on the range of H", _rel(op.U(uty), y), tol)
    yr = torch.randn(y.shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    uv, utyr = op.U(v), op.Ut(yr)
    report.record(
        "<U v, y> = <v, Uᵀ y>",
        _scale_free(_dot(uv, yr), _dot(v, utyr), _norm(uv) * _norm(yr) + _norm(v) * _norm(utyr)),
        tol,
    )
    report.record("U Σ Vᵀ x = H x", _rel(op.U(s * vx), y), tol)
    report.record("V Σ Uᵀ y = Hᵀ y", _rel(op.V(s * utyr), op.adjoint(yr)), tol)
    sp = op.singulars_pinv_like(x)
    report.record("V Σ⁺ Uᵀ y = H† y", _rel(op.V(sp * utyr), op.pinv(yr)), tol)


def _check_encode_decode(op: EncodeDecodeOperator[Any], x: Tensor, report: OperatorReport) -> None:
    y = op(x)
    codes = op.codes(y)
    xd = op.pinv(y)
    report.record(
        "Decode(y) has the shape and dtype of x",
        0.0 if tuple(xd.shape) == tuple(x.shape) and xd.dtype == x.dtype else 1.0,
        0.0,
    )
    report.record("Decode(y) is finite", 0.0 if bool(torch.isfinite(xd).all()) else float("inf"), 0.0)
    again = op.codes(op(xd))
    diff = (
        float((again.to(torch.float64) - codes.to(torch.float64)).abs().max())
        if again.shape == codes.shape
        else float("inf")
    )
    report.record("Encode(Decode(Encode(x))) == Encode(x) (max code difference)", diff, 0.0)
    rmse = float((xd.to(torch.float64) - x.to(torch.float64)).pow(2).mean().sqrt())
    report.record("Decode(Encode(x)) close to x (RMSE)", rmse, op.roundtrip_tolerance())
    report.record("Encode is deterministic", 0.0 if torch.equal(op.codes(op(x)), codes) else 1.0, 0.0)
    _check_relaxation(op, x, codes, report)
    single = torch.cat([op.codes(op(x[i : i + 1])) for i in range(x.shape[0])])
    report.record(
        "Encode acts on each batch item independently",
        0.0 if single.shape == codes.shape and torch.equal(single, codes) else 1.0,
        0.0,
    )


def _check_relaxation(
    op: EncodeDecodeOperator[Any], x: Tensor, codes: Tensor, report: OperatorReport
) -> None:
    """The laws of :meth:`~opkit.EncodeDecodeOperator.relaxed_codes`, when the pair has one."""
    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        relaxed = op.relaxed_codes(leaf)
        if relaxed is None:
            return
        fits = isinstance(relaxed, Tensor) and relaxed.is_floating_point() and relaxed.shape == codes.shape
        report.record("relaxed codes are floating, shaped like the codes", 0.0 if fits else 1.0, 0.0)
        if not fits:
            return
        dist = float((codes.to(torch.float64) - relaxed.detach().to(torch.float64)).abs().max())
        report.record(
            "codes within 1/2 of the relaxed codes (max distance - 1/2)", max(dist - 0.5, 0.0), 1e-6
        )
        grad = None
        if relaxed.requires_grad:
            (grad,) = torch.autograd.grad(relaxed.sum(), leaf, allow_unused=True)
    flows = grad is not None and bool(torch.isfinite(grad).all()) and bool((grad != 0).any())
    report.record(
        "relaxed codes are differentiable (a finite, non-zero gradient)", 0.0 if flows else 1.0, 0.0
    )
