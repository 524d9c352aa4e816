"""The solver contract: registry of solvers, the conformance kit on every registered solver,
file-format readers, and the compatibility of the older call forms."""

from __future__ import annotations

import warnings
from importlib import metadata

import pytest
import torch

import opkit
import solvers
from opkit.registry import DuplicateSolverError, OpkitPluginWarning, Registry
from opkit.testing import check_solver, toy_operators
from solvers.oracles import OraclePrior, PointScore


def _load(monkeypatch: pytest.MonkeyPatch, **named: str) -> Registry:
    eps = [metadata.EntryPoint(name=k, value=v, group="opkit") for k, v in named.items()]
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [e for e in eps if e.group == group])
    reg = Registry()
    reg.load_entry_points(disabled=[])
    return reg


def test_builtin_solvers_register_through_the_entry_point() -> None:
    names = {ep.name: ep.value for ep in metadata.entry_points(group="opkit")}
    assert names.get("solvers") == "solvers._plugin"
    assert {"ddrm", "driftrec", "pigdm"} <= set(opkit.solver_names())
    reg = opkit.default_registry()
    assert reg.solver_entry("ddrm").plugin == "solvers"
    assert reg.solver_entry("ddrm").accepts == ("svd", "encode_decode")
    assert reg.solver_entry("pigdm").model == "prior"
    assert reg.solver_entry("driftrec").model == "driftrec"
    assert opkit.get_solver("pigdm") is solvers.pigdm
    assert "sigma_y" in reg.solver_entry("pigdm").options()


@pytest.mark.parametrize("name", sorted(opkit.solver_names()))
def test_every_registered_solver_passes_the_kit(name: str) -> None:
    report = check_solver(name)
    entry = opkit.default_registry().solver_entry(name)
    assert any(c.startswith("recovery") for c in report.checks)
    for kind, err in report.recovery_error.items():
        assert err <= entry.recovery_atol + 1e-6, (kind, err)


def test_the_kit_catches_a_solver_that_breaks_the_contract() -> None:
    def mixes_the_batch(op, y, model, **kw):  # type: ignore[no-untyped-def]
        out = solvers.ddrm(op, y, model, **kw)
        if isinstance(out, tuple):
            return out
        return out.mean(dim=0, keepdim=True).expand_as(out)

    with pytest.raises(AssertionError, match="recovery"):
        check_solver(mixes_the_batch, accepts=("svd",), oracle=OraclePrior)

    def wrong_errors(op, y, model, **kw):  # type: ignore[no-untyped-def]
        if kw.get("steps", 1) == 0:
            raise RuntimeError("no")
        return solvers.ddrm(op, y, model, **kw)

    with pytest.raises(AssertionError, match="steps=0 raised RuntimeError"):
        check_solver(wrong_errors, accepts=("svd",), oracle=OraclePrior)


def test_the_kit_needs_kinds_and_an_oracle_for_a_bare_callable() -> None:
    with pytest.raises(ValueError, match="oracle"):
        check_solver(solvers.ddrm)


def test_solver_plugins_duplicates_and_broken_ones_are_skipped_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = _load(
            monkeypatch,
            a_good="tests.fake_plugins.solver_good",
            b_dup="tests.fake_plugins.solver_duplicate",
            c_raises="tests.fake_plugins.solver_raises",
        )
    msgs = [str(w.message) for w in caught if issubclass(w.category, OpkitPluginWarning)]
    assert reg.solver_names() == ["fake_pigdm"]
    assert reg.solver_entry("fake_pigdm").plugin == "a_good"
    assert "fake_round_two" not in reg.operator_names()  # b_dup's operator rolled back with its solver
    assert any("b_dup" in m and "already registered by plugin 'a_good'" in m for m in msgs)
    assert any("c_raises" in m and "solver boom" in m for m in msgs)
    assert set(reg.skipped) == {"b_dup", "c_raises"}


