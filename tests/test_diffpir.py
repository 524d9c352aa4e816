"""DiffPIR: the exact spectral data step, exact projection when noiseless, the contract, settings."""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import pytest
import torch
from torch import Tensor

import opkit
import solvers
from opkit.testing import check_solver, toy_operators
from solvers.methods.diffpir import DIFFPIR_TASKS, diffpir_settings
from solvers.oracles import GaussianPrior, OraclePrior
from solvers.priors import linear_alphas_cumprod, quadratic_timesteps
from tests.helpers import dense_matrix

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (3, 8, 8)


def _operators() -> dict[str, opkit.SVDOperator]:
    """One of each SVD family (a third party's included), on 3 × 8 × 8 images."""
    ops: dict[str, Any] = {
        "sr_block": opkit.create("sr_block", shape=SHAPE, factor=2),
        "sr_bicubic": opkit.create("sr_bicubic", shape=SHAPE, factor=2),
        "blur": opkit.create("blur", shape=SHAPE, kernel="gaussian", sigma=1.0, threshold=0.05),
        "inpaint": opkit.create("inpaint", shape=SHAPE, missing=0.4, seed=3),
        "colorize": opkit.create("colorize", shape=SHAPE),
        "denoise": opkit.create("denoise", shape=SHAPE),
        "third_party": toy_operators(SHAPE)["svd"],  # per-pixel gains with a null space
    }
    return ops


def _x(b: int = 2, seed: int = 0) -> Tensor:
    return (
        torch.rand((b, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.8
        + 0.1
    )


@functools.cache
def _gaussian_prior(seed: int = 0) -> GaussianPrior:
    n = math.prod(SHAPE)
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return GaussianPrior(
        torch.zeros(SHAPE, dtype=torch.float64), a @ a.T / n + 0.1 * torch.eye(n, dtype=torch.float64)
    )


# -- the contract --------------------------------------------------------------------------------
def test_check_solver_passes_with_exact_oracle_recovery() -> None:
    report = check_solver("diffpir")
    assert report.recovery_error["svd"] < 1e-12
    assert "refuses [linear]" in report.checks and "refuses [encode_decode]" in report.checks
    assert "generator per image [svd]" in report.checks


@pytest.mark.parametrize("name", list(_operators()))
def test_oracle_recovers_the_image_for_every_svd_operator(name: str) -> None:
    op, x = _operators()[name], _x()
    out = solvers.diffpir(op, op(x), OraclePrior(x), steps=6, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out, x, rtol=0, atol=1e-12)


# -- the data step, exactly ----------------------------------------------------------------------
def _first_estimates(
    op: Any, y: Tensor, decoy: Tensor, sigma_y: float, lam: float
) -> tuple[list[int], list[Tensor]]:
    """DiffPIR's data-consistent estimates x̂0' per step, for a prior whose x̂0 is ``decoy``."""
    seen: list[tuple[int, Tensor]] = []
    solvers.diffpir(
        op,
        y,
        OraclePrior(decoy),
        steps=5,
        sigma_y=sigma_y,
        lam=lam,
        generator=torch.Generator().manual_seed(0),
        callback=lambda i, t, x_t, x0: seen.append((t, x0)),
    )
    return [t for t, _ in seen], [x0 for _, x0 in seen]


@pytest.mark.parametrize("name", list(_operators()))
@pytest.mark.parametrize("sigma_y", [0.05, 0.0])
def test_the_data_step_is_the_dense_least_squares_solution(name: str, sigma_y: float) -> None:
    """x̂0' = argmin ‖y − Hx‖² + ρ_t ‖x − x̂0‖² (σ_y = 0: the projection onto Hx = y), by a dense solve."""
    op, x, decoy = _operators()[name], _x(1), _x(1, seed=5)
    y = op(x)
    if sigma_y:
        y = y + sigma_y * torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=y.dtype)
    h = dense_matrix(op, SHAPE)  # (m, n)
    abar = linear_alphas_cumprod()
    lam = 3.0
    ts, estimates = _first_estimates(op, y, decoy, sigma_y, lam)
    for t, got in zip(ts, estimates, strict=True):
        z, yv = decoy.reshape(-1), y.reshape(-1)
        if sigma_y:  # (HᵀH + ρI)⁻¹(Hᵀy + ρz), through LAPACK's SVD of the dense H (stable for tiny ρ)
            rho = lam * sigma_y**2 * float(abar[t]) / (1 - float(abar[t]))
            u, sv, vt = torch.linalg.svd(h, full_matrices=True)
            full = torch.zeros(h.shape[1], dtype=h.dtype)
            full[: sv.numel()] = sv
            coef = torch.zeros(h.shape[1], dtype=h.dtype)
            coef[: sv.numel()] = sv * (u.T @ yv)[: sv.numel()]
            want = vt.T @ ((coef + rho * (vt @ z)) / (full**2 + rho))
        else:  # the nearest point of {Hx = y}: z + H⁺(y − Hz)
            want = z + torch.linalg.pinv(h) @ (yv - h @ z)
        assert torch.allclose(got.reshape(-1), want, rtol=0, atol=1e-10), (name, t)


@pytest.mark.parametrize("name", list(_operators()))
def test_a_noiseless_result_fits_the_measurement_to_float_precision(name: str) -> None:
    """With a prior that is not the answer, the result still satisfies H x = y (the last projection)."""
    op, x = _operators()[name], _x()
    y = op(x)
    for k in (1, 3):
        out = solvers.diffpir(
            op, y, _gaussian_prior(), steps=6, num_samples=k, generator=torch.Generator().manual_seed(4)
        )
        if bool((op.singulars_like(x) == 0).any()):  # a null space: a restoration, not the answer
            assert not torch.allclose(out, x, atol=1e-3)
        assert torch.allclose(op(out), y, rtol=0, atol=1e-12), name


def test_float32_noiseless_result_fits_to_float32_precision() -> None:
    op = opkit.create("sr_bicubic", shape=(3, 16, 16), factor=4)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    prior = OraclePrior(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))  # a wrong image
    out = solvers.diffpir(op, op(x), prior, steps=4)
    assert out.dtype == torch.float32
    assert torch.allclose(op(out), op(x), rtol=0, atol=2e-6)


