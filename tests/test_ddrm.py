"""DDRM: exact oracle recovery for every operator kind, the schedule, options and errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import opkit
import solvers
from opkit.testing import strategies as ost
from solvers.oracles import OraclePrior
from solvers.priors import linear_alphas_cumprod
from tests.test_ddrm_toys import RoundingCodec, toy_svd_operators

SHAPE = (3, 4, 6)
F64 = torch.float64


def _images(
    b: int = 2, shape: tuple[int, int, int] = SHAPE, seed: int = 0, dtype: torch.dtype = F64
) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((b, *shape), generator=g, dtype=F64).to(dtype)


def _noisy(op: opkit.SVDOperator, x: Tensor, sigma_y: float, seed: int = 1) -> Tensor:
    y = op(x)
    g = torch.Generator().manual_seed(seed)
    return y + sigma_y * torch.randn(y.shape, generator=g, dtype=y.dtype)


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# oracle prior: the output is the true image (paper, section 3: with x_θ = x₀ every case of
# eq. 8 ends at x̄₀ when σ reaches 0)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma_y", [0.0, 0.1])
@pytest.mark.parametrize("name", sorted(toy_svd_operators()))
def test_oracle_returns_x0_local_svd(name: str, sigma_y: float) -> None:
    op = toy_svd_operators()[name]
    x = _images()
    y = _noisy(op, x, sigma_y)
    out = solvers.ddrm(op, y, OraclePrior(x), sigma_y=sigma_y, generator=_gen())
    assert out.dtype == F64 and out.shape == x.shape
    torch.testing.assert_close(out, x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_samples", [1, 3])
def test_oracle_returns_x0_local_codec(num_samples: int) -> None:
    op = RoundingCodec(SHAPE, levels=5)
    x = _images()
    out, samples = solvers.ddrm(
        op, op(x), OraclePrior(x), generator=_gen(), num_samples=num_samples, return_samples=True
    )
    torch.testing.assert_close(out, x, rtol=0, atol=1e-12)
    assert samples.shape == (2, num_samples, *SHAPE)


def test_oracle_float32() -> None:
    op = toy_svd_operators()["sr_block"]
    x = _images(dtype=torch.float32)
    out = solvers.ddrm(op, _noisy(op, x, 0.05), OraclePrior(x), sigma_y=0.05, generator=_gen())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x, rtol=0, atol=2e-5)


@pytest.mark.parametrize("name", opkit.available())
@settings(max_examples=4)
@given(data=st.data())
def test_oracle_returns_x0_registered(name: str, data: st.DataObject) -> None:
    """Every registered operator drawn from its own strategy: SVD ones noiseless and noisy,
    encode/decode pairs noiseless (their measurement is a code)."""
    kwargs = data.draw(ost.operator_kwargs(name))
    op = opkit.create(name, **kwargs)
    if not isinstance(op, (opkit.SVDOperator, opkit.EncodeDecodeOperator)):
        pytest.skip(f"{name} is neither an SVD operator nor an encode/decode pair")
    x = data.draw(ost.images(op.shape, batch=2, dtype=F64))
    model = OraclePrior(x)
    if isinstance(op, opkit.SVDOperator):
        sigma_y = data.draw(st.sampled_from([0.0, 0.1]))
        y = _noisy(op, x, sigma_y)
        out = solvers.ddrm(op, y, model, steps=4, sigma_y=sigma_y, generator=_gen())
    else:  # DDRM's own result: calibrate may move a truth paler than its decode (tested in test_jpeg)
        out = solvers.ddrm(op, op(x), model, steps=4, generator=_gen(), calibrate=False)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-10)
    assert model.calls == 4


# --------------------------------------------------------------------------------------------
# schedule, defaults, callback
# --------------------------------------------------------------------------------------------


class Recorder:
    """A prior that predicts zero noise and records its calls."""

    def __init__(self, channels_out: int | None = None) -> None:
        self.alphas_cumprod = linear_alphas_cumprod()
        self.ts: list[int] = []
        self.kwargs: list[dict[str, Any]] = []
        self.channels_out = channels_out

    def __call__(self, x_t: Tensor, t: Tensor, **kwargs: Any) -> Tensor:
        assert t.dtype == torch.long and t.shape == (x_t.shape[0],)
        self.ts.append(int(t[0]))
        self.kwargs.append(kwargs)
        c = self.channels_out or x_t.shape[1]
        return torch.zeros(x_t.shape[0], c, *x_t.shape[2:], dtype=x_t.dtype)


def test_default_schedule_per_kind() -> None:
    x = _images(1)
    svd_model, ed_model = Recorder(), Recorder()
    op = toy_svd_operators()["inpaint"]
    solvers.ddrm(op, op(x), svd_model)
    assert svd_model.ts == list(range(950, -1, -50))
    codec = RoundingCodec(SHAPE)
    solvers.ddrm(codec, codec(x), ed_model)
    assert ed_model.ts[0] == 300 and ed_model.ts[-1] == 0 and len(ed_model.ts) == 20
    m = Recorder()
    solvers.ddrm(op, op(x), m, steps=5, t_start=400)
    assert m.ts == [400, 300, 200, 100, 0]


def test_encode_decode_defaults_are_the_paper_s() -> None:
    """η = 1, η_b = 0.4: with a zero-noise model at the last step the output is
    η_b x' + (1 − η_b) f, checked against an explicit η_b."""
    x = _images(1)
    codec = RoundingCodec(SHAPE)
    y = codec(x)
    a = solvers.ddrm(codec, y, Recorder(), generator=_gen(3))
    b = solvers.ddrm(codec, y, Recorder(), generator=_gen(3), eta=1.0, eta_b=0.4, t_start=300)
    c = solvers.ddrm(codec, y, Recorder(), generator=_gen(3), eta=1.0, eta_b=0.5, t_start=300)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert solvers.methods.ddrm.DDRM_DEFAULTS["encode_decode"] == (1.0, 0.4, 300)
    assert solvers.methods.ddrm.DDRM_DEFAULTS["svd"] == (0.85, 1.0, None)


