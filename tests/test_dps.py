"""DPS: the step against a dense computation, the guard, per-image norms, relaxations, the contract."""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
import torch
from torch import Tensor

import opkit
import solvers
from opkit.testing import check_solver, toy_operators
from solvers.methods.dps import DPS_TASKS, dps_settings
from solvers.oracles import GaussianPrior, OraclePrior
from solvers.priors import UNetPrior, ancestral_std, linear_alphas_cumprod, predict_eps, uniform_timesteps

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (2, 4, 6)


def _x(b: int = 2, seed: int = 0) -> Tensor:
    return (
        torch.rand((b, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.8
        + 0.1
    )


@functools.cache
def _gaussian_prior(seed: int = 0) -> GaussianPrior:
    n = math.prod(SHAPE)
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mean = 0.3 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return GaussianPrior(mean, a @ a.T / n + 0.1 * torch.eye(n, dtype=torch.float64))


# -- the contract --------------------------------------------------------------------------------
def test_check_solver_passes_with_exact_oracle_recovery() -> None:
    report = check_solver("dps")
    assert set(report.recovery_error) == {"svd", "linear", "encode_decode"}
    assert max(report.recovery_error.values()) < 1e-12
    assert "generator per image [encode_decode]" in report.checks


# -- one step, computed densely ------------------------------------------------------------------
def _dense_dps(
    op: Any, y: Tensor, prior: GaussianPrior, zeta: float, steps: int, seed: int, residual: Any
) -> Tensor:
    """DPS written out with dense Jacobians (torch.autograd.functional.jacobian) and the same noise."""
    abar = linear_alphas_cumprod()
    ts = uniform_timesteps(1000, steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((1, *SHAPE), generator=g, dtype=torch.float64)
    for i, t in enumerate(ts):
        a = float(abar[t])
        a_n = float(abar[ts[i + 1]]) if i + 1 < len(ts) else 1.0

        def denoise(v: Tensor, t: int = t, a: float = a) -> Tensor:
            return (v - math.sqrt(1 - a) * prior(v, t)) / math.sqrt(a)  # no clipping (clip_x0=False)

        x0 = denoise(x)
        jac = torch.autograd.functional.jacobian(denoise, x).reshape(x0.numel(), x.numel())
        g0 = residual(x0)  # ∇_{x̂0} ‖r‖, model range
        grad = (jac.T @ g0.reshape(-1)).reshape(x.shape)
        eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
        c = ancestral_std(a, a_n) if a_n < 1 else 0.0
        x_next = math.sqrt(a_n) * x0 + math.sqrt(max(1 - a_n - c * c, 0.0)) * eps
        if c > 0:
            x_next = x_next + c * torch.randn(x.shape, generator=g, dtype=torch.float64)
        x = x_next - zeta * grad
    return (x + 1) / 2


def test_the_step_is_the_residual_gradient_through_the_denoiser_linear() -> None:
    """x_{t'} = ancestral step − ζ′ (∂x̂0/∂x_t)ᵀ(−Hᵀr/‖r‖), r = y − H x̂0 (model range), dense."""
    op = toy_operators(SHAPE)["linear"]  # a composition: no SVD, H and Hᵀ only
    x = _x(1)
    y = op(x) + 0.05 * torch.randn(
        op(x).shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    prior = _gaussian_prior()

    def residual(x0: Tensor) -> Tensor:
        r = y - op((x0 + 1) / 2)  # the model range's residual is 2r: the same direction
        return -op.adjoint(r) / r.norm()

    for steps in (1, 4):
        want = _dense_dps(op, y, prior, 0.7, steps, 5, residual)
        got = solvers.dps(
            op, y, prior, steps=steps, zeta=0.7, clip_x0=False, generator=torch.Generator().manual_seed(5)
        )
        assert torch.allclose(got, want, rtol=0, atol=1e-11), steps


def test_the_step_is_the_residual_gradient_through_the_denoiser_relaxation() -> None:
    """For an encode/decode pair: r = codes(y) − relaxed(x̂0), gradient by the chain rule, dense."""
    op = toy_operators(SHAPE)["encode_decode"]  # relaxed = 8·x01 − ½
    x = _x(1)
    y = op(x)
    prior = _gaussian_prior()

    def residual(x0: Tensor) -> Tensor:
        r = op.codes(y).to(torch.float64) - (8 * (x0 + 1) / 2 - 0.5)
        return -4.0 * r / r.norm()  # ∂relaxed/∂x̂0 = 8 · ½

    want = _dense_dps(op, y, prior, 0.05, 3, 2, residual)
    got = solvers.dps(
        op, y, prior, steps=3, zeta=0.05, clip_x0=False, generator=torch.Generator().manual_seed(2)
    )
    assert torch.allclose(got, want, rtol=0, atol=1e-11)


def test_each_measurement_has_its_own_norm() -> None:
    """A batch gives each image what it gets alone (per-image generators), residuals of other sizes."""
    op = opkit.create("sr_block", shape=SHAPE, factor=2)
    x = _x(3)
    y = op(x) + torch.tensor([0.0, 0.1, 0.3], dtype=torch.float64).view(3, 1, 1, 1)  # unlike residuals
    prior = _gaussian_prior()
    for k in (1, 2):
        gens = [torch.Generator().manual_seed(s) for s in (4, 5, 6)]
        batch = solvers.dps(op, y, prior, steps=5, num_samples=k, generator=gens, clip_x0=False)
        alone = [
            solvers.dps(
                op,
                y[i : i + 1],
                prior,
                steps=5,
                num_samples=k,
                clip_x0=False,
                generator=torch.Generator().manual_seed(s),
            )
            for i, s in enumerate((4, 5, 6))
        ]
        assert torch.allclose(batch, torch.cat(alone), rtol=0, atol=1e-12)  # type: ignore[arg-type]


def test_a_zero_residual_gives_no_step_and_no_nan() -> None:
    """H = 0 (everything missing): ‖r‖ = 0 exactly, the guard leaves DDPM's step unchanged."""
    op = opkit.create("inpaint", shape=SHAPE, mask=torch.zeros(SHAPE[1:], dtype=torch.bool))
    x = _x(1)
    prior = _gaussian_prior()
    got = solvers.dps(op, op(x), prior, steps=6, zeta=5.0, generator=torch.Generator().manual_seed(0))
    plain = solvers.dps(op, op(x), prior, steps=6, zeta=0.0, generator=torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(got).all()) and torch.equal(got, plain)


def test_the_guidance_pulls_toward_the_measurement() -> None:
    """On a noiseless problem the residual of the result shrinks as ζ′ grows (DDPM alone: ζ′ = 0)."""
    op = opkit.create("sr_block", shape=SHAPE, factor=2)
    x = _x(1)
    prior = _gaussian_prior()
    res = []
    for zeta in (0.0, 0.3, 1.0):
        out = solvers.dps(op, op(x), prior, steps=50, zeta=zeta, generator=torch.Generator().manual_seed(0))
        res.append(float((op(out) - op(x)).norm()))
    assert res[0] > res[1] > res[2]


# -- the step budget -----------------------------------------------------------------------------
def test_steps_skip_uniformly_and_count_network_calls() -> None:
    op, x = opkit.create("denoise", shape=SHAPE), _x(1)
    for steps in (20, 7):
        prior = OraclePrior(x)
        _, info = solvers.dps(op, op(x), prior, steps=steps, return_info=True)
        assert info.nfe == steps == prior.calls and info.extra["timesteps"] == uniform_timesteps(1000, steps)
    assert uniform_timesteps(1000, 1000) == list(range(999, -1, -1))  # the paper's default: every timestep


# -- refusals ------------------------------------------------------------------------------------
class _NoRelaxation(opkit.EncodeDecodeOperator[Tensor]):
    """An encode/decode pair without a relaxation."""

    name = "plain_levels"

    def encode(self, x: Tensor) -> Tensor:
        return torch.clamp(torch.floor(x * 4), 0, 3).to(torch.int64)

    def decode(self, y: Tensor) -> Tensor:
        return (y.to(torch.float64) + 0.5) / 4


def test_a_pair_without_a_relaxation_is_refused_with_a_type_error() -> None:
    op, x = _NoRelaxation(SHAPE), _x(1)
    with pytest.raises(TypeError, match="differentiable relaxation of plain_levels"):
        solvers.dps(op, op(x), OraclePrior(x), steps=2)


def test_a_prior_without_autograd_is_refused_with_a_type_error() -> None:
    class Frozen:
        alphas_cumprod = linear_alphas_cumprod()

        def __call__(self, x_t: Tensor, t: Any) -> Tensor:
            with torch.no_grad():
                return torch.tanh(x_t)

    op, x = opkit.create("denoise", shape=SHAPE), _x(1)
    with pytest.raises(TypeError, match="differentiable in x_t"):
        solvers.dps(op, op(x), Frozen(), steps=2)


@pytest.mark.parametrize("bad", [{"zeta": -0.1}, {"sigma_y": -1.0}])
def test_bad_settings_are_value_errors(bad: dict[str, float]) -> None:
    op, x = opkit.create("denoise", shape=SHAPE), _x(1)
    with pytest.raises(ValueError):
        solvers.dps(op, op(x), OraclePrior(x), steps=2, **bad)
    q = opkit.create("quantize", shape=SHAPE, bits=3)
    with pytest.raises(ValueError, match="sigma_y must be 0"):
        solvers.dps(q, q(x), OraclePrior(x), steps=2, sigma_y=0.1)


# -- the prior's gradient ------------------------------------------------------------------------
def test_unet_prior_gives_the_same_eps_with_and_without_autograd(prior_dir: Any) -> None:
    prior = solvers.load_prior(prior_dir)
    assert isinstance(prior, UNetPrior)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    plain = predict_eps(prior, x, 500)
    with_grad = predict_eps(prior, x, 500, grad=True)
    assert not plain.requires_grad and with_grad.requires_grad
    assert torch.allclose(plain, with_grad.detach(), rtol=0, atol=1e-6)
    (g,) = torch.autograd.grad(with_grad.sum(), x)
    assert bool(torch.isfinite(g).all()) and float(g.abs().max()) > 0
    with torch.no_grad():  # a caller without autograd still gets the graph
        assert predict_eps(prior, x, 500, grad=True).requires_grad


def test_dps_runs_with_a_network_on_jpeg_and_quantize(prior_dir: Any) -> None:
    prior = solvers.load_prior(prior_dir)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for op in (
        opkit.create("jpeg", shape=(3, 16, 16), quality=20),
        opkit.create("quantize", shape=(3, 16, 16), bits=3),
    ):
        out = solvers.dps(op, op(x), prior, steps=3, generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and bool(torch.isfinite(out).all())


# -- settings through the registry ---------------------------------------------------------------
def test_the_registry_entry_carries_the_reference_step_per_task() -> None:
    entry = opkit.default_registry().solver_entry("dps")
    assert (
        entry.model == "prior" and entry.accepts == ("linear", "encode_decode") and entry.generator_per_image
    )
    for name, kw in (("sr_block", {"factor": 2}), ("blur", {}), ("inpaint", {"missing": 0.5})):
        op = opkit.create(name, shape=SHAPE, **kw)
        got = entry.defaults(None, op)
        assert (
            got["steps"] == 1000 and got["zeta"] == DPS_TASKS[name]["zeta"] == dps_settings(None, op)["zeta"]
        )
    assert dps_settings(None, opkit.create("denoise", shape=SHAPE)) == {}
    assert opkit.get_solver("dps") is solvers.dps
