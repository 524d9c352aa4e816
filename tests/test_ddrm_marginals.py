r"""Proposition 3.1 of the DDRM paper, measured.

With the oracle prior (its prediction is the true image) and a fresh measurement
``y = H x₀ + σ_y z`` per sample, the VE iterates of DDRM have the marginals
:math:`\mathcal N(x_0, \sigma_t^2 I)`, i.e. the model inputs
:math:`x_t^\text{VP} = \sqrt{\bar\alpha_t}\, x_t` follow
:math:`\mathcal N(\sqrt{\bar\alpha_t}(2x_0 - 1), (1 - \bar\alpha_t) I)` (model range).

The operators are the registered ``inpaint``, ``sr_block``, ``colorize`` and ``blur`` when their
plugins are installed (the local ones of the same form otherwise), plus a local dense SVD with
random orthogonal factors and zero, small and large singular values.

Two terms of the implemented sampler ``p`` differ from the paper's ``q`` by a known amount,
and the expected mean below includes them exactly:

* the start (eq. 7) uses 0 instead of :math:`\bar x_0` on the null space, and the s = 0 update
  keeps a share :math:`c_k = \sqrt{1-\eta^2}\,\sigma_{k}/\sigma_{k-1}` of the previous deviation,
  so the null-space mean at call ``i`` is :math:`\bar x_0 (1 - \prod_{k=1}^{i} c_k)`;
* coordinates with :math:`\sigma_T < \sigma_y / s_i` (none with the default schedule unless
  ``s`` is tiny) start from eq. 8's case 2 with a zero prediction: mean
  :math:`\sqrt{1-\eta^2}\,\sigma_T s_i/\sigma_y \cdot \bar x_0` at call 0.

The variance is exactly :math:`\sigma_t^2` everywhere. Tolerances are sampling errors of
``N`` independent samples: the empirical mean has standard error :math:`\sqrt{(1-\bar\alpha_t)/N}`,
the empirical variance :math:`(1-\bar\alpha_t)\sqrt{2/(N-1)}`; every pixel of every step must be
within 5 standard errors (about 1 400 checks per case, so a false alarm has probability
below 1e-3, and the seeds are fixed). Whiteness: for white Gaussian samples the sample
covariance satisfies :math:`\mathbb E\|\hat C/v - I\|_F^2 = n(n+1)/N`; the measured ratio must lie
in [0.8, 1.2] (its relative spread is about :math:`\sqrt{2/n^2}` ≈ 2 % here).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import opkit
import solvers
from solvers.oracles import OraclePrior
from solvers.priors import uniform_timesteps
from tests.test_ddrm_toys import toy_svd_operators

SHAPE = (3, 4, 6)
N = 2000
ETA, ETA_B = 0.85, 1.0
F64 = torch.float64

REGISTERED_PARAMS = {
    "inpaint": {"missing": 0.5, "seed": 0},
    "sr_block": {"factor": 2},
    "colorize": {},
    "blur": {"kernel": "gaussian", "sigma": 1.0},
}


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def _operator(name: str) -> opkit.SVDOperator:
    """The registered operator when its plugin is there, else the local one of the same form."""
    if name in REGISTERED_PARAMS and name in opkit.available():
        op = opkit.create(name, shape=SHAPE, **REGISTERED_PARAMS[name])
        assert isinstance(op, opkit.SVDOperator)
        return op
    return toy_svd_operators(SHAPE)[name]


def expected_means(
    op: opkit.SVDOperator, x0: Tensor, sigma_y: float, t_start: int | None = None
) -> list[Tensor]:
    """Exact mean of the model input at every call (see the module docstring)."""
    ts = uniform_timesteps(1000, 20, t_start)
    abar = [float(a) for a in OraclePrior(x0).alphas_cumprod[ts]]
    sig = [math.sqrt((1 - a) / a) for a in abar]
    mbar = op.Vt(2 * x0 - 1)
    s = op.singulars_like(mbar).expand_as(mbar[0])
    pos = s > 0
    noise = 2 * sigma_y * op.singulars_pinv_like(mbar).expand_as(s)
    case3 = pos & (sig[0] < noise)
    start_factor = torch.where(
        case3, math.sqrt(1 - ETA**2) * sig[0] / torch.where(case3, noise, torch.ones_like(noise)), 1.0
    )
    out, keep = [], 1.0
    for i, a in enumerate(abar):
        if i > 0:
            keep *= math.sqrt(1 - ETA**2) * sig[i] / sig[i - 1]
        meas = mbar * (start_factor if i == 0 else 1.0)
        out.append(math.sqrt(a) * op.V(torch.where(pos, meas, mbar * (1 - keep))).flatten())
    return out


@pytest.mark.parametrize(
    ("name", "sigma_y", "t_start"),
    [(n, s, None) for n in ("inpaint", "sr_block", "colorize", "blur", "dense") for s in (0.0, 0.05)]
    # a late start: the zero start of the null space and the case-2 start of noisy coordinates
    # with σ_T < σ_y/s_i are then visible in the mean
    + [("blur", 0.05, 300), ("dense", 0.05, 300), ("inpaint", 0.0, 300)],
)
def test_intermediate_marginals(name: str, sigma_y: float, t_start: int | None) -> None:
    op = _operator(name)
    g = torch.Generator().manual_seed(11)
    x0 = torch.rand((1, *SHAPE), generator=g, dtype=F64)
    xs = x0.expand(N, *SHAPE)
    y = op(xs)
    y = y + sigma_y * torch.randn(y.shape, generator=g, dtype=F64)  # fresh noise per sample
    stats: list[tuple[int, Tensor]] = []
    solvers.ddrm(
        op,
        y,
        OraclePrior(x0),
        eta=ETA,
        eta_b=ETA_B,
        sigma_y=sigma_y,
        t_start=t_start,
        generator=torch.Generator().manual_seed(12),
        callback=lambda i, t, x_t, x0p: stats.append((t, x_t.reshape(N, -1).clone())),
    )
    abar = OraclePrior(x0).alphas_cumprod
    means = expected_means(op, x0, sigma_y, t_start)
    n = x0.numel()
    assert len(stats) == 20
    for i, (t, xt) in enumerate(stats):
        v = float(1 - abar[t])
        emp_mean = xt.mean(0)
        z_mean = (emp_mean - means[i]) / math.sqrt(v / N)
        assert float(z_mean.abs().max()) < 5, (
            f"step {i} (t={t}): mean off by {float(z_mean.abs().max()):.1f} SE"
        )
        centred = xt - emp_mean
        cov = centred.T @ centred / (N - 1)
        z_var = (cov.diagonal() / v - 1) / math.sqrt(2 / (N - 1))
        assert float(z_var.abs().max()) < 5, (
            f"step {i} (t={t}): variance off by {float(z_var.abs().max()):.1f} SE"
        )
        ratio = float((cov / v - torch.eye(n, dtype=F64)).square().sum()) / (n * (n + 1) / N)
        assert 0.8 < ratio < 1.2, f"step {i} (t={t}): covariance not white, ratio {ratio:.2f}"
