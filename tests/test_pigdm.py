r"""ΠGDM against closed forms.

**Gaussian prior.** For data :math:`x_0 \sim \mathcal N(\mu, I)` (model range) the denoising
posterior is :math:`p(x_0 \mid x_t) = \mathcal N(\hat x_0(x_t), r_t^2 I)` with exactly ΠGDM's
:math:`r_t^2 = 1 - \bar\alpha_t`, so ΠGDM's likelihood score is exact and its sampler follows the
exact conditional score; with the DDPM step over all 1000 timesteps its samples follow the
posterior :math:`\mathcal N(\mu_p, \Sigma_p)` up to the discretisation of the reverse process:

* noisy (:math:`y_m = H x_0 + \sigma z`): :math:`\Sigma_p = (I + H^\top H/\sigma^2)^{-1}`,
  :math:`\mu_p = \Sigma_p(\mu + H^\top y_m/\sigma^2)`;
* noiseless: :math:`\mu_p = H^\dagger y_m + (I - H^\dagger H)\mu`, :math:`\Sigma_p = I - H^\dagger H`.

The dense problem (6 pixels, a 4 × 6 operator of rank 3, float64) is solved with ``N`` samples;
the sample mean must match :math:`\mu_p` within 5 standard errors plus 0.01 and the sample
covariance :math:`\Sigma_p` within 0.03 (entries are of order 1; the Monte Carlo error of a
covariance entry is about :math:`\sqrt{2/N} \approx 0.01`). Measured: mean errors 0.007
(standard error 0.007) and covariance errors 0.009 (noiseless) and 0.010 (σ_y = 0.1) with all
1000 timesteps; with 100 steps the covariance is off by 0.07, so the check sees the
discretisation.

**Oracle.** With a prior that knows the image, ΠGDM returns it on every operator kind.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import opkit
import solvers
from solvers.oracles import GaussianPrior, OraclePrior
from tests.toy_operators import random_dense_svd

SHAPE = (1, 2, 3)
F64 = torch.float64
N = 20000


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def _posterior(A: Tensor, mu: Tensor, y_m: Tensor, sig: float) -> tuple[Tensor, Tensor]:
    n = A.shape[1]
    eye = torch.eye(n, dtype=F64)
    if sig > 0:
        cov = torch.linalg.inv(eye + A.T @ A / sig**2)
        return cov @ (mu + A.T @ y_m / sig**2), cov
    P = torch.linalg.pinv(A)
    return P @ y_m + (eye - P @ A) @ mu, eye - P @ A


# each case takes about 40 s on one core: the noiseless one runs with the slow checks
@pytest.mark.parametrize("sigma_y", [pytest.param(0.0, marks=pytest.mark.slow), 0.1])
def test_gaussian_prior_samples_follow_the_posterior(sigma_y: float) -> None:
    op, A = random_dense_svd(SHAPE, m=4, rank=3, seed=5)
    g = torch.Generator().manual_seed(0)
    n = A.shape[1]
    mu = 0.3 * torch.randn(n, generator=g, dtype=F64)
    prior = GaussianPrior(mu.view(SHAPE), torch.eye(n, dtype=F64))
    x0_m = mu + torch.randn(n, generator=g, dtype=F64)  # one draw of the prior (model range)
    sig = 2 * sigma_y
    y_m = A @ x0_m + sig * torch.randn(A.shape[0], generator=g, dtype=F64)
    # image units: y = H x01 + σ_y z with x01 = (x_m + 1)/2, i.e. y_m = 2y - H1
    y = ((y_m + A @ torch.ones(n, dtype=F64)) / 2).view(1, -1)
    _, info = solvers.pigdm(
        op,
        y,
        prior,
        steps=1000,
        num_samples=N,
        sigma_y=sigma_y,
        eta=1.0,
        clip_x0=False,
        generator=torch.Generator().manual_seed(1),
        return_info=True,
        progress=False,
    )
    samples = 2 * info.samples[0].reshape(N, n) - 1  # model range
    mean_p, cov_p = _posterior(A, mu, y_m, sig)
    mean_s = samples.mean(0)
    cov_s = torch.cov(samples.T)
    se = samples.std(0) / N**0.5
    assert ((mean_s - mean_p).abs() <= 5 * se + 0.01).all(), (mean_s - mean_p, se)
    assert float((cov_s - cov_p).abs().max()) < 0.03, cov_s - cov_p


def test_the_paper_variance_matters() -> None:
    """The check above has power: with a prior of variance 4 (not ΠGDM's assumed 1) the covariance
    of the samples is off by much more than the tolerance."""
    op, A = random_dense_svd(SHAPE, m=4, rank=3, seed=5)
    n = A.shape[1]
    mu = torch.zeros(n, dtype=F64)
    prior = GaussianPrior(mu.view(SHAPE), 4 * torch.eye(n, dtype=F64))
    sig = 0.2
    y_m = torch.zeros(A.shape[0], dtype=F64)
    y = ((y_m + A @ torch.ones(n, dtype=F64)) / 2).view(1, -1)
    _, info = solvers.pigdm(
        op,
        y,
        prior,
        steps=200,
        num_samples=4000,
        sigma_y=sig / 2,
        clip_x0=False,
        generator=torch.Generator().manual_seed(1),
        return_info=True,
        progress=False,
    )
    samples = 2 * info.samples[0].reshape(4000, n) - 1
    cov_true = torch.linalg.inv(torch.eye(n, dtype=F64) / 4 + A.T @ A / sig**2)
    assert float((torch.cov(samples.T) - cov_true).abs().max()) > 0.1


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("denoise", {}),
        ("inpaint", {"missing": 0.5, "seed": 0}),
        ("sr_block", {"factor": 2}),
        ("sr_bicubic", {"factor": 2}),
        ("colorize", {}),
        ("blur", {"kernel": "gaussian", "sigma": 1.0, "size": 5}),
        ("jpeg", {"quality": 30}),
        ("quantize", {"bits": 3}),
    ],
)
def test_oracle_recovery_on_every_operator_kind(name: str, params: dict[str, object]) -> None:
    op = opkit.create(name, shape=(3, 8, 8), **params)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    g = torch.Generator().manual_seed(
        0
    )  # ΠGDM's own result: calibrate may move a truth paler than its decode
    out = solvers.pigdm(op, op(x), OraclePrior(x), steps=4, generator=g, calibrate=False)
    assert torch.allclose(out, x, atol=1e-9)


def test_oracle_recovery_on_a_composed_operator_with_noise_refused() -> None:
    a = opkit.create("blur", shape=(3, 8, 8), kernel="uniform", size=3)
    b = opkit.create("inpaint", shape=(3, 8, 8), missing=0.3, seed=1)
    op = a @ b
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    out = solvers.pigdm(op, op(x), OraclePrior(x), steps=3)
    assert torch.allclose(out, x, atol=1e-9)
    with pytest.raises(ValueError, match="SVD"):
        solvers.pigdm(op, op(x), OraclePrior(x), steps=3, sigma_y=0.1)