def test_no_singular_value_is_divided_by_where_it_is_zero() -> None:
    """A large null space, noiseless and noisy: finite, and the missing pixels come from the prior."""
    op = opkit.create("inpaint", shape=SHAPE, missing=0.9, seed=0)
    missing = ~op.mask.expand(SHAPE)
    x, decoy = _x(1), _x(1, seed=7)
    for sigma_y in (0.0, 0.1):
        _, estimates = _first_estimates(op, op(x), decoy, sigma_y, 1.0)
        for est in estimates:
            assert bool(torch.isfinite(est).all())
            assert torch.allclose(est[0][missing], decoy[0][missing], rtol=0, atol=1e-12)


# -- the re-noising and the grid -----------------------------------------------------------------
def test_zeta_is_the_share_of_fresh_noise() -> None:
    """ζ = 0 draws no noise after the start; ζ = 1 re-noises with fresh noise only."""
    op, x = _operators()["sr_block"], _x(1)
    prior, steps = _gaussian_prior(), 5

    def run(zeta: float) -> tuple[list[tuple[int, Tensor, Tensor]], torch.Generator]:
        seen: list[tuple[int, Tensor, Tensor]] = []
        g = torch.Generator().manual_seed(1)
        solvers.diffpir(
            op, op(x), prior, steps=steps, zeta=zeta, sigma_y=0.05, generator=g,
            callback=lambda i, t, xt, x0: seen.append((t, xt, x0)),
        )  # fmt: skip
        return seen, g

    _, g0 = run(0.0)
    ref = torch.Generator().manual_seed(1)
    torch.randn((1, *SHAPE), generator=ref, dtype=torch.float64)  # the start, and nothing else
    assert torch.equal(g0.get_state(), ref.get_state())
    seen, _ = run(1.0)
    ref = torch.Generator().manual_seed(1)
    assert torch.equal(seen[0][1], torch.randn((1, *SHAPE), generator=ref, dtype=torch.float64))
    abar = linear_alphas_cumprod()
    for (_, _, x0), (t_next, x_next, _) in itertools.pairwise(seen):
        a = float(abar[t_next])
        z = torch.randn((1, *SHAPE), generator=ref, dtype=torch.float64)
        want = math.sqrt(a) * (2 * x0 - 1) + math.sqrt(1 - a) * z
        assert torch.allclose(x_next, want, rtol=0, atol=1e-12)


