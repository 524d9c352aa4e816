"""Solvers and operators given inputs they must refuse, or handle: wrong codes, NaN, half precision."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import opkit
import solvers
from solvers.oracles import OraclePrior
from solvers.sdes import OUVE
from solvers.sdes.score_models import ScoreModel


def _x(shape: tuple[int, ...] = (1, 3, 16, 16), seed: int = 0) -> Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


class NanAfter:
    """A prior that behaves like the oracle until call ``bad`` (1-based), which returns NaN (or inf)."""

    def __init__(self, x0: Tensor, bad: int, value: float = float("nan")) -> None:
        self.oracle = OraclePrior(x0)
        self.alphas_cumprod = self.oracle.alphas_cumprod
        self.bad, self.value, self.calls = bad, value, 0

    def __call__(self, x_t: Tensor, t: Any, **kwargs: Any) -> Tensor:
        self.calls += 1
        eps = self.oracle(x_t, t)
        if self.calls == self.bad:
            eps = eps.clone()
            eps[0, 0, 0, 0] = self.value
        return eps


# -- measurements the operator did not make ------------------------------------------------------
def test_ddrm_refuses_jpeg_coefficients_of_other_tables_or_sampling() -> None:
    x = _x()
    op = opkit.create("jpeg", shape=(3, 16, 16), quality=50)
    prior = OraclePrior(x)
    out = solvers.ddrm(op, op(x), prior, steps=3)  # its own measurement works
    assert out.shape == x.shape
    other_q = opkit.create("jpeg", shape=(3, 16, 16), quality=10)
    with pytest.raises(ValueError, match="quantised with other tables"):
        solvers.ddrm(op, other_q(x), prior, steps=3)
    other_s = opkit.create("jpeg", shape=(3, 16, 16), quality=50, subsampling="4:4:4")
    with pytest.raises(ValueError, match="4:4:4 chroma sampling, the operator 4:2:0"):
        solvers.ddrm(op, other_s(x), prior, steps=3)


def test_ddrm_refuses_quantize_levels_out_of_range_or_not_integers() -> None:
    x = _x()
    op = opkit.create("quantize", shape=(3, 16, 16), bits=3)
    y = op(x)
    bad = y.clone()
    bad[0, 0, 0, 0] = 8
    with pytest.raises(ValueError, match=r"levels must lie in \[0, 7\] for bits=3, got values in \[0, 8\]"):
        solvers.ddrm(op, bad, OraclePrior(x), steps=3)
    with pytest.raises(ValueError, match=r"got values in \[-1, 7\]"):
        op.check_measurement(y - (y == 0).to(y.dtype))
    with pytest.raises(ValueError, match=r"expected integer levels, got torch\.float32"):
        solvers.ddrm(op, y.float(), OraclePrior(x), steps=3)


def test_every_encode_decode_operator_accepts_its_own_measurement() -> None:
    x = _x()
    checked = []
    for entry in opkit.default_registry().operator_entries():
        try:
            op = opkit.create(entry.name, shape=(3, 16, 16))
        except ValueError:  # needs parameters (e.g. inpaint's mask)
            continue
        if isinstance(op, opkit.EncodeDecodeOperator):
            op.check_measurement(op(x))  # no error
            checked.append(entry.name)
    assert {"jpeg", "quantize"} <= set(checked)


# -- NaN and infinity ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["jpeg", "quantize"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_encoders_refuse_nan_and_infinity(name: str, value: float) -> None:
    op = opkit.create(name, shape=(3, 8, 8))
    x = _x((2, 3, 8, 8))
    x[1, 2, 3, 4] = value
    with pytest.raises(ValueError, match=f"{name}: the image contains NaN or infinity"):
        op(x)


@pytest.mark.parametrize(("name", "params"), [("sr_block", {"factor": 2}), ("jpeg", {"quality": 30})])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_ddrm_names_the_step_at_which_the_model_returned_nan(
    name: str, params: dict[str, Any], value: float
) -> None:
    x = _x()
    op = opkit.create(name, shape=(3, 16, 16), **params)
    model = NanAfter(x, bad=3, value=value)
    with pytest.raises(
        ValueError, match=r"the model returned NaN or infinity at step 3 of 5 \(timestep \d+\)"
    ):
        solvers.ddrm(op, op(x), model, steps=5)
    assert model.calls == 3  # stopped there on the CPU


def test_driftrec_refuses_nan_measurements_and_names_a_nan_score() -> None:
    y = _x((1, 3, 8, 8))
    bad = y.clone()
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        solvers.driftrec(bad, lambda x, yy, t: -x, sde="ouve", steps=4)
    calls = []

    def score(x: Tensor, yy: Tensor, t: Tensor) -> Tensor:
        calls.append(float(t[0]))
        return torch.full_like(x, float("nan")) if len(calls) == 4 else yy - x

    for sampler in ("euler_maruyama", "euler_heun", "ode"):
        calls.clear()
        with pytest.raises(
            ValueError, match=r"the score model returned NaN or infinity at evaluation 4 \(t = "
        ):
            solvers.driftrec(y, score, sde=OUVE(), sampler=sampler, steps=10)
        assert len(calls) == 4


# -- half precision ------------------------------------------------------------------------------
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize(("name", "params"), [("sr_block", {"factor": 2}), ("inpaint", {"missing": 0.3})])
def test_ddrm_half_precision_measurements_are_computed_in_float32(
    dtype: torch.dtype, tol: float, name: str, params: dict[str, Any]
) -> None:
    x = _x()
    op = opkit.create(name, shape=(3, 16, 16), **params)
    y = op(x).to(dtype)
    out = solvers.ddrm(op, y, OraclePrior(x), steps=5, sigma_y=0.01)
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    assert float((out.float() - x).abs().max()) < tol


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ddrm_jpeg_and_driftrec_accept_half_precision(dtype: torch.dtype) -> None:
    x = _x()
    op = opkit.create("jpeg", shape=(3, 16, 16), quality=75)
    out = solvers.ddrm(op, op(x.to(dtype)), OraclePrior(x), steps=3)
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    y = x.to(dtype)
    drift = solvers.driftrec(y, lambda xx, yy, t: yy - xx, sde="ouve", steps=5)
    assert drift.dtype == dtype and bool(torch.isfinite(drift).all())


# -- operator shape checks -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sr_block", "sr_bicubic", "blur", "inpaint", "colorize", "denoise"])
def test_adjoint_and_pinv_refuse_a_measurement_of_the_wrong_shape(name: str) -> None:
    params = {"missing": 0.5} if name == "inpaint" else {}
    op = opkit.create(name, shape=(3, 16, 16), **params)
    assert isinstance(op, opkit.LinearOperator)
    wrong = torch.rand(1, 3, 5, 5)
    for method in (op.adjoint, op.pinv):
        with pytest.raises(ValueError, match="expected a measurement of shape"):
            method(wrong)


# -- damaged DriftRec model folders --------------------------------------------------------------
@pytest.fixture(scope="module")
def drift_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("drift") / "model"
    ScoreModel.from_preset("tiny").save_pretrained(d)
    return d


def _damaged(src: Path, dst: Path, name: str, content: bytes | None = None, cut: bool = False) -> Path:
    shutil.copytree(src, dst)
    f = dst / name
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2] if cut else content or b"")
    return dst


def test_load_driftrec_names_the_damaged_file(drift_dir: Path, tmp_path: Path) -> None:
    assert callable(solvers.load_driftrec(drift_dir))
    meta = json.loads((drift_dir / "driftrec.json").read_text())
    del meta["sde"]
    cases = {
        "nosde": ("driftrec.json", json.dumps(meta).encode(), False, r'driftrec.json has no "sde" entry'),
        "badjson": ("driftrec.json", b"{bad", False, r"driftrec.json is not valid JSON"),
        "badcfg": ("config.json", b"[1, 2", False, r"config.json is not valid JSON"),
        "cut": (
            "diffusion_pytorch_model.safetensors",
            None,
            True,
            r"diffusion_pytorch_model.safetensors is not a readable safetensors file",
        ),
        "junk": (
            "diffusion_pytorch_model.safetensors",
            b"\x02\x00\x00\x00\x00\x00\x00\x00{}",
            False,
            r"diffusion_pytorch_model.safetensors does not fit .*config.json",
        ),
    }
    for key, (name, content, cut, message) in cases.items():
        d = _damaged(drift_dir, tmp_path / key, name, content, cut)
        with pytest.raises(ValueError, match=message):
            solvers.load_driftrec(d)


def test_save_pretrained_writes_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ScoreModel.from_preset("tiny")
    target = tmp_path / "m"
    model.save_pretrained(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("solvers.sdes.score_models.save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ScoreModel.from_preset("tiny", seed=1).save_pretrained(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folder left


# -- an empty batch ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ddrm", "pigdm", "driftrec"])
@pytest.mark.parametrize("op_name", ["sr_block", "jpeg"])
def test_an_empty_batch_is_the_contracts_value_error(name: str, op_name: str) -> None:
    params = {"factor": 2} if op_name == "sr_block" else {"quality": 20}
    op = opkit.create(op_name, shape=(3, 16, 16), **params)
    x = _x()
    model = ScoreModel.from_preset("tiny") if name == "driftrec" else OraclePrior(x)
    solver = getattr(solvers, name)
    y = op(x[:0])
    with pytest.raises(ValueError, match="y holds no measurement: a batch of 0"):
        solver(op, y, model, steps=2)
    assert solver(op, op(x), model, steps=2).shape == x.shape  # one measurement works


# -- hostile model files -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        (
            "config.json",
            {"layers_per_block": 100_000},
            "layers_per_block=100000 in 2 blocks needs more tensors",
        ),
        (
            "config.json",
            {"block_out_channels": [10**6, 64]},
            "block_out_channels starts with 1000000",
        ),
        (
            "driftrec.json",
            {"sde": {"name": "cosve", "nodes": 10**9}},
            "nodes must be an integer in 16..1000000",
        ),
    ],
)
def test_a_driftrec_folder_asking_for_a_huge_network_or_table_is_refused_unbuilt(
    tmp_path: Path, file: str, change: dict[str, Any], message: str
) -> None:
    import time

    from solvers.common.state import WEIGHTS_NAME

    d = tmp_path / "m"
    ScoreModel.from_preset("tiny").save_pretrained(d)
    assert (d / WEIGHTS_NAME).is_file()
    data = json.loads((d / file).read_text())
    if file == "driftrec.json":
        change = {"sde": {**data["sde"], **change["sde"]}}
    (d / file).write_text(json.dumps({**data, **change}))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape(message)):
        solvers.load_driftrec(d)
    assert time.perf_counter() - t0 < 5
