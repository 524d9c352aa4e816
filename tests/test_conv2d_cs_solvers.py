"""Oracle recovery on conv2d and cs: DDRM (noiseless and noisy), ΠGDM and the DDNM example plugin.

With a prior that returns the true image (``OraclePrior``), each solver must return it: DDRM by
its spectral update (every case of eq. 8 ends at x̄₀), ΠGDM and DDNM by their range/null-space
updates. float64, small non-square sizes with odd and even sides.
"""

from __future__ import annotations

import pytest
import torch

import opkit
import solvers
from solvers.oracles import OraclePrior

F64 = torch.float64

CASES = [
    ("conv2d", (3, 9, 12), {"kernel": "motion", "size": 9, "intensity": 0.5, "seed": 3}),
    ("conv2d", (3, 10, 7), {"kernel": "gaussian", "sigma": 1.5, "size": 7}),
    ("conv2d", (1, 8, 8), {"kernel": "disk", "radius": 2.0, "threshold": 0.0}),
    ("cs", (3, 8, 16), {"ratio": 4, "seed": 1}),
    ("cs", (1, 16, 4), {"ratio": 3, "seed": 2}),
]
IDS = [f"{name}-{shape[1]}x{shape[2]}-{next(iter(p.values()))}" for name, shape, p in CASES]


def _problem(name: str, shape: tuple[int, int, int], params: dict[str, object], sigma_y: float = 0.0):  # type: ignore[no-untyped-def]
    op = opkit.create(name, shape=shape, **params)
    x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0), dtype=F64) * 0.8 + 0.1
    y = op(x)
    if sigma_y:
        y = y + sigma_y * torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    return op, x, y


@pytest.mark.parametrize("sigma_y", [0.0, 0.05])
@pytest.mark.parametrize(("name", "shape", "params"), CASES, ids=IDS)
def test_ddrm_oracle_recovery(
    name: str, shape: tuple[int, int, int], params: dict[str, object], sigma_y: float
) -> None:
    op, x, y = _problem(name, shape, params, sigma_y)
    model = OraclePrior(x)
    out = solvers.ddrm(op, y, model, steps=6, sigma_y=sigma_y, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-10)
    assert model.calls == 6


@pytest.mark.parametrize(("name", "shape", "params"), CASES, ids=IDS)
def test_pigdm_oracle_recovery(name: str, shape: tuple[int, int, int], params: dict[str, object]) -> None:
    op, x, y = _problem(name, shape, params)
    out = solvers.pigdm(op, y, OraclePrior(x), steps=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("name", "shape", "params"), CASES, ids=IDS)
def test_ddnm_example_oracle_recovery(
    name: str, shape: tuple[int, int, int], params: dict[str, object]
) -> None:
    ddnm = pytest.importorskip("opkit_ddnm").ddnm  # the example third-party package
    op, x, y = _problem(name, shape, params)
    out = ddnm(op, y, OraclePrior(x), steps=5, generator=torch.Generator().manual_seed(0), progress=False)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-9)


def test_ddrm_uses_the_measured_coordinates_only() -> None:
    # the oracle's x₀ is not needed on measured coordinates when σ_y = 0: a prior that knows the
    # image only off the measured coordinates still recovers it (DDRM takes those from y)
    op, x, y = _problem("cs", (3, 8, 8), {"ratio": 2, "seed": 0})
    s = op.singulars
    x_wrong = op.V(torch.where(s > 0, torch.zeros_like(op.Vt(x)), op.Vt(x)))
    out = solvers.ddrm(
        op, y, OraclePrior(x_wrong), steps=4, eta=1.0, generator=torch.Generator().manual_seed(0)
    )
    got, want = op.Vt(out), op.Vt(x)
    measured = (s > 0).expand_as(got)
    torch.testing.assert_close(got[measured], want[measured], rtol=0, atol=1e-10)