def test_callback_sees_model_input_and_prediction() -> None:
    op = toy_svd_operators()["colorize"]
    x = _images(2)
    seen: list[tuple[int, int, Tensor, Tensor]] = []
    model = OraclePrior(x)
    solvers.ddrm(
        op, op(x), model, steps=6, num_samples=3, generator=_gen(), callback=lambda *a: seen.append(a)
    )
    assert [s[0] for s in seen] == list(range(6))
    assert [s[1] for s in seen] == [830, 664, 498, 332, 166, 0]
    abar = model.alphas_cumprod
    for _, t, x_t, x0 in seen:
        assert x_t.shape == (6, *SHAPE) and x0.shape == (6, *SHAPE)
        torch.testing.assert_close(x0, x.repeat_interleave(3, 0), rtol=0, atol=1e-12)
        assert float(x_t.abs().max()) < 10 * (1 - abar[t]).sqrt() + 1  # a VP input, not VE


def test_learned_variance_outputs_use_first_half() -> None:
    x = _images(1)
    op = toy_svd_operators()["blur"]
    oracle = OraclePrior(x)

    class SixChannels:
        alphas_cumprod = oracle.alphas_cumprod

        def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
            return torch.cat([oracle(x_t, t), torch.full_like(x_t, 7.0)], 1)

    a = solvers.ddrm(op, op(x), SixChannels(), steps=3, generator=_gen())
    torch.testing.assert_close(a, x, rtol=0, atol=1e-12)


def test_model_kwargs_are_forwarded_and_repeated_for_samples() -> None:
    x = _images(2)
    op = toy_svd_operators()["inpaint"]
    m = Recorder()
    labels = torch.tensor([3, 5])
    solvers.ddrm(op, op(x), m, steps=2, num_samples=2, model_kwargs={"class_labels": labels, "w": 1.5})
    assert torch.equal(m.kwargs[0]["class_labels"], torch.tensor([3, 3, 5, 5]))
    assert m.kwargs[1]["w"] == 1.5


# --------------------------------------------------------------------------------------------
# samples, reproducibility
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["svd", "codec"])
def test_seeded_runs_are_reproducible(kind: str) -> None:
    x = _images(2)
    op: Any = toy_svd_operators()["dense"] if kind == "svd" else RoundingCodec(SHAPE)
    y = _noisy(op, x, 0.05) if kind == "svd" else op(x)
    sy = 0.05 if kind == "svd" else 0.0
    run = lambda seed: solvers.ddrm(op, y, Recorder(), sigma_y=sy, steps=5, generator=_gen(seed))  # noqa: E731
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_samples_are_one_batch_and_averaged() -> None:
    x = _images(2)
    op = toy_svd_operators()["dense"]
    y = _noisy(op, x, 0.05)
    mean, samples = solvers.ddrm(
        op, y, Recorder(), sigma_y=0.05, steps=3, num_samples=4, generator=_gen(), return_samples=True
    )
    assert samples.shape == (2, 4, *SHAPE)
    torch.testing.assert_close(mean, samples.mean(1), rtol=0, atol=1e-15)
    assert float((samples[:, 0] - samples[:, 1]).abs().max()) > 1e-3  # different draws
    assert float(samples.min()) >= 0 and float(samples.max()) <= 1


# --------------------------------------------------------------------------------------------
# no constant recomputed in the loop
# --------------------------------------------------------------------------------------------