def test_add_solver_validates() -> None:
    reg = Registry()
    reg.add_solver("mine", solvers.ddrm, accepts=("svd",), model="prior")
    with pytest.raises(DuplicateSolverError, match="mine"):
        reg.add_solver("mine", solvers.ddrm, accepts=("svd",), model="prior")
    with pytest.raises(ValueError, match="kinds"):
        reg.add_solver("other", solvers.ddrm, accepts=("bogus",), model="prior")
    with pytest.raises(ValueError, match="model"):
        reg.add_solver("other", solvers.ddrm, accepts=("svd",), model="bogus")
    with pytest.raises(ValueError, match="lowercase"):
        reg.add_solver("Bad", solvers.ddrm, accepts=("svd",), model="prior")
    with pytest.raises(ValueError, match="fits of solver 'other' must be callable"):
        reg.add_solver("other", solvers.ddrm, accepts=("svd",), model="prior", fits="jpeg")  # type: ignore[arg-type]
    reg.add_solver("picky", solvers.ddrm, accepts=("svd",), model="prior", fits=lambda m, op: f"not {m}")
    assert reg.solver_entry("picky").misfit("this", None) == "not this"  # type: ignore[arg-type]
    assert reg.solver_entry("mine").misfit("this", None) == ""  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="available: mine"):
        reg.solver_entry("nope")


