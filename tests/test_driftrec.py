"""DriftRec sampling: oracle scores, analytic Gaussian data, and the public driftrec() API."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

import solvers
from solvers.sdes import OUVE, TSDVE, CosVE, DriftSDE
from solvers.sdes.samplers import euler_heun, euler_maruyama, probability_flow

pytestmark = pytest.mark.usefixtures("one_thread")


def point_mass_oracle(sde: DriftSDE, x0: Tensor):
    """Exact score of p_t(x | y) when the data are the single image x0: -(x - μ_t)/σ_t²."""

    def score(x: Tensor, y: Tensor, t: Tensor) -> Tensor:
        var = sde.std(t).reshape(-1, 1, 1, 1) ** 2
        return -(x - sde.mean(x0.expand_as(x), y, t)) / var

    return score


def gaussian_oracle(sde: DriftSDE, m: Tensor, s: float):
    """Exact score when x0 ~ N(m, s²) per pixel: x_t | y ~ N(w m + (1-w) y, w² s² + σ_t²)."""

    def score(x: Tensor, y: Tensor, t: Tensor) -> Tensor:
        w = sde.mean_weight(t).reshape(-1, 1, 1, 1)
        var = w**2 * s**2 + sde.std(t).reshape(-1, 1, 1, 1) ** 2
        return -(x - (w * m + (1 - w) * y)) / var

    return score


def _pair(seed: int = 0, shape: tuple[int, ...] = (1, 3, 8, 8)) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x0 + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x0, y


def _slope(ns: list[int], errs: list[float]) -> float:
    return float(np.polyfit(np.log(ns), np.log(errs), 1)[0])


# -- the probability-flow ODE ------------------------------------------------------------------


def _assert_gaussian_at_t_eps(out: Tensor, sde: DriftSDE, m: Tensor, s: float) -> None:
    """The samples at t_eps follow N(m, w² s² + σ²), w = e^{-Φ(t_eps)}, to 4 standard errors."""
    w = sde.mean_weight(sde.t_eps)
    std = math.sqrt(w**2 * s**2 + sde.std(sde.t_eps) ** 2)
    z = (out - m) / std
    n = z.numel()
    assert abs(float(z.mean())) < 4 / math.sqrt(n)
    assert abs(float(z.std()) - 1) < 4 / math.sqrt(2 * n) + 0.008


@pytest.mark.parametrize("sde", [OUVE(), TSDVE(), CosVE()], ids=repr)
def test_ode_oracle_converges_to_the_exact_flow(sde: DriftSDE) -> None:
    """For a point mass the flow is x_t - μ_t = (x_1 - μ_1) σ_t/σ_1; the error falls with the tolerance."""
    x0, y = _pair()
    x1 = sde.prior_sample(y, torch.Generator().manual_seed(1))
    exact = sde.mean(x0, y, sde.t_eps) + (x1 - sde.mean(x0, y, 1.0)) * sde.std(sde.t_eps) / sde.std(1.0)
    tols = [1e-3, 1e-4, 1e-5, 1e-6]
    errs, nfes = [], []
    for tol in tols:
        out, info = probability_flow(point_mass_oracle(sde, x0), sde, y, x1, rtol=tol, atol=tol)
        errs.append(float((out - exact).abs().max()))
        nfes.append(info.nfe)
    rate = _slope(tols, errs)
    print(
        f"\n{sde!r} ODE: tol {tols} -> max error {[f'{e:.1e}' for e in errs]}, NFE {nfes}, slope {rate:.2f}"
    )
    assert errs[-1] < 1e-5
    assert all(a > b for a, b in itertools.pairwise(errs))
    assert nfes == sorted(nfes) and nfes[0] >= 20
    assert rate > 0.7  # error roughly proportional to the tolerance
    # the ODE output is the image plus σ(t_eps)-sized residual noise, close to x0
    assert float((out - x0).pow(2).mean().sqrt()) < 3 * sde.std(sde.t_eps) + 0.01


def test_ode_sampler_matches_scipy_rk45_step_for_step() -> None:
    """Our Dormand-Prince controller reproduces scipy's solve_ivp(method='RK45'): same NFE, same result."""
    sde = CosVE()
    x0, y = _pair(2, (2, 3, 4, 4))
    x1 = sde.prior_sample(y, torch.Generator().manual_seed(2))
    score = point_mass_oracle(sde, x0)
    shape = x1.shape

    def rhs(t: float, v: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(v).reshape(shape)
        tt = torch.full((shape[0],), t, dtype=torch.float64)
        g = sde.diffusion(t)
        return (sde.drift(x, y, t) - 0.5 * g * g * score(x, y, tt)).reshape(-1).numpy()

    for tol in (1e-2, 1e-4):
        ref = solve_ivp(rhs, (1.0, sde.t_eps), x1.reshape(-1).numpy(), method="RK45", rtol=tol, atol=tol)
        out, info = probability_flow(score, sde, y, x1, rtol=tol, atol=tol)
        assert info.nfe == ref.nfev
        np.testing.assert_allclose(out.reshape(-1).numpy(), ref.y[:, -1], rtol=0, atol=1e-12)


# -- the SDE samplers --------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", [euler_maruyama, euler_heun], ids=lambda f: f.__name__)
def test_sde_samplers_oracle_error_falls_with_steps(sampler) -> None:
    """Point-mass oracle: outputs concentrate at μ(t_eps) (≈ x0) with spread σ(t_eps).

    The last step is noise-free, so with N steps the output spread falls short of σ(t_eps) by an
    amount O(1/N); the mean is unbiased. The error |mean - μ| + |std - σ| falls at rate ~1.
    """
    sde = OUVE()
    x0, y = _pair(3)
    m = 48
    score = point_mass_oracle(sde, x0)
    yy, mu = y.repeat(m, 1, 1, 1), sde.mean(x0, y, sde.t_eps)
    target_std = sde.std(sde.t_eps)
    steps = [50, 100, 200, 400]
    errs, spreads = [], []
    for n in steps:
        x1 = sde.prior_sample(yy, torch.Generator().manual_seed(n))
        out, info = sampler(score, sde, yy, x1, steps=n, generator=torch.Generator().manual_seed(n + 1))
        assert info.nfe == n * (2 if sampler is euler_heun else 1)
        r = out - mu
        errs.append(abs(float(r.mean())) + abs(float(r.std()) - target_std))
        spreads.append(float(r.std()))
        # every single sample is within a few σ(t_eps) of x0 (μ(t_eps) is 3 % of the way to y)
        bias = float((mu - x0).pow(2).mean().sqrt())
        assert float((out - x0).pow(2).mean().sqrt()) < bias + 2 * target_std
    rate = _slope(steps, errs)
    print(
        f"\n{sampler.__name__}: steps {steps} -> error {[f'{e:.1e}' for e in errs]} "
        f"(spread {[f'{s:.4f}' for s in spreads]} vs {target_std:.4f}), slope {rate:.2f}"
    )
    assert errs[-1] < 0.1 * target_std
    assert all(a > b for a, b in itertools.pairwise(errs))
    # measured: Euler-Maruyama -1.0, Euler-Heun -0.7 (its noise-free last Heun step contracts more)
    assert rate < (-0.8 if sampler is euler_maruyama else -0.55)


@pytest.mark.parametrize("sde", [OUVE(), TSDVE(), CosVE()], ids=repr)
@pytest.mark.parametrize("sampler", ["euler_maruyama", "euler_heun", "ode"])
def test_gaussian_data_mean_and_std(sde: DriftSDE, sampler: str) -> None:
    """x0 ~ N(m, s²) per pixel with y = m: the samples at t_eps follow N(m, w² s² + σ²) exactly.

    (y = m makes the prior y + σ_1 z match the true marginal at t = 1 up to a 1e-3 variance
    mismatch; pooled over 49152 pixel draws the sampling error of the standardised mean is
    0.0045 and of the std 0.0032, so forgetting the factor w = e^{-Φ(t_eps)} (3 %) would fail.)
    """
    g = torch.Generator().manual_seed(5)
    s = 0.15
    m = 0.2 + 0.6 * torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64)
    reps = 256
    y = m.repeat(reps, 1, 1, 1)
    out = solvers.driftrec(
        y,
        gaussian_oracle(sde, m, s),
        sde=sde,
        sampler=sampler,
        steps=60,
        color_correction=False,
        generator=torch.Generator().manual_seed(6),
    )
    _assert_gaussian_at_t_eps(out, sde, m, s)