def test_transforms_per_step() -> None:
    """Uᵀ once per call; V and Vᵀ once per step (plus Vᵀ1 and the final V); Decode(y) once."""
    base = toy_svd_operators()["blur"]
    counts = {"Vt": 0, "V": 0, "Ut": 0, "U": 0}
    op = toy_svd_operators()["blur"]
    for name in counts:
        orig = getattr(op, name)

        def wrapped(v: Tensor, _orig: Any = orig, _name: str = name) -> Tensor:
            counts[_name] += 1
            return _orig(v)

        setattr(op, name, wrapped)
    x = _images(1)
    y = base(x)
    solvers.ddrm(op, y, Recorder(), steps=7)
    assert counts == {"Vt": 7 + 1, "V": 7 + 1, "Ut": 1, "U": 0}

    codec = RoundingCodec(SHAPE)
    calls = {"decode": 0, "encode": 0}
    dec, enc = codec.decode, codec.encode

    def count_dec(y: Tensor) -> Tensor:
        calls["decode"] += 1
        return dec(y)

    def count_enc(v: Tensor) -> Tensor:
        calls["encode"] += 1
        return enc(v)

    codec.decode, codec.encode = count_dec, count_enc  # type: ignore[method-assign]
    solvers.ddrm(codec, enc(x), Recorder(), steps=5)
    assert calls == {"decode": 5 + 1, "encode": 5}


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


class _PlainLinear(opkit.LinearOperator):
    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shape

    def forward(self, x: Tensor) -> Tensor:
        return 2 * x

    def adjoint(self, y: Tensor) -> Tensor:
        return 2 * y

    def pinv(self, y: Tensor) -> Tensor:
        return y / 2


def test_clear_errors() -> None:
    x = _images(1)
    op = toy_svd_operators()["inpaint"]
    y = op(x)
    m = Recorder()
    with pytest.raises(TypeError, match="SVDOperator"):
        solvers.ddrm(_PlainLinear(SHAPE), y, m)
    with pytest.raises(TypeError, match="prior protocol"):
        solvers.ddrm(op, y, lambda x, t: x)
    bad = y.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        solvers.ddrm(op, bad, m)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinity"):
        solvers.ddrm(op, bad, m)
    with pytest.raises(ValueError, match="shape"):
        solvers.ddrm(op, y[:, :, :2], m)
    with pytest.raises(ValueError, match="floating"):
        solvers.ddrm(op, y.to(torch.long), m)
    codec = RoundingCodec(SHAPE)
    with pytest.raises(ValueError, match="sigma_y must be 0"):
        solvers.ddrm(codec, codec(x), m, sigma_y=0.1)
    with pytest.raises(ValueError, match="shape"):
        solvers.ddrm(codec, codec(x)[:, :1], m)
    for kw, word in [
        ({"eta": 1.5}, "eta"),
        ({"eta_b": -0.1}, "eta_b"),
        ({"sigma_y": -1.0}, "sigma_y"),
        ({"sigma_y": float("nan")}, "sigma_y"),
        ({"steps": 0}, "steps"),
        ({"steps": 2000}, "steps"),
        ({"num_samples": 0}, "num_samples"),
        ({"t_start": 1000}, "t_start"),
        ({"t_start": 3, "steps": 10}, "t_start"),
        ({"t_start": 12.5}, "t_start"),
    ]:
        with pytest.raises(ValueError, match=word):
            solvers.ddrm(op, y, m, **kw)
    with pytest.raises(ValueError, match="returned shape"):
        solvers.ddrm(op, y, Recorder(channels_out=2), steps=2)


def test_progress_bar_reports_time_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    x = _images(1)
    op = toy_svd_operators()["inpaint"]
    solvers.ddrm(op, op(x), Recorder(), steps=3, progress=True)
    err = capsys.readouterr().err
    assert "DDRM" in err and "ms/step" in err
    solvers.ddrm(op, op(x), Recorder(), steps=3, progress=False)
    assert capsys.readouterr().err == ""
    solvers.ddrm(op, op(x), Recorder(), steps=3)  # default: off when stderr is not a terminal
    assert capsys.readouterr().err == ""


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_follows_the_input() -> None:  # pragma: no cover - no GPU on the project machines
    x = _images(2).cuda()
    op = toy_svd_operators()["blur"]
    out = solvers.ddrm(op, op(x), OraclePrior(x), generator=torch.Generator("cuda").manual_seed(0))
    assert out.device == x.device
    torch.testing.assert_close(out, x, rtol=0, atol=1e-12)
    out = solvers.ddrm(op, op(x), OraclePrior(x), generator=_gen())  # a CPU generator works too
    torch.testing.assert_close(out, x, rtol=0, atol=1e-12)