def test_quadratic_grid_follows_the_reference_and_stays_strict() -> None:
    # the reference: s_k = int(sqrt(linspace(0, T², n))), last one T − 1; t = T − 1 − s
    for n in (2, 5, 20, 100):
        ref = [int(v) for v in torch.sqrt(torch.linspace(0, 1000.0**2, n, dtype=torch.float64)).tolist()]
        ref[-1] = 999
        assert quadratic_timesteps(1000, n) == [999 - s for s in ref]
    for n in (1, 7, 500, 999, 1000):
        ts = quadratic_timesteps(1000, n)
        assert len(ts) == n and ts[0] == 999 and (n == 1 or ts[-1] == 0)
        assert all(a > b for a, b in itertools.pairwise(ts))
    with pytest.raises(ValueError, match="at most"):
        quadratic_timesteps(10, 11)


def test_the_grid_and_the_budget() -> None:
    op, x = _operators()["denoise"], _x(1)
    for skip, grid in (
        ("quad", quadratic_timesteps(1000, 7)),
        ("uniform", [k * 142 for k in range(6, -1, -1)]),
    ):
        _, info = solvers.diffpir(op, op(x), OraclePrior(x), steps=7, skip=skip, return_info=True)
        assert info.nfe == 7 and info.extra["timesteps"] == grid
    with pytest.raises(ValueError, match="skip"):
        solvers.diffpir(op, op(x), OraclePrior(x), steps=3, skip="cubic")


@pytest.mark.parametrize("bad", [{"lam": 0.0}, {"lam": -1.0}, {"zeta": 1.5}, {"sigma_y": -0.1}])
def test_bad_settings_are_value_errors(bad: dict[str, float]) -> None:
    op, x = _operators()["denoise"], _x(1)
    with pytest.raises(ValueError):
        solvers.diffpir(op, op(x), OraclePrior(x), steps=2, **bad)


def test_operators_without_an_svd_are_refused_with_a_type_error() -> None:
    x = _x(1)
    composed = opkit.create("denoise", shape=SHAPE) @ opkit.create("sr_block", shape=SHAPE, factor=1)
    jpeg = opkit.create("jpeg", shape=SHAPE, quality=50)
    for op in (composed, jpeg):
        with pytest.raises(TypeError, match="diffpir takes operators of kind svd"):
            solvers.diffpir(op, op(x), OraclePrior(x), steps=2)


# -- settings through the registry ---------------------------------------------------------------
def test_the_registry_entry_carries_the_papers_settings_per_task() -> None:
    entry = opkit.default_registry().solver_entry("diffpir")
    assert entry.model == "prior" and entry.accepts == ("svd",) and entry.generator_per_image
    for name, kw in (("sr_block", {"factor": 2}), ("blur", {}), ("inpaint", {"missing": 0.5})):
        op = opkit.create(name, shape=SHAPE, **kw)
        got = entry.defaults(None, op)
        assert got["steps"] == 100 and got["skip"] == "quad"
        assert {k: got[k] for k in ("lam", "zeta")} == DIFFPIR_TASKS[name] == diffpir_settings(None, op)
    assert diffpir_settings(None, opkit.create("colorize", shape=SHAPE)) == {}
    assert entry.defaults(None, opkit.create("colorize", shape=SHAPE))["lam"] == 7.0
    assert opkit.get_solver("diffpir") is solvers.diffpir