# -- the public function -------------------------------------------------------------------------


def test_driftrec_api_samples_batching_and_color_correction() -> None:
    sde = TSDVE()
    x0, y = _pair(7, (2, 3, 6, 10))
    score = point_mass_oracle(sde, x0.repeat_interleave(4, 0))
    seen: list[tuple[int, ...]] = []
    out, info = solvers.driftrec(
        y,
        score,
        sde="tsdve",
        steps=30,
        num_samples=4,
        generator=torch.Generator().manual_seed(0),
        callback=lambda i, t, x: seen.append(tuple(x.shape)),
        return_info=True,
    )
    assert out.shape == y.shape and out.dtype == y.dtype
    assert seen == [(8, 3, 6, 10)] * 30 and info.nfe == 30
    torch.testing.assert_close(out.mean(dim=(-2, -1)), y.mean(dim=(-2, -1)))
    # averaging 4 samples shrinks the spread around μ(t_eps) (about by 2)
    mu = sde.mean(x0, y, sde.t_eps)
    single = solvers.driftrec(y, point_mass_oracle(sde, x0), sde=sde, steps=30, color_correction=False)
    avg = solvers.driftrec(y, score, sde=sde, steps=30, num_samples=4, color_correction=False)
    assert float((avg - mu).std()) < 0.7 * float((single - mu).std())
    # seeded runs are reproducible, float32 follows the input
    a = solvers.driftrec(y.float(), point_mass_oracle(sde, x0.float()), sde=sde, steps=10,
                         generator=torch.Generator().manual_seed(1))  # fmt: skip
    b = solvers.driftrec(y.float(), point_mass_oracle(sde, x0.float()), sde=sde, steps=10,
                         generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert a.dtype == torch.float32 and torch.equal(a, b)
    _, info_h = solvers.driftrec(y, point_mass_oracle(sde, x0), sde=sde, sampler="euler_heun", steps=7,
                                 return_info=True)  # fmt: skip
    assert info_h.nfe == 14


def test_driftrec_rejects_bad_input() -> None:
    x0, y = _pair()
    score = point_mass_oracle(OUVE(), x0)
    with pytest.raises(ValueError, match="sampler"):
        solvers.driftrec(y, score, sampler="rk4")
    with pytest.raises(ValueError, match="num_samples"):
        solvers.driftrec(y, score, num_samples=0)
    with pytest.raises(ValueError, match="steps"):
        solvers.driftrec(y, score, steps=0)
    with pytest.raises(ValueError, match="sde"):
        solvers.driftrec(y, score, sde="ve")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        solvers.driftrec(y[0], score)
    with pytest.raises(ValueError, match="t_eps"):
        solvers.driftrec(y, score, sde=OUVE(t_eps=0.0))
    with pytest.raises(FileNotFoundError):
        solvers.load_driftrec("/nonexistent/driftrec")


def test_driftrec_refuses_an_sde_other_than_the_models() -> None:
    model = solvers.sdes.score_models.ScoreModel.from_preset("tiny", "cosve")
    y = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="trained for"):
        solvers.driftrec(y, model, sde="ouve", steps=1)
    out = solvers.driftrec(y, model, sde="model", steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == y.shape and torch.isfinite(out).all()
    # by default, the model's own SDE
    same = solvers.driftrec(y, model, steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, same)


def test_time_grid_uniform_and_powered() -> None:
    """The uniform grid is the one the samplers always used, bit for bit; a power p warps it as
    t_i = t_eps + (1 - t_eps)(1 - i/N)^p, ends exactly at 1 and t_eps, and falls strictly."""
    from solvers.sdes.samplers import time_grid

    sde = OUVE()
    n = 40
    assert time_grid(sde, n) == [1.0 + (sde.t_eps - 1.0) * i / n for i in range(n + 1)]
    for p in (0.5, 0.7, 2.0):
        grid = time_grid(sde, n, p)
        want = sde.t_eps + (1 - sde.t_eps) * (1 - np.arange(n + 1) / n) ** p
        np.testing.assert_allclose(grid, want, rtol=0, atol=1e-15)
        assert grid[0] == 1.0 and grid[-1] == sde.t_eps
        assert all(a > b for a, b in itertools.pairwise(grid))
    # p = 0.5: the first step is 1 - sqrt(1 - 1/N) of the span, the last sqrt(1/N) of it
    grid = time_grid(sde, n, 0.5)
    span = 1 - sde.t_eps
    assert math.isclose(grid[0] - grid[1], span * (1 - math.sqrt(1 - 1 / n)), rel_tol=1e-12)
    assert math.isclose(grid[-2] - grid[-1], span * math.sqrt(1 / n), rel_tol=1e-12)
    for bad in (0, -0.5, 4.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="grid_power must be a number in"):
            time_grid(sde, n, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grid_power"):
        solvers.driftrec(torch.rand(1, 3, 4, 4), point_mass_oracle(sde, torch.rand(1, 3, 4, 4)), grid_power=0)


@pytest.mark.parametrize(("sampler", "steps"), [("euler_maruyama", 200), ("euler_heun", 60)])
def test_gaussian_data_on_a_powered_grid(sampler: str, steps: int) -> None:
    """The exact-distribution check of test_gaussian_data_mean_and_std on the grid p = 0.5.

    That grid spends its steps near t = 1 and takes large ones near t_eps (the last is 7.7 times
    the uniform one at 60 steps), where the drift γ(y - x) still contracts the data's spread:
    Euler-Maruyama then loses spread, O(h) (measured: std 0.961 of the exact one at 60 steps,
    0.985 at 200; 0.996 and 0.997 on the uniform grid), Euler-Heun hardly (0.991 at 60). So the
    powered grid is checked where each sampler is exact to the test's tolerance, at the grid's
    own times (the score's evaluations are recorded).
    """
    from solvers.sdes.samplers import time_grid

    sde = OUVE()
    g = torch.Generator().manual_seed(5)
    s = 0.15
    m = 0.2 + 0.6 * torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64)
    y = m.repeat(256, 1, 1, 1)
    oracle, times = gaussian_oracle(sde, m, s), []

    def score(x: Tensor, yy: Tensor, t: Tensor) -> Tensor:
        times.append(float(t[0]))
        return oracle(x, yy, t)

    out, info = solvers.driftrec(
        y,
        score,
        sde=sde,
        sampler=sampler,
        steps=steps,
        grid_power=0.5,
        color_correction=False,
        return_info=True,
        generator=torch.Generator().manual_seed(6),
    )
    assert info.nfe == steps * (2 if sampler == "euler_heun" else 1)
    grid = time_grid(sde, steps, 0.5)
    # Euler-Maruyama evaluates at t_0 ... t_{N-1}; Heun at both ends of every step
    want = grid[:-1] if sampler == "euler_maruyama" else [t for i in range(steps) for t in grid[i : i + 2]]
    assert times == want
    _assert_gaussian_at_t_eps(out, sde, m, s)


def test_an_unstable_powered_grid_is_refused_with_the_fewest_stable_steps() -> None:
    """h·λ >= 2 on the stiffest step amplifies noise (the point-mass oracle shows it); the
    message names the fewest steps below the bound, which the uniform grid never checks."""
    from solvers.sdes.samplers import stiffest_step, time_grid

    sde = OUVE()
    x0, y = _pair(2)
    oracle = point_mass_oracle(sde, x0)
    for power, fewest in ((0.5, 31), (0.7, 12)):
        assert (
            stiffest_step(sde, time_grid(sde, fewest, power))[0]
            < 2
            <= stiffest_step(sde, time_grid(sde, fewest - 1, power))[0]
        )
        with pytest.raises(ValueError, match=rf"use at least {fewest} steps, or grid_power=1"):
            solvers.driftrec(y, oracle, sde=sde, steps=fewest - 1, grid_power=power)
        solvers.driftrec(y, oracle, sde=sde, steps=fewest, grid_power=power)  # accepted
        for sampler in (euler_maruyama, euler_heun):  # the samplers refuse it themselves
            with pytest.raises(ValueError, match=rf"use at least {fewest} steps"):
                sampler(oracle, sde, y, sde.prior_sample(y), steps=fewest - 1, grid_power=power)
    # the bound is real: with the exact score, the unstable grid leaves far more error at t_eps
    g = torch.Generator().manual_seed(0)
    x1 = sde.prior_sample(y, g)
    ts_bad, ts_ok = time_grid(sde, 10, 0.5), time_grid(sde, 10, 1.0)
    errs = []
    for ts in (ts_bad, ts_ok):
        x = x1.clone()
        for t0, t1 in itertools.pairwise(ts):  # noise-free Euler steps: the error's contraction alone
            h = t0 - t1
            tt = torch.full((x.shape[0],), t0, dtype=x.dtype)
            x = x - h * (sde.drift(x, y, t0) - sde.diffusion(t0) ** 2 * oracle(x, y, tt))
        errs.append(float((x - sde.mean(x0, y, sde.t_eps)).abs().max()))
    assert stiffest_step(sde, ts_bad)[0] > 2 > stiffest_step(sde, ts_ok)[0]
    assert errs[0] > 5 * errs[1]  # measured 0.018 against 0.0020
    # the uniform grid is never refused, even where it is unstable
    assert stiffest_step(sde, time_grid(sde, 2))[0] > 2
    solvers.driftrec(y, oracle, sde=sde, steps=2)
