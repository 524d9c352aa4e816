"""DriftRec SDEs: variances and mean weights against numerical integration, Monte-Carlo checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from solvers.sdes import OUVE, TSDVE, CosVE, DriftSDE
from solvers.sdes import forward as sdes

pytestmark = pytest.mark.usefixtures("one_thread")


class Quadratic(DriftSDE):
    """A user-defined member, F(t) = 0.5 + t^2, with everything computed numerically."""

    def F(self, t: np.ndarray) -> np.ndarray:
        return 0.5 + np.asarray(t, dtype=np.float64) ** 2


SDES = [
    OUVE(),
    TSDVE(),
    CosVE(),
    OUVE(gamma=1.7, sigma_min=0.05, sigma_max=0.5, t_eps=0.01),
    TSDVE(gamma=0.7, sigma_min=0.02, sigma_max=2.0),
    CosVE(gamma=2.0, sigma_min=0.005, sigma_max=0.8),
    Quadratic(gamma=1.3),
]


def _reference(sde: DriftSDE, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integrate dV/dt = -2 γF V + g², dm/dt = -γF m (V(0)=0, m(0)=1) with tight tolerances."""

    def rhs(t: float, u: np.ndarray) -> list[float]:
        rate = sde.gamma * float(sde.F(np.array(t)))
        return [-2 * rate * u[0] + sde.diffusion(t) ** 2, -rate * u[1]]

    sol = solve_ivp(rhs, (0.0, 1.0), [0.0, 1.0], method="DOP853", rtol=1e-12, atol=1e-15, t_eval=ts)
    assert sol.success
    return sol.y[0], sol.y[1]


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_variance_and_mean_weight_match_ode_integration(sde: DriftSDE) -> None:
    ts = np.linspace(0.0, 1.0, 101)
    v_ref, m_ref = _reference(sde, ts)
    v = sde.variance_np(ts)
    rel = np.abs(v[1:] - v_ref[1:]) / v_ref[1:]
    assert rel.max() < 1e-9, rel.max()
    assert v[0] == pytest.approx(0.0, abs=1e-15)
    w = np.array([sde.mean_weight(float(t)) for t in ts])
    np.testing.assert_allclose(w, m_ref, rtol=1e-10, atol=0)
    std_t = sde.std(torch.tensor(ts))
    np.testing.assert_allclose(std_t.numpy(), np.sqrt(v), rtol=1e-14)


def test_closed_forms_of_the_paper() -> None:
    t = np.linspace(0, 1, 11)
    ou = OUVE(gamma=1.0, sigma_min=0.01, sigma_max=1.0)
    np.testing.assert_allclose(ou.variance_np(t), 1e-4 * (100.0 ** (2 * t) - np.exp(-2 * t)), rtol=1e-12)
    assert ou.nu == pytest.approx(math.sqrt(2 * (1 + math.log(100))))
    for sde, phi in (
        (OUVE(gamma=1.3), 1.3 * t),
        (TSDVE(gamma=2.0), 2.0 * t**2 / 2),
        (CosVE(gamma=1.0), t - np.sin(np.pi * t) / np.pi),
    ):
        np.testing.assert_allclose([sde.mean_weight(float(s)) for s in t], np.exp(-phi), rtol=1e-14)
    # TSDVE and CosVE are normalised so that sigma_1 = sigma_max exactly; OUVE up to sigma_min² e^{-2γ}
    assert TSDVE().std(1.0) == pytest.approx(1.0, abs=1e-12)
    assert CosVE(sigma_max=0.7).std(1.0) == pytest.approx(0.7, abs=1e-12)
    assert OUVE().std(1.0) ** 2 == pytest.approx(1 - 1e-4 * math.exp(-2), abs=1e-14)
    # defaults are the paper's settings
    assert (TSDVE().gamma, OUVE().gamma, CosVE().gamma) == (2.0, 1.0, 1.0)
    assert (OUVE().sigma_min, OUVE().sigma_max, OUVE().t_eps) == (0.01, 1.0, 0.03)