def test_file_readers_first_result_wins(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    reg = _load(monkeypatch, a_good="tests.fake_plugins.solver_good", jpeg="opkit_plugins.jpeg")
    assert reg.read_measurement(tmp_path / "photo.png") is None
    op, y = reg.read_measurement(tmp_path / "x.fake")  # type: ignore[misc]
    assert op.shape == (1, 2, 2) and tuple(y.shape) == (1, 1, 2, 2)


def test_file_writers_first_result_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    # the built-in jpeg plugin loads first, so it writes .jpg for a jpeg operator; the fake plugin
    # writes its own format for anything, and nobody writes .webp
    reg = _load(monkeypatch, a_good="tests.fake_plugins.solver_good", jpeg="opkit_plugins.jpeg")
    x = torch.rand((1, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    jpeg = opkit.create("jpeg", shape=(3, 16, 16), quality=30)
    suffix, data = reg.write_measurement(jpeg, x)  # type: ignore[misc]
    assert suffix == ".jpg" and data[:2] == b"\xff\xd8"
    assert reg.write_measurement(jpeg, x, ".jpeg")[0] == ".jpeg"  # type: ignore[index]
    denoise = opkit.create("denoise", shape=(3, 16, 16))
    assert reg.write_measurement(denoise, x) == (".fake", b"fake:(3, 16, 16)")
    assert reg.write_measurement(denoise, x, ".jpg") is None
    assert reg.write_measurement(jpeg, x, ".webp") is None


def test_jpeg_plugin_writes_a_file_with_the_operators_tables(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # an 8-bit image, as a file holds (the operator then encodes with libjpeg's arithmetic too)
    x = torch.randint(0, 256, (1, 3, 24, 40), generator=torch.Generator().manual_seed(1)) / 255.0
    op = opkit.create("jpeg", shape=(3, 24, 40), quality=20, subsampling="4:2:2")
    got = opkit.write_measurement(op, x)
    assert got is not None
    path = tmp_path / f"a{got[0]}"
    path.write_bytes(got[1])
    back, y = opkit.read_measurement(path)  # type: ignore[misc]
    assert torch.equal(back.tables, op.tables) and back.sampling == op.sampling
    # libjpeg's coefficients agree with the operator's on all but a few in ten thousand
    codes, mine = back.codes(y), op.codes(op(x))
    assert codes.shape == mine.shape
    assert (codes != mine).float().mean() < 1e-3
    assert opkit.write_measurement(opkit.create("quantize", shape=(3, 24, 40), bits=3), x) is None


def test_display_is_what_a_viewer_shows() -> None:
    x = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    jpeg = opkit.create("jpeg", shape=(3, 16, 16), quality=10)
    y = jpeg(x)
    assert torch.equal(jpeg.display(y), jpeg.decode(y, mode="libjpeg"))
    assert not torch.equal(jpeg.display(y), jpeg.pinv(y))  # H† stays the exact decode
    quant = opkit.create("quantize", shape=(3, 16, 16), bits=2)
    assert torch.equal(quant.display(quant(x)), quant.decode(quant(x)))  # the default: decode


def test_lift_to_rgb_of_a_grey_jpeg_fits_the_grey_measurement() -> None:
    arr = (torch.rand(16, 24, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)
    x = arr.double()[None, None] / 255  # an 8-bit grey image
    op = opkit.create("jpeg", shape=(1, 16, 24), quality=25)
    y = op(x)
    lifted = op.lift_to_rgb(y)
    assert lifted is not None
    op3, y3 = lifted
    assert op3.shape == (3, 16, 24) and op3.name == "jpeg" and op3.sampling == "4:4:4"
    # a grey RGB image has the lifted measurement: its luma codes are y's, its chroma codes zero
    assert torch.equal(op3.codes(op3(x.expand(1, 3, 16, 24))), op3.codes(y3))
    assert torch.equal(y3.components[0], y.components[0])
    assert opkit.create("jpeg", shape=(3, 16, 24)).lift_to_rgb(op3(x.expand(1, 3, 16, 24))) is None
    assert opkit.create("denoise", shape=(1, 4, 4)).lift_to_rgb(torch.zeros(1, 1, 4, 4)) is None


def test_the_kit_checks_a_claim_of_one_generator_per_image() -> None:
    def shares_one_generator(op, y, model, *, generator=None, **kw):  # type: ignore[no-untyped-def]
        if isinstance(generator, list):
            generator = generator[0]  # claims a generator per image, but uses the first for all
        return solvers.ddrm(op, y, model, generator=generator, **kw)

    kit = {"accepts": ("svd", "encode_decode"), "oracle": OraclePrior}
    check_solver(shares_one_generator, **kit)  # no claim: passes
    with pytest.raises(AssertionError, match="generator per image"):
        check_solver(shares_one_generator, **kit, generator_per_image=True)
    report = check_solver("ddrm")
    assert any(c.startswith("generator per image") for c in report.checks)


def test_jpeg_plugin_reads_jpeg_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    arr = (torch.rand(16, 24, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    path = tmp_path / "a.jpg"
    Image.fromarray(arr.numpy()).save(path, quality=40)
    got = opkit.read_measurement(path)
    assert got is not None
    op, y = got
    assert op.name == "jpeg" and op.shape == (3, 16, 24)
    assert op.decode(y).shape == (1, 3, 16, 24)


# ---------------------------------------------------------------------------------------------
# one contract, older forms kept
# ---------------------------------------------------------------------------------------------
def test_driftrec_takes_the_operator_and_keeps_the_blind_form() -> None:
    op = toy_operators()["encode_decode"]
    x = torch.rand(2, *op.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = op(x)
    model = PointScore(x)
    a = solvers.driftrec(op, y, model, steps=6, generator=torch.Generator().manual_seed(3))
    b = solvers.driftrec(op.decode(y), model, steps=6, generator=torch.Generator().manual_seed(3))
    c = solvers.driftrec(y=op.decode(y), model=model, steps=6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(a, c)
    old: list[tuple[int, float, tuple[int, ...]]] = []
    solvers.driftrec(
        op.decode(y), model, steps=4, callback=lambda i, t, xx: old.append((i, t, tuple(xx.shape)))
    )
    assert [s[0] for s in old] == [0, 1, 2, 3] and old[0][2] == (2, *op.shape)


def test_driftrec_callback_costs_no_extra_evaluations_but_the_last() -> None:
    op = toy_operators()["svd"]
    x = torch.rand(1, *op.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, plain = solvers.driftrec(op, op(x), PointScore(x), steps=5, return_info=True)
    _, watched = solvers.driftrec(
        op, op(x), PointScore(x), steps=5, return_info=True, callback=lambda *a: None
    )
    assert plain.nfe == 5 and watched.nfe == 6


def test_same_faults_same_errors() -> None:
    op = toy_operators()["svd"]
    x = torch.rand(1, *op.shape, dtype=torch.float64)
    for solver in (solvers.ddrm, solvers.pigdm, solvers.driftrec):
        with pytest.raises(TypeError):
            solver(op, op(x), object(), steps=2)
        with pytest.raises(TypeError):
            solver("not an operator", op(x), OraclePrior(x), steps=2)
        with pytest.raises(ValueError, match="steps"):
            solver(op, op(x), OraclePrior(x), steps=0)
        with pytest.raises(ValueError, match="num_samples"):
            solver(op, op(x), OraclePrior(x), num_samples=-1)


def test_ddrm_return_info_holds_the_samples() -> None:
    op = toy_operators()["svd"]
    x = torch.rand(2, *op.shape, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    out, info = solvers.ddrm(op, op(x), OraclePrior(x), steps=3, num_samples=2, generator=g, return_info=True)
    assert info.nfe == 3 and info.samples.shape == (2, 2, *op.shape)
    assert torch.allclose(info.samples.mean(1), out)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_generator_on_another_device() -> None:
    op = toy_operators()["svd"]
    x = torch.rand(1, *op.shape, dtype=torch.float64)
    for name in opkit.solver_names():
        entry = opkit.default_registry().solver_entry(name)
        g = torch.Generator(device="cuda").manual_seed(0)
        out = entry.solver(op, op(x), entry.oracle(x), steps=3, generator=g, progress=False)  # type: ignore[misc]
        assert out.device == x.device


# ---------------------------------------------------------------------------------------------
# the shared parameter checks (opkit.params)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4", None])
def test_check_positive_int_refuses_with_the_name(bad: object) -> None:
    from opkit.params import check_positive_int

    with pytest.raises(ValueError, match=r"^steps must be a positive integer, got "):
        check_positive_int("steps", bad)
    assert check_positive_int("steps", 3) == 3


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "x", None])
def test_check_non_negative_and_unit(bad: object) -> None:
    from opkit.params import check_non_negative, check_unit

    with pytest.raises(ValueError, match=r"^sigma_y must be a finite number >= 0"):
        check_non_negative("sigma_y", bad)
    with pytest.raises(ValueError, match=r"^eta must be a number in \[0, 1\]"):
        check_unit("eta", bad)
    assert check_non_negative("sigma_y", 0) == 0.0 and check_unit("eta", 1) == 1.0
    with pytest.raises(ValueError, match="eta must be a number in"):
        check_unit("eta", 1.5)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "x", None])
def test_check_positive_refuses_with_the_name(bad: object) -> None:
    from opkit.params import check_positive

    with pytest.raises(ValueError, match=r"^sigma must be a positive finite number, got "):
        check_positive("sigma", bad)
    assert check_positive("sigma", 2) == 2.0


def test_attrs_validators_are_the_checks_under_the_attributes_name() -> None:
    import attrs

    from opkit.params import in_range, non_negative, one_of, positive, positive_int

    @attrs.frozen
    class P:
        n: int = attrs.field(default=1, validator=positive_int)
        s: float = attrs.field(default=1.0, validator=positive)
        z: float = attrs.field(default=0.0, validator=non_negative)
        q: int = attrs.field(default=50, validator=in_range(1, 100, integer=True))
        mode: str = attrs.field(default="a", validator=one_of("a", "b"))

    P()
    for field, bad, message in [
        ("n", 0, "n must be a positive integer, got 0"),
        ("s", float("inf"), "s must be a positive finite number, got inf"),
        ("z", -1, "z must be a finite number >= 0, got -1"),
        ("q", 50.0, "q must be an integer in [1, 100], got 50.0"),
        ("q", 101, "q must be an integer in [1, 100], got 101"),
        ("mode", "c", "mode must be one of ('a', 'b'), got 'c'"),
    ]:
        with pytest.raises(ValueError) as info:
            P(**{field: bad})
        assert str(info.value) == message
    assert positive_int.__name__ == "positive_int" and "check_positive_int" in (positive_int.__doc__ or "")
