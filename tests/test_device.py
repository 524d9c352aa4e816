"""Device tests: every operator, DDRM and DriftRec in half precision, and the JPEG pipeline, on a device.

Every test here carries the ``cuda`` marker (``pytest -m cuda`` selects exactly the GPU checks,
which ``benchmarks/run_all.py --device cuda`` runs) and is parametrised over the devices in
``OPKIT_TEST_DEVICES`` (comma separated, default ``cpu,cuda``): the CPU variant exercises the same
code paths (dtype handling, constants cached per device, no host round trips) in every CI run,
and a CUDA variant skips cleanly where there is no GPU. Results on the device are compared with
the CPU in float64, the oracle of the rest of the suite.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

import opkit
import solvers
from opkit.testing import check_operator
from solvers.oracles import OraclePrior

pytestmark = pytest.mark.cuda


def _devices() -> list[Any]:
    names = [d.strip() for d in os.environ.get("OPKIT_TEST_DEVICES", "cpu,cuda").split(",") if d.strip()]
    out: list[Any] = []
    for name in names:
        if torch.device(name).type == "cuda":
            out.append(
                pytest.param(
                    name, marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
                )
            )
        else:
            out.append(name)
    return out


DEVICES = _devices()
SHAPE = (3, 16, 12)

#: Parameters of the registered linear operators (third-party ones run with their defaults).
LINEAR: dict[str, list[dict[str, Any]]] = {
    "denoise": [{}],
    "inpaint": [{"missing": 0.5, "seed": 0}],
    "sr_block": [{"factor": 4}],
    "sr_bicubic": [{"factor": 4}, {"factor": 2, "boundary": "symmetric"}],
    "colorize": [{}, {"weights": (0.299, 0.587, 0.114)}],
    "blur": [
        {"kernel": "uniform", "size": 5, "threshold": 0.0},
        {"kernel": "gaussian", "sigma": 1.0},
        {"kernel": "uniform", "size": 4, "boundary": "reflect", "threshold": 0.0},
        {"kernel": "gaussian", "sigma": 1.5, "boundary": "reflect", "threshold": 0.05},
    ],
    "conv2d": [
        {"kernel": "motion", "size": 9, "seed": 1},
        {"kernel": "gaussian", "sigma": 1.5, "size": 7, "threshold": 0.0},
    ],
    "cs": [{"ratio": 4, "seed": 0}, {"ratio": 3}],
}
#: Operators that need another image shape than :data:`SHAPE` (cs: sides that are powers of two).
SHAPES: dict[str, tuple[int, int, int]] = {"cs": (3, 16, 8)}


def _linear_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for name in opkit.available():
        probe = opkit.create(name, shape=SHAPES.get(name, SHAPE), **LINEAR.get(name, [{}])[0])
        if isinstance(probe, opkit.LinearOperator):
            cases += [(name, p) for p in LINEAR.get(name, [{}])]
    return cases


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().cpu().double(), b.detach().cpu().double()
    return float((a64 - b64).norm() / b64.norm().clamp_min(1e-300))


@pytest.mark.parametrize(("name", "params"), _linear_cases(), ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("device", DEVICES)
def test_linear_operator_on_device_matches_cpu_float64(
    name: str, params: dict[str, Any], dtype: torch.dtype, device: str
) -> None:
    shape = SHAPES.get(name, SHAPE)
    op = opkit.create(name, shape=shape, **params)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, *shape, generator=g, dtype=torch.float64)
    y = torch.randn(2, *op.out_shape, generator=g, dtype=torch.float64)
    tol = 1e-11 if dtype == torch.float64 else 2e-5
    for fn, arg in ((op.forward, x), (op.adjoint, y), (op.pinv, y)):
        ref = fn(arg)  # CPU float64
        got = fn(arg.to(device=device, dtype=dtype))
        assert got.device.type == torch.device(device).type and got.dtype == dtype
        assert _rel(got, ref) <= tol * (1e3 if fn == op.pinv else 1.0), (name, fn.__name__)
    check_operator(op, dtype=dtype, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
def test_jpeg_pipeline_is_bit_exact_against_the_cpu(device: str, subsampling: str) -> None:
    shape = (3, 21, 30)  # odd sizes: edge blocks, libjpeg's padding and the exact edge solver
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (3, *shape), generator=g).double() / 255.0  # 8-bit: libjpeg arithmetic
    smooth = torch.rand(3, *shape, generator=g, dtype=torch.float64)  # continuous: float arithmetic
    for decode in ("exact", "libjpeg"):
        op = opkit.create("jpeg", shape=shape, quality=30, subsampling=subsampling, decode=decode)
        for x in (pixels, smooth):
            ref = op(x)
            for dtype in (torch.float64, torch.float32):
                if dtype == torch.float32 and x is smooth:
                    continue  # float32 continuous input may round a coefficient differently: not a bug
                got = op(x.to(device=device, dtype=dtype))
                assert got.device.type == torch.device(device).type
                assert torch.equal(op.codes(got).cpu(), op.codes(ref)), (decode, dtype)
                dec_ref = op.decode(ref)
                dec = op.decode(got)
                if decode == "libjpeg":  # the integer pipeline: the same 8-bit levels
                    assert torch.equal((dec.cpu().double() * 255).round(), (dec_ref * 255).round())
                else:
                    assert _rel(dec, dec_ref) < (1e-12 if dtype == torch.float64 else 1e-6)
        # the exact decoder stays a right inverse of the encoder on the device
        y = op(smooth.to(device))
        assert torch.equal(op.codes(op(op.pinv(y))), op.codes(y))


@pytest.mark.parametrize("device", DEVICES)
def test_quantize_on_device_is_exact(device: str) -> None:
    op = opkit.create("quantize", shape=SHAPE, bits=5)
    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        k = op(x.to(device=device, dtype=dtype))
        assert torch.equal(op(op.decode(k).to(dtype)).cpu(), k.cpu())
    assert torch.equal(op(x.to(device)).cpu(), op(x))


class HalfOracle(OraclePrior):
    """The oracle prior as a low-precision network sees it: input and ε rounded to ``dtype``."""

    def __init__(self, x0: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__(x0)
        self.low = dtype

    def __call__(self, x_t: torch.Tensor, t: Any, **kwargs: Any) -> torch.Tensor:
        seen = x_t.to(self.low).to(x_t.dtype)  # what a float16 network receives
        return super().__call__(seen, t).to(self.low)  # ε in the network's precision


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["sr_block", "blur", "colorize", "jpeg", "quantize"])
def test_ddrm_with_a_half_precision_model(device: str, name: str) -> None:
    params = {"sr_block": {"factor": 2}, "jpeg": {"quality": 50}, "quantize": {"bits": 4}}.get(name, {})
    shape = (3, 16, 16)
    op = opkit.create(name, shape=shape, **params)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(3)).to(device)
    low = torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16
    gen = torch.Generator(device).manual_seed(0)
    out = solvers.ddrm(op, op(x), HalfOracle(x, low), steps=10, generator=gen)
    assert out.dtype == torch.float32 and out.device == x.device
    assert bool(torch.isfinite(out).all())
    # the half-precision ε costs about its own rounding in the result, no more
    assert float((out - x).abs().max()) < 0.05


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ddrm_with_a_half_precision_measurement(device: str, dtype: torch.dtype) -> None:
    shape = (3, 16, 16)
    op = opkit.create("sr_block", shape=shape, factor=2)
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(4)).to(device)
    out = solvers.ddrm(op, op(x.to(dtype)), OraclePrior(x), steps=10)
    assert out.dtype == dtype  # computed in float32, returned in the measurement's precision
    assert bool(torch.isfinite(out).all())
    assert float((out.float() - x).abs().max()) < 0.05


@pytest.mark.parametrize("device", DEVICES)
def test_driftrec_with_a_half_precision_model(device: str) -> None:
    low = torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16
    model = solvers.load_driftrec("default", device=device, dtype=low)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5)).to(device)
    op = opkit.create("jpeg", shape=(3, 32, 32), quality=10)
    y = op.decode(op(x))
    gen = torch.Generator(device).manual_seed(0)
    out = solvers.driftrec(y, model, steps=10, generator=gen)
    assert out.shape == y.shape and out.device == y.device and out.dtype == y.dtype
    assert bool(torch.isfinite(out).all())
    # and a low-precision oracle score recovers the clean image (the sampler's own arithmetic
    # stays in the state's precision)
    sde = solvers.sdes.OUVE()

    def score(xt: torch.Tensor, yy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mu = sde.mean(x.to(low), yy.to(low), t.to(low))
        return (-(xt.to(low) - mu) / sde.std(t).to(low).reshape(-1, 1, 1, 1) ** 2).to(low)

    out = solvers.driftrec(y, score, sde=sde, steps=100, generator=gen, color_correction=False)
    mse = float((out.double() - x.double()).pow(2).mean())
    assert mse < 1e-3  # above 30 dB