def test_cosve_table_needs_many_nodes() -> None:
    """1000 nodes reproduce the variance to ~1e-12; a coarse grid of 16 is visibly worse."""
    ts = np.linspace(0.0, 1.0, 101)
    v_ref, _ = _reference(CosVE(), ts)
    err = {n: np.max(np.abs(CosVE(nodes=n).variance_np(ts)[1:] / v_ref[1:] - 1)) for n in (16, 1000)}
    assert err[1000] < 1e-9
    assert err[16] > 100 * err[1000]


@pytest.mark.parametrize("sde", [OUVE(), TSDVE(), CosVE()], ids=repr)
def test_forward_sde_monte_carlo(sde: DriftSDE) -> None:
    """Simulate dx = γF(y-x)dt + g dw by fine Euler-Maruyama; mean and std match μ_t, σ_t."""
    gen = torch.Generator().manual_seed(1)
    n_paths, n_steps = 20000, 500
    x0, y = 0.8, 0.2
    x = torch.full((n_paths,), x0, dtype=torch.float64)
    h = 1.0 / n_steps
    checks = {250: None, 500: None}
    for k in range(n_steps):
        t = k * h
        x = x + sde.gamma * float(sde.F(np.array(t))) * (y - x) * h
        x = x + sde.diffusion(t) * math.sqrt(h) * torch.randn(n_paths, generator=gen, dtype=torch.float64)
        if k + 1 in checks:
            checks[k + 1] = (float(x.mean()), float(x.std()))
    for k, (mean, std) in checks.items():  # type: ignore[misc]
        t = k * h
        w = sde.mean_weight(t)
        mu, sigma = w * x0 + (1 - w) * y, sde.std(t)
        # sampling error of the mean: sigma/sqrt(n) ~ 0.007 at t=1; Euler bias O(h)
        assert abs(mean - mu) < 4 * sigma / math.sqrt(n_paths) + 2e-3, (t, mean, mu)
        assert abs(std / sigma - 1) < 4 / math.sqrt(2 * n_paths) + 1e-2, (t, std, sigma)


def test_coefficients_follow_input_dtype_device_and_batch() -> None:
    sde = TSDVE()
    for dtype in (torch.float32, torch.float64):
        x0 = torch.rand(3, 2, 5, 7, dtype=dtype)
        y = torch.rand(3, 2, 5, 7, dtype=dtype)
        t = torch.tensor([0.1, 0.5, 1.0], dtype=dtype)
        for out in (sde.mean(x0, y, t), sde.drift(x0, y, t), sde.prior_sample(y, torch.Generator())):
            assert out.dtype == dtype and out.shape == x0.shape
        assert sde.std(t).dtype == dtype and sde.std(t).shape == (3,)
        assert sde.diffusion(t).dtype == dtype
        # per-sample times broadcast over the image
        m = sde.mean(x0, y, t)
        for b in range(3):
            torch.testing.assert_close(m[b : b + 1], sde.mean(x0[b : b + 1], y[b : b + 1], float(t[b])))
    assert isinstance(sde.std(0.5), float)
    # drift pulls toward y at rate γF(t)
    x, y = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    assert float(sde.drift(x, y, 0.5)) == pytest.approx(2.0 * 0.5)


def test_prior_sample_is_seeded_and_has_sigma_one() -> None:
    sde = CosVE()
    y = torch.full((4, 3, 32, 32), 0.5, dtype=torch.float64)
    a = sde.prior_sample(y, torch.Generator().manual_seed(3))
    b = sde.prior_sample(y, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert float((a - y).std()) == pytest.approx(sde.std(1.0), rel=0.03)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"gamma": 0}, "gamma"),
        ({"gamma": -1.0}, "gamma"),
        ({"sigma_min": 0.0}, "sigma_min"),
        ({"sigma_max": 0.005}, "sigma_max"),
        ({"t_eps": 1.0}, "t_eps"),
        ({"t_eps": "a"}, "t_eps"),
        ({"nodes": 3}, "nodes"),
    ],
)
def test_bad_parameters_raise_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        CosVE(**kwargs)


def test_get_sde_by_name_config_and_object() -> None:
    s = sdes.get_sde("TSDVE", sigma_max=0.5)
    assert isinstance(s, TSDVE) and s.sigma_max == 0.5
    assert sdes.get_sde(s.config()) == s
    assert sdes.get_sde(s) is s
    with pytest.raises(ValueError, match="sde must be one of"):
        sdes.get_sde("vp")
